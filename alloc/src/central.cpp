#include "central.h"

#include <cassert>

namespace spanmap::detail {

namespace {

// Word w of s's free bits, for writing: the free path reads these words
// without this lock (free_in_span in fastpath.h), so writes are atomic.
std::atomic_ref<std::uint64_t> free_word(mspan* s, std::uint32_t w) noexcept {
    return std::atomic_ref<std::uint64_t>(s->free_bits[w]);
}

}  // namespace

void span_list::push_front(mspan* s, span_list_id id) noexcept {
    s->prev = nullptr;
    s->next = head_;
    if (head_ != nullptr) head_->prev = s;
    head_ = s;
    s->list = id;
    ++size_;
}

void span_list::remove(mspan* s) noexcept {
    if (s->prev != nullptr)
        s->prev->next = s->next;
    else
        head_ = s->next;
    if (s->next != nullptr) s->next->prev = s->prev;
    s->next = s->prev = nullptr;
    s->list = span_list_id::none;
    --size_;
}

namespace {

// Raises s's handed count to k, in the span and in its pages' words for
// free's fast path: an add to each word, since the profiler may be flipping
// its sampled bit at the same time, under another lock.
void publish_handed(mspan* s, std::uint64_t k) noexcept {
    const std::uint64_t was = s->handed.load(std::memory_order_relaxed);
    if (k <= was) return;
    s->handed.store(k, std::memory_order_relaxed);
    const auto add = static_cast<std::uint32_t>(k - was) << free_check_handed_shift;
    for_each_free_check(s, [add](std::atomic<std::uint32_t>& w) { w.fetch_add(add, std::memory_order_relaxed); });
}

// Moves every object of s, wholly free and of at most 64 objects (one word
// of bits), into out[got..); returns the new got. A refill of a class of
// one to four objects a span that asks for a span's worth or more takes its
// spans so, and for those a scan of the bits was most of the fill's work:
// 32 KiB objects went from 403 to 357 instructions a malloc/free pair in a
// batch (callgrind).
inline std::size_t take_span(mspan* s, void** out, std::size_t got) noexcept {
    const std::uint32_t k = s->nelems;
    assert(k <= 64);
    std::uintptr_t p = s->base;
    for (std::uint32_t i = 0; i < k; ++i, p += s->elem_size) out[got + i] = reinterpret_cast<void*>(p);
    free_word(s, 0).store(0, std::memory_order_relaxed);
    s->nfree = 0;
    s->scan_word = 1;
    publish_handed(s, k);
    return got + k;
}

// Moves s's lowest free objects, up to n - got of them, into out[got..);
// returns the new got. The caller holds the span's mcentral lock.
std::size_t take_some(mspan* s, void** out, std::size_t got, std::size_t n) noexcept {
    std::uint32_t w = s->scan_word;
    while (got < n && s->nfree > 0) {
        std::uint64_t bits = s->free_bits[w];
        while (bits != 0 && got < n) {
            const auto b = static_cast<std::uint32_t>(__builtin_ctzll(bits));
            bits &= bits - 1;
            out[got++] = reinterpret_cast<void*>(s->base + std::uintptr_t{w * 64 + b} * s->elem_size);
            --s->nfree;
        }
        free_word(s, w).store(bits, std::memory_order_relaxed);
        if (bits == 0) ++w;
    }
    s->scan_word = w;
    // The lowest free objects went first, so the newest is the highest.
    const auto newest = static_cast<std::uint32_t>(((reinterpret_cast<std::uintptr_t>(out[got - 1]) - s->base) * s->div_mul) >> 32);
    publish_handed(s, newest + 1);
    return got;
}

inline std::size_t take_objects(mspan* s, void** out, std::size_t got, std::size_t n) noexcept {
    if (s->nfree == s->nelems && s->nelems <= 64 && n - got >= s->nelems) return take_span(s, out, got);
    return take_some(s, out, got, n);
}

// A new span's pages may have been a freed large span's, poisoned whole; a
// span from the heap's empty-span cache has handed objects out, and its free
// ones stay poisoned each, as in any span.
void unpoison_if_new(const mspan* s) noexcept {
    if (s->handed.load(std::memory_order_relaxed) == 0) unpoison(reinterpret_cast<void*>(s->base), s->end() - s->base);
}

}  // namespace

std::size_t mcentral::fill(void** out, std::size_t n) noexcept {
    lock_guard g(lock_);
    std::size_t got = 0;
    while (got < n) {
        if (mspan* s = partial_.head()) {
            if (s->nfree == s->nelems) --nempty_;
            got = take_objects(s, out, got, n);
            if (s->nfree == 0) {
                partial_.remove(s);
                s->list = span_list_id::full;
                ++nfull_;
            }
            continue;
        }
        // As many fresh spans as the rest of the request fills, under one
        // hold of the heap's lock: for classes of one to a few objects a
        // span, a refill is several spans, and two threads refilling such a
        // class took turns at that lock once per object.
        const std::uint32_t per_span = class_span_shapes[size_class_].nelems;
        mspan* fresh[max_fresh_spans];
        std::size_t want = (n - got + per_span - 1) / per_span;
        if (want > max_fresh_spans) want = max_fresh_spans;
        const std::size_t k = heap_->alloc_spans(size_class_, fresh, want);
        if (k == 0) break;
        // Taken from lowest address first; then each goes on the list that
        // what is left in it says, not through partial_ first (a span of one
        // object went on it and off it again), the lowest left at the head.
        for (std::size_t i = 0; i < k && got < n; ++i) {
            unpoison_if_new(fresh[i]);
            got = take_objects(fresh[i], out, got, n);
        }
        for (std::size_t i = k; i-- > 0;) {
            mspan* s = fresh[i];
            if (s->nfree == 0) {
                s->list = span_list_id::full;
                ++nfull_;
                continue;
            }
            if (s->nfree == s->nelems) {
                unpoison_if_new(s);
                ++nempty_;
            }
            partial_.push_front(s, span_list_id::partial);
        }
    }
    return got;
}

void mcentral::release(void* const* objs, std::size_t n) noexcept {
    lock_guard g(lock_);
    // Spans this release empties, beyond the spare, go back to the heap's
    // empty-span cache together (one hold of its lock), as fill takes them.
    mspan* emptied[max_fresh_spans];
    std::size_t nemptied = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const auto p = reinterpret_cast<std::uintptr_t>(objs[i]);
        mspan* s = span_of(p);
        const auto idx = static_cast<std::uint32_t>(((p - s->base) * s->div_mul) >> 32);
        const std::uint64_t bit = std::uint64_t{1} << (idx & 63);
        if (s->free_bits[idx / 64] & bit) fatal("free", objs[i], "double free (the object is already free in its span)");
        free_word(s, idx / 64).store(s->free_bits[idx / 64] | bit, std::memory_order_relaxed);
        if (idx / 64 < s->scan_word) s->scan_word = idx / 64;
        const bool was_full = s->nfree++ == 0;
        if (was_full) --nfull_;
        if (s->nfree == s->nelems && nempty_ != 0) {
            // Wholly free beside the spare: to the heap (a span of one object
            // goes there straight from full).
            if (was_full)
                s->list = span_list_id::none;
            else
                partial_.remove(s);
            emptied[nemptied++] = s;
            if (nemptied == max_fresh_spans) {
                heap_->park_spans(emptied, nemptied);
                nemptied = 0;
            }
            continue;
        }
        if (was_full) partial_.push_front(s, span_list_id::partial);
        if (s->nfree == s->nelems) ++nempty_;
    }
    if (nemptied != 0) heap_->park_spans(emptied, nemptied);
}

void mcentral::release_empty_spans() noexcept {
    lock_guard g(lock_);
    for (mspan* s = partial_.head(); s != nullptr;) {
        mspan* next = s->next;
        if (s->nfree == s->nelems) {
            partial_.remove(s);
            heap_->free_span(s);
        }
        s = next;
    }
    nempty_ = 0;
}

}  // namespace spanmap::detail

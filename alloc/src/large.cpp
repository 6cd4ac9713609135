#include "large.h"

#include "cache.h"
#include "scavenge.h"

namespace spanmap::detail {

void large_cache::unlink(mspan* s, std::uint32_t npages) noexcept {
    if (s->prev != nullptr)
        s->prev->next = s->next;
    else
        heads_[npages] = s->next;
    if (s->next != nullptr) s->next->prev = s->prev;
    s->next = nullptr;
    s->prev = nullptr;
    bump(pages_, -std::size_t{npages});
    bump(spans_, std::size_t(-1));
}

mspan* large_cache::take(std::size_t npages) noexcept {
    if (npages > max_pages) return nullptr;
    lock_guard lk(lock_);
    mspan* s = heads_[npages];
    if (s == nullptr) return nullptr;
    unlink(s, static_cast<std::uint32_t>(npages));
    s->parked.store(false, std::memory_order_relaxed);
    bump(ntake_);
    bump(bytes_taken_, std::uint64_t{npages} * page_size);
    return s;
}

bool large_cache::put(mspan* s, const void* ptr) noexcept {
    lock_guard lk(lock_);
    if (s->parked.load(std::memory_order_relaxed)) fatal("free", ptr, "double free (the large block is already free)");
    const std::uint32_t n = s->npages;
    if (n > max_pages || (pages_.load(std::memory_order_relaxed) + n) * page_size > max_bytes) return false;
    s->parked.store(true, std::memory_order_relaxed);
    s->parked_tick = g.heap.tick();
    s->needzero = true;
    s->prev = nullptr;
    s->next = heads_[n];
    if (heads_[n] != nullptr) heads_[n]->prev = s;
    heads_[n] = s;
    bump(pages_, std::size_t{n});
    bump(spans_);
    bump(nput_);
    bump(bytes_put_, std::uint64_t{n} * page_size);
    return true;
}

std::size_t large_cache::take_old(std::uint32_t now, std::uint32_t min_age, mspan** out, std::size_t room) noexcept {
    lock_guard lk(lock_);
    std::size_t n = 0;
    for (std::uint32_t np = 1; np <= max_pages && n < room && spans_.load(std::memory_order_relaxed) != 0; ++np) {
        for (mspan* s = heads_[np]; s != nullptr && n < room;) {
            mspan* next = s->next;
            if (min_age == 0 || now - s->parked_tick >= min_age) {
                unlink(s, np);
                s->parked.store(false, std::memory_order_relaxed);
                bump(nreturned_);
                bump(bytes_returned_, std::uint64_t{np} * page_size);
                out[n++] = s;
            }
            s = next;
        }
    }
    return n;
}

void large_cache_trim(std::uint32_t now, std::uint32_t min_age) noexcept {
    // A few spans per round, each given back under the heap's lock alone.
    mspan* spans[32];
    for (;;) {
        const std::size_t n = g.large.take_old(now, min_age, spans, sizeof spans / sizeof spans[0]);
        for (std::size_t i = 0; i < n; ++i) g.heap.free_span(spans[i]);
        if (n < sizeof spans / sizeof spans[0]) return;
    }
}

mspan* large_alloc_span(std::size_t npages, std::size_t align_pages) noexcept {
    if (align_pages <= 1) {
        if (mspan* s = g.large.take(npages)) return s;
    }
    // A miss: pages parked here that could serve it go back to the heap
    // first, so the heap reuses them rather than growing.
    if (g.large.pages() >= npages) large_cache_trim(0, 0);
    return g.heap.alloc_span(npages, align_pages, 0);
}

void large_free_span(mspan* s, void* ptr) noexcept {
    if (!g.large.put(s, ptr)) g.heap.free_span(s);
    maybe_start_scavenger();
}

}  // namespace spanmap::detail

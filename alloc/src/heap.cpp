#include "heap.h"

#include "scavenge.h"

#include <cerrno>
#include <cstring>

namespace spanmap::detail {

constinit std::atomic<heap_arena*> arena_map[arena_map_entries];

void set_state(mspan* s, span_state to) noexcept {
    const bool ok = s->state == span_state::idle ? to != span_state::idle : to == span_state::idle;
    if (!ok) fatal("span", reinterpret_cast<void*>(s->base), "illegal span state transition (heap corrupted)");
    s->state = to;
}

// --- span_pool ---------------------------------------------------------------

mspan* span_pool::get() noexcept {
    mspan* s = free_;
    if (s != nullptr) {
        free_ = s->next;
    } else {
        if (chunk_left_ < sizeof(mspan)) {
            chunk_ = static_cast<char*>(os_map(chunk_bytes));
            if (chunk_ == nullptr) return nullptr;
            chunk_left_ = chunk_bytes;
            capacity_ += chunk_bytes / sizeof(mspan);
            mapped_ += chunk_bytes;
            metadata_sys.fetch_add(chunk_bytes, std::memory_order_relaxed);
        }
        s = reinterpret_cast<mspan*>(chunk_);
        chunk_ += sizeof(mspan);
        chunk_left_ -= sizeof(mspan);
    }
    ++in_use_;
    std::memset(static_cast<void*>(s), 0, sizeof *s);
    return s;
}

void span_pool::put(mspan* s) noexcept {
    s->next = free_;
    free_ = s;
    --in_use_;
}

// --- mheap -------------------------------------------------------------------

namespace {

constexpr std::uintptr_t round_up(std::uintptr_t x, std::uintptr_t align) { return (x + align - 1) & ~(align - 1); }

heap_arena* arena_of_page(std::uintptr_t page) { return arena_of(page << page_shift); }

}  // namespace

std::uintptr_t mheap::find_run(std::size_t npages, std::size_t align_pages) const noexcept {
    // A run of free pages may continue from one arena into the next when they
    // are adjacent in memory; run_len carries it across.
    std::uintptr_t run_start = 0;
    std::uintptr_t run_len = 0;
    std::uintptr_t prev_end = 0;
    const auto fits = [&]() -> std::uintptr_t {
        const std::uintptr_t start = round_up(run_start, align_pages);
        return start + npages <= run_start + run_len ? start : 0;
    };
    const std::size_t n = narenas_.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < n; ++i) {
        const heap_arena* a = arenas_[i];
        const std::uintptr_t first = a->base >> page_shift;
        if (first != prev_end) run_len = 0;
        prev_end = first + pages_per_arena;
        if (a->free_pages == 0) {
            run_len = 0;
            continue;
        }
        std::size_t w = run_len != 0 ? 0 : a->search_word;
        for (; w < arena_bitmap_words; ++w) {
            const std::uint64_t bits = a->free_bits[w];
            if (bits == ~std::uint64_t{0}) {
                if (run_len == 0) run_start = first + w * 64;
                run_len += 64;
                if (const std::uintptr_t at = fits()) return at;
                continue;
            }
            unsigned pos = 0;
            while (pos < 64) {
                const std::uint64_t rest = bits >> pos;
                if (rest & 1) {
                    // rest has zeros above bit 63 - pos, so ~rest has a set bit there.
                    const auto ones = static_cast<unsigned>(__builtin_ctzll(~rest));
                    if (run_len == 0) run_start = first + w * 64 + pos;
                    run_len += ones;
                    pos += ones;
                    if (const std::uintptr_t at = fits()) return at;
                } else {
                    run_len = 0;
                    if (rest == 0) break;
                    pos += static_cast<unsigned>(__builtin_ctzll(rest));
                }
            }
        }
    }
    return 0;
}

bool mheap::add_arena(std::uintptr_t base) noexcept {
    const std::size_t n = narenas_.load(std::memory_order_relaxed);
    if (n == max_arenas) return false;
    if (arenas_ == nullptr) {
        arenas_ = static_cast<heap_arena**>(os_map(max_arenas * sizeof(heap_arena*)));
        if (arenas_ == nullptr) return false;
        metadata_sys.fetch_add(max_arenas * sizeof(heap_arena*), std::memory_order_relaxed);
    }
    constexpr std::size_t meta_bytes = (sizeof(heap_arena) + 4095) & ~std::size_t{4095};
    auto* a = static_cast<heap_arena*>(os_map(meta_bytes));
    if (a == nullptr) return false;
    metadata_sys.fetch_add(meta_bytes, std::memory_order_relaxed);
    // Fresh mappings read as zero: spans[] is all null, counters are 0. Fresh
    // pages hold no memory yet, so they count as released, as in Go.
    a->base = base;
    std::memset(a->free_bits, 0xff, sizeof a->free_bits);
    std::memset(a->released_bits, 0xff, sizeof a->released_bits);
    a->free_pages = pages_per_arena;
    a->released_pages = pages_per_arena;
    bump(pages_released_, pages_per_arena);
    arena_advice(reinterpret_cast<void*>(base), arena_bytes);
    // A kernel without CONFIG_ANON_VMA_NAME refuses with EINVAL; the arena
    // works all the same, and the statistics report the refusal. errno is
    // kept: the malloc that reserved this arena succeeds.
    const int saved_errno = errno;
    a->named = os_name(reinterpret_cast<void*>(base), arena_bytes, arena_vma_name);
    if (!a->named && name_errno_.load(std::memory_order_relaxed) == 0)
        name_errno_.store(errno != 0 ? errno : EINVAL, std::memory_order_relaxed);
    errno = saved_errno;

    std::size_t at = n;
    while (at > 0 && arenas_[at - 1]->base > base) {
        arenas_[at] = arenas_[at - 1];
        --at;
    }
    arenas_[at] = a;
    narenas_.store(n + 1, std::memory_order_relaxed);
    arena_map[base >> arena_shift].store(a, std::memory_order_release);
    return true;
}

bool mheap::grow(std::size_t npages, std::size_t align_pages) noexcept {
    const std::size_t bytes = round_up(npages * page_size, arena_bytes);
    std::size_t align = align_pages * page_size;
    if (align < arena_bytes) align = arena_bytes;
    void* region = os_map_aligned(bytes, align);
    if (region == nullptr) return false;
    const auto base = reinterpret_cast<std::uintptr_t>(region);
    if (((base + bytes - 1) >> address_bits) != 0) {
        os_unmap(region, bytes);
        return false;
    }
    for (std::size_t off = 0; off < bytes; off += arena_bytes) {
        if (!add_arena(base + off)) {
            // Arenas already registered stay (their pages are free); the rest goes back.
            os_unmap(reinterpret_cast<void*>(base + off), bytes - off);
            return false;
        }
    }
    return true;
}

namespace {
// The low n bits set (n <= 64; above 64, all of them).
constexpr std::uint64_t bits_below(std::uint32_t n) noexcept {
    return n >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << n) - 1;
}
}  // namespace

bool mheap::assign(std::uintptr_t first, std::size_t n, mspan* s) noexcept {
    // A page is known to be zero if the heap never handed it out, or if its
    // memory went back to the OS with an advice that zero-fills (see scavenge.h).
    const bool released_is_zero = scavenge_zeroes();
    const std::uint32_t now = tick();
    bool dirty = false;
    std::size_t reused = 0;
    std::uintptr_t page = first;
    const std::uintptr_t end = first + n;
    while (page < end) {
        heap_arena* a = arena_of_page(page);
        const std::uintptr_t arena_first = a->base >> page_shift;
        const std::uintptr_t stop = end < arena_first + pages_per_arena ? end : arena_first + pages_per_arena;
        const auto lo = static_cast<std::uint32_t>(page - arena_first);
        const auto hi = static_cast<std::uint32_t>(stop - arena_first);
        // The class is cleared before the span and set after it, so that a
        // free racing with this (of a pointer that is not out) never finds
        // a class without a span.
        const std::uint8_t cls = s != nullptr ? s->size_class : 0;
        if (s == nullptr)
            for (std::uint32_t i = lo; i < hi; ++i) a->page_class[i].store(0, std::memory_order_relaxed);
        for (std::uint32_t i = lo; i < hi; ++i) a->spans[i].store(s, std::memory_order_relaxed);
        if (cls != 0)
            for (std::uint32_t i = lo; i < hi; ++i) a->page_class[i].store(cls, std::memory_order_relaxed);
        // The bitmaps a word (64 pages) at a time: a large span costs one
        // store per page above, not a read-modify-write of three bitmaps.
        for (std::uint32_t w = lo >> 6; w <= (hi - 1) >> 6; ++w) {
            const std::uint32_t from = w * 64 > lo ? w * 64 : lo;
            const std::uint32_t to = (w + 1) * 64 < hi ? (w + 1) * 64 : hi;
            const std::uint64_t mask = bits_below(to - w * 64) & ~bits_below(from - w * 64);
            if (s != nullptr) {
                a->free_bits[w] &= ~mask;
                const std::uint64_t was_released = a->released_bits[w] & mask;
                if (was_released != 0) {
                    a->released_bits[w] &= ~was_released;
                    const auto count = static_cast<std::uint32_t>(__builtin_popcountll(was_released));
                    a->released_pages -= count;
                    reused += count;
                }
                const std::uint64_t handed_out_before =
                    a->zeroed_base > w * 64 ? bits_below(a->zeroed_base - w * 64) : 0;
                dirty |= (mask & handed_out_before & ~(released_is_zero ? was_released : 0)) != 0;
            } else {
                a->free_bits[w] |= mask;
                a->freed_tick[w] = now;
            }
        }
        if (s != nullptr) {
            a->free_pages -= hi - lo;
            if (hi > a->zeroed_base) a->zeroed_base = hi;
            while (a->search_word < arena_bitmap_words && a->free_bits[a->search_word] == 0) ++a->search_word;
        } else {
            a->free_pages += hi - lo;
            if ((lo >> 6) < a->search_word) a->search_word = lo >> 6;
        }
        page = stop;
    }
    if (reused != 0) bump(pages_released_, -reused);
    if (s == nullptr) bump(pages_ever_freed_, n);
    return dirty;
}

std::size_t mheap::scavenge(std::uint32_t now, std::uint32_t min_age, std::size_t max_pages) noexcept {
    lock_guard g(lock_);
    std::size_t released = 0;
    const std::size_t n = narenas_.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < n && released < max_pages; ++i) {
        heap_arena* a = arenas_[i];
        if (a->free_pages == a->released_pages) continue;
        for (std::size_t w = 0; w < arena_bitmap_words && released < max_pages; ++w) {
            std::uint64_t todo = a->free_bits[w] & ~a->released_bits[w];
            if (todo == 0 || now - a->freed_tick[w] < min_age) continue;
            // Each run of free, unreleased pages in the word is one madvise.
            a->released_bits[w] |= todo;
            const auto count = static_cast<std::uint32_t>(__builtin_popcountll(todo));
            a->released_pages += count;
            released += count;
            while (todo != 0) {
                const auto start = static_cast<unsigned>(__builtin_ctzll(todo));
                const std::uint64_t from_start = todo >> start;
                const unsigned len = ~from_start == 0 ? 64 - start : static_cast<unsigned>(__builtin_ctzll(~from_start));
                os_release(reinterpret_cast<void*>(a->base + (w * 64 + start) * page_size), std::size_t{len} * page_size);
                todo = len + start >= 64 ? 0 : todo & ~(((std::uint64_t{1} << len) - 1) << start);
            }
        }
    }
    bump(pages_released_, released);
    return released;
}

bool mheap::pages_free(std::uintptr_t first, std::size_t n) const noexcept {
    for (std::uintptr_t page = first; page < first + n; ++page) {
        const heap_arena* a = arena_of_page(page);
        if (a == nullptr) return false;
        const std::size_t i = page & (pages_per_arena - 1);
        if (!(a->free_bits[i >> 6] >> (i & 63) & 1)) return false;
    }
    return true;
}

mspan* mheap::alloc_span(std::size_t npages, std::size_t align_pages, unsigned size_class) noexcept {
    lock_guard g(lock_);
    std::uintptr_t first = find_run(npages, align_pages);
    if (first == 0) {
        if (!grow(npages, align_pages)) return nullptr;
        first = find_run(npages, align_pages);
        if (first == 0) return nullptr;
    }
    mspan* s = pool_.get();
    if (s == nullptr) return nullptr;
    s->base = first << page_shift;
    s->npages = static_cast<std::uint32_t>(npages);
    s->size_class = static_cast<std::uint8_t>(size_class);
    s->needzero = assign(first, npages, s);
    if (size_class != 0) {
        s->elem_size = sc::class_size[size_class];
        s->nelems = static_cast<std::uint32_t>(npages * page_size / s->elem_size);
        s->div_mul = sc::class_div_mul[size_class];
        s->nfree = s->nelems;
        for (std::uint32_t w = 0; w < s->nelems / 64; ++w) s->free_bits[w] = ~std::uint64_t{0};
        if (s->nelems % 64 != 0) s->free_bits[s->nelems / 64] = (std::uint64_t{1} << (s->nelems % 64)) - 1;
        set_state(s, span_state::small);
        bump(small_spans_);
        bump(class_spans_[size_class]);
    } else {
        s->nelems = 1;
        set_state(s, span_state::large);
        bump(large_spans_);
        bump(large_nmalloc_);
        bump(large_bytes_alloc_, std::uint64_t{npages} * page_size);
    }
    bump(pages_in_use_, npages);
    return s;
}

void mheap::free_span(mspan* s) noexcept {
    lock_guard g(lock_);
    assign(s->base >> page_shift, s->npages, nullptr);
    bump(pages_in_use_, -std::size_t{s->npages});
    if (s->state == span_state::small) {
        bump(small_spans_, std::size_t(-1));
        bump(class_spans_[s->size_class], std::size_t(-1));
    } else {
        bump(large_spans_, std::size_t(-1));
        bump(large_nfree_);
        bump(large_bytes_freed_, std::uint64_t{s->npages} * page_size);
    }
    set_state(s, span_state::idle);
    pool_.put(s);
}

bool mheap::grow_span(mspan* s, std::size_t npages) noexcept {
    lock_guard g(lock_);
    const std::uintptr_t end = s->end() >> page_shift;
    const std::size_t extra = npages - s->npages;
    if (!pages_free(end, extra)) return false;
    assign(end, extra, s);
    s->npages = static_cast<std::uint32_t>(npages);
    bump(pages_in_use_, extra);
    bump(large_bytes_alloc_, std::uint64_t{extra} * page_size);
    return true;
}

void mheap::shrink_span(mspan* s, std::size_t npages) noexcept {
    lock_guard g(lock_);
    const std::size_t cut = s->npages - npages;
    assign((s->base >> page_shift) + npages, cut, nullptr);
    s->npages = static_cast<std::uint32_t>(npages);
    bump(pages_in_use_, -cut);
    bump(large_bytes_freed_, std::uint64_t{cut} * page_size);
}

}  // namespace spanmap::detail

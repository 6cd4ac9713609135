// mheap: the page heap. See DESIGN.md for the overview.
//
// Owns every arena (64 MiB of address space, aligned to its size, reserved
// with mmap a step at a time as the heap grows: see grow()), the page map that
// takes an address to its span, and every page: a page is either in exactly
// one span or free, and a free page is only a set bit in its arena's bitmap —
// free runs need no span objects and coalesce by themselves when a
// neighbour's bits are set.
//
// The page map names every page of a small span, since a free may point at
// any of its objects, but only the first page of a large one: a large block
// is freed by its start, so its other pages' entries would serve only
// diagnostics, and writing and clearing one per page cost about eight
// instructions a page under the heap's lock — most of a 1 MiB block's
// malloc/free, and the lock two threads then queued on. Every other entry is
// null, so an address inside a large block finds its span by walking back to
// the nearest named page (span_containing); growing or cutting a large span
// in place writes no entry at all.
//
// Placement is address-ordered first fit, as Go's page allocator: the lowest
// run of free pages that fits (and meets the alignment) wins, across arena
// boundaries when arenas are adjacent. Low addresses fill first, so the top of
// the heap empties and whole arenas can go quiet.
//
// Callers: mcentral (spans for a size class) and the large-object path; both
// may hold their own lock when they call in (lock order: mcentral -> mheap;
// mheap never calls up). Everything here runs under mheap's one lock except
// span_of(), which is lock-free.
//
// The empty-span cache. mcentral keeps one wholly free span per class as a
// spare and gives the others back here, and for the classes of one to a few
// objects a span (4 KiB to 32 KiB) that is a span per object or two: a
// program that frees a thousand 32 KiB blocks and allocates them again had
// every span undone (page map, class bytes, bitmap words, record) and
// carved anew, under this lock: more than half its time. So an empty
// small span that comes back through park_spans is kept as it is, on a list
// of its class, and the class's next alloc_spans takes it back whole: its
// page map, class bytes and objects' free bits are already what a span of
// the class needs, and its objects still carry the free mark, so a double
// free of one is caught as in any span of mcentral's (every object of a
// cached span is free in its bitmap; its objects past `handed` were never
// handed out).
// The cache never changes where a span is placed. Its spans are free pages as
// far as placement goes: any span carved from the free pages (a class whose
// own list is empty, a large object) first gives every cached span back (64 at
// a time per hold of the lock, so that other threads wait for no more than
// that), and a large block growing in place gives back the cached spans in its
// way; so first fit sees the free set it would see without the cache, and a
// heap that grows, grows as it would. Given back, a span's bitmap words keep
// the tick it was cached at, and the scavenger gives back spans cached longer
// than the decay period (trim_cached): their pages leave the resident set when
// they would have without the cache. It holds at most max_cached_pages in at
// most max_cached_spans; release_free_memory gives back all of it. Cached
// spans stay in the heap's counts of spans and pages in use: spans of their
// class with every object free, as mcentral's spare is.
//
// The process has one mheap (the runtime's), but nothing ties the class to
// it: a test may own another and drive it alone. Its arenas lie at addresses
// of their own, so the shared arena index (arena_of, span_of) serves both.
// What a second heap reserves stays reserved when it goes out of scope (no
// heap is ever torn down), and its growth's hint to the scavenger
// (scavenge_after_growth) reaches the process's scavenger thread, which only
// ever releases the process heap's pages.
#pragma once

#include "internal.h"

namespace spanmap::detail {

// Spans' storage: fixed-size records carved from mmap'd chunks, recycled
// through a free list. Owned by mheap's lock.
class span_pool {
public:
    constexpr span_pool() noexcept = default;
    mspan* get() noexcept;
    void put(mspan* s) noexcept;
    std::size_t in_use() const noexcept { return in_use_; }
    std::size_t capacity() const noexcept { return capacity_; }
    std::size_t mapped_bytes() const noexcept { return mapped_; }

private:
    static constexpr std::size_t chunk_bytes = 256 << 10;
    mspan* free_ = nullptr;
    char* chunk_ = nullptr;  // unused tail of the newest chunk
    std::size_t chunk_left_ = 0;
    std::size_t in_use_ = 0;
    std::size_t capacity_ = 0;
    std::size_t mapped_ = 0;  // bytes of chunks mapped (statistics: mspan_sys)
};

class mheap {
public:
    constexpr mheap() noexcept = default;
    mheap(const mheap&) = delete;
    mheap& operator=(const mheap&) = delete;

    // npages contiguous pages starting at a multiple of align_pages, made into
    // a span of size_class (0: a large object). nullptr when the OS refuses.
    mspan* alloc_span(std::size_t npages, std::size_t align_pages, unsigned size_class) noexcept;
    // Up to n small spans of size_class under one hold of the lock, into
    // out[0..); returns how many (0 only when the OS refuses the first).
    std::size_t alloc_spans(unsigned size_class, mspan** out, std::size_t n) noexcept;
    // released: the caller has already given the span's memory back to the
    // OS (os_release, outside any lock), so its pages join the free set as
    // released ones, as if the scavenger had taken them.
    void free_span(mspan* s, bool released = false) noexcept;
    // free_span of n spans under one hold of the lock.
    void free_spans(mspan* const* spans, std::size_t n) noexcept;
    // n empty small spans from mcentral, into the empty-span cache (see
    // above); those it has no room for are freed.
    void park_spans(mspan* const* spans, std::size_t n) noexcept;
    // Cached spans back to the free pages: those cached at least min_age
    // ticks before `now` (all of them with min_age 0). Returns how many.
    std::size_t trim_cached(std::uint32_t now, std::uint32_t min_age) noexcept;
    // Spans in the empty-span cache, and their pages (racy; exact under lock()).
    std::size_t cached_spans() const noexcept { return cached_spans_.load(std::memory_order_relaxed); }
    std::size_t cached_pages() const noexcept { return cached_pages_.load(std::memory_order_relaxed); }
    // For walkers holding lock(): the newest cached span of class c; older
    // ones follow through next.
    const mspan* cached_newest(unsigned c) const noexcept { return cached_[c].newest; }
    // A large span grown in place over the free pages after it; false if they
    // are not free. The new pages may hold old data.
    bool grow_span(mspan* s, std::size_t npages) noexcept;
    // A large span cut to npages, its tail returned as free pages (released:
    // as for free_span, the caller has given their memory back to the OS).
    void shrink_span(mspan* s, std::size_t npages, bool released = false) noexcept;

    // Gives free pages back to the OS (see scavenge.h): those of words whose
    // last free happened at least min_age ticks before `now`, at most about
    // max_pages of them (whole bitmap words) in one call, with the lock
    // dropped across the madvise. Returns the pages released.
    std::size_t scavenge(std::uint32_t now, std::uint32_t min_age, std::size_t max_pages) noexcept;
    // Pages being released right now, outside the lock (see scavenge).
    std::size_t pages_inflight() const noexcept { return pages_inflight_.load(std::memory_order_relaxed); }
    // In a fork child: pages a scavenger of the parent had in flight come back.
    void after_fork_child() noexcept;
    // The scavenger's clock; frees stamp their words with it.
    void set_tick(std::uint32_t t) noexcept { tick_.store(t, std::memory_order_relaxed); }
    std::uint32_t tick() const noexcept { return tick_.load(std::memory_order_relaxed); }
    // Pages freed since start-up (a cue for starting the scavenger).
    std::size_t pages_ever_freed() const noexcept { return pages_ever_freed_.load(std::memory_order_relaxed); }

    // Counters, written under the lock, read racily by statistics.
    std::size_t arenas() const noexcept { return narenas_.load(std::memory_order_relaxed); }
    // Pages of address space the arenas have reserved (mapped) so far.
    std::size_t pages_reserved() const noexcept { return pages_reserved_.load(std::memory_order_relaxed); }
    std::size_t pages_in_use() const noexcept { return pages_in_use_.load(std::memory_order_relaxed); }
    std::size_t small_spans() const noexcept { return small_spans_.load(std::memory_order_relaxed); }
    std::size_t large_spans() const noexcept { return large_spans_.load(std::memory_order_relaxed); }
    // Spans of one size class (index 0 unused: large spans are counted above).
    std::size_t class_spans(unsigned c) const noexcept { return class_spans_[c].load(std::memory_order_relaxed); }
    // Large objects for statistics: how many were handed out and given back,
    // and their bytes (whole pages) cumulatively — growth in place counts as
    // allocated bytes, shrinking in place as freed bytes.
    std::uint64_t large_nmalloc() const noexcept { return large_nmalloc_.load(std::memory_order_relaxed); }
    std::uint64_t large_nfree() const noexcept { return large_nfree_.load(std::memory_order_relaxed); }
    std::uint64_t large_bytes_alloc() const noexcept { return large_bytes_alloc_.load(std::memory_order_relaxed); }
    std::uint64_t large_bytes_freed() const noexcept { return large_bytes_freed_.load(std::memory_order_relaxed); }
    // Free pages whose memory has been returned to the OS (madvise).
    std::size_t pages_released() const noexcept { return pages_released_.load(std::memory_order_relaxed); }
    // errno of the first arena whose prctl naming failed (EINVAL: a kernel
    // without CONFIG_ANON_VMA_NAME); 0 while every arena took its name.
    int name_errno() const noexcept { return name_errno_.load(std::memory_order_relaxed); }

    // For walkers (invariant checks, statistics): hold lock() while reading.
    mutex& lock() noexcept { return lock_; }
    heap_arena* const* arena_list() const noexcept { return arenas_; }
    const span_pool& spans() const noexcept { return pool_; }

private:
    std::uintptr_t find_run(std::size_t npages, std::size_t align_pages) const noexcept;
    // freed_at: the tick to stamp on the span's bitmap words (a cached span's
    // is the tick it was cached at).
    void free_span_locked(mspan* s, bool released, std::uint32_t freed_at) noexcept;
    // Gives back cached spans from the oldest of each class, those cached
    // at least min_age ticks before now (min_age 0: all), at most `most`;
    // returns how many.
    std::size_t trim_cached_locked(std::uint32_t now, std::uint32_t min_age, std::size_t most) noexcept;
    mspan* alloc_span_locked(std::size_t npages, std::size_t align_pages, unsigned size_class) noexcept;
    bool grow(std::size_t npages, std::size_t align_pages) noexcept;
    bool reserve(std::size_t npages, std::size_t align_pages) noexcept;
    heap_arena* add_arena(std::uintptr_t base, std::uint32_t reserved_pages) noexcept;
    // Pages [lo, hi) of arena a, just mapped, become free pages.
    void add_pages(heap_arena* a, std::uint32_t lo, std::uint32_t hi) noexcept;
    // `bytes` of fresh address space at a multiple of `align`, or 0.
    std::uintptr_t reserve_region(std::size_t bytes, std::size_t align) noexcept;
    // Pages [first, first + n) (global page numbers), free until now, handed to
    // s; the page map names s on the first `mapped` of them (all of a small
    // span's, a large span's first, none when a large span grows in place).
    // Returns whether any of them was handed out before.
    bool take_pages(std::uintptr_t first, std::size_t n, mspan* s, std::size_t mapped) noexcept;
    // Pages [first, first + n) back to free (`released`: their memory already
    // went back to the OS); the page map's entries of the first `mapped` of
    // them are cleared.
    // Their bitmap words' freed tick becomes freed_at where that is later.
    void give_pages(std::uintptr_t first, std::size_t n, bool released, std::size_t mapped, std::uint32_t freed_at) noexcept;
    bool pages_free(std::uintptr_t first, std::size_t n) const noexcept;
    // Whether each of pages [first, first + n) is free or in a cached span.
    bool free_or_cached(std::uintptr_t first, std::size_t n) const noexcept;
    // s, a cached span, off its list.
    void uncache(mspan* s) noexcept;
    // The in-flight pages `bits` of word w of a, back in the free set (and
    // the released set when their madvise ran).
    void land(heap_arena* a, std::uint32_t w, std::uint64_t bits, bool released) noexcept;
    // The page map's entries for pages [lo, hi) of a, just cleared, given back
    // to the OS where they fill whole OS pages.
    static void release_page_map(heap_arena* a, std::uint32_t lo, std::uint32_t hi) noexcept;

    mutex lock_;
    span_pool pool_;
    heap_arena** arenas_ = nullptr;  // sorted by address
    heap_arena* top_ = nullptr;      // the newest arena: the heap grows from its reserved end
    std::atomic<std::size_t> narenas_{0};
    std::atomic<std::size_t> pages_reserved_{0};
    std::atomic<std::size_t> pages_in_use_{0};
    std::atomic<std::size_t> small_spans_{0};
    std::atomic<std::size_t> large_spans_{0};
    std::atomic<std::size_t> class_spans_[num_classes] = {};
    std::atomic<std::uint64_t> large_nmalloc_{0};
    std::atomic<std::uint64_t> large_nfree_{0};
    std::atomic<std::uint64_t> large_bytes_alloc_{0};
    std::atomic<std::uint64_t> large_bytes_freed_{0};
    std::atomic<std::size_t> pages_released_{0};
    std::atomic<std::size_t> pages_inflight_{0};
    std::atomic<std::size_t> pages_ever_freed_{0};
    std::atomic<std::uint32_t> tick_{0};
    std::atomic<int> name_errno_{0};
    // The empty-span cache: per class, a list through the spans' next/prev,
    // newest first.
    struct span_cache_list {
        mspan* newest = nullptr;
        mspan* oldest = nullptr;
    };
    span_cache_list cached_[num_classes] = {};
    // Written under the lock; read without it by statistics and the scavenger's start.
    std::atomic<std::size_t> cached_spans_{0};
    std::atomic<std::size_t> cached_pages_{0};
};

// h's own invariants (debug.cpp): bitmaps, page map, page classes and
// counters agree, arena by arena. Hold h.lock(), or be h's only user. false,
// with the violation in why, when one does not hold.
bool check_heap(const mheap& h, char* why, std::size_t why_len) noexcept;

inline constexpr std::size_t max_arenas = std::size_t{1} << 16;  // 4 TiB of heap
// The most the empty-span cache holds: one arena's pages, 64 MiB, in at
// most 1024 spans. A carve that gives them all back pays about 80 ns a span
// (measured: 631 us for 8079 spans of one page), so the count keeps that
// one allocation under 0.1 ms.
inline constexpr std::size_t max_cached_pages = pages_per_arena;
inline constexpr std::size_t max_cached_spans = 1024;
// The least address space the heap reserves at a time: 4 MiB.
inline constexpr std::size_t grow_step_pages = 512;
// Every arena's name in /proc/self/maps ("[anon:spanmap: heap]").
inline constexpr char arena_vma_name[] = "spanmap: heap";

}  // namespace spanmap::detail

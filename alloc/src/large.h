// The large cache: recently freed large spans, kept whole for the next
// request of the same page count. See DESIGN.md for the overview.
//
// A large object is a span of its own, and giving one to the page heap costs
// a walk over its pages: every page's span pointer and class byte are written
// when the span is made and again when it is undone, under the heap's lock —
// about eight instructions a page, 2,000 for a 1 MiB malloc/free pair, where
// glibc spends 300. Programs free and allocate large blocks of the same size
// over and over (buffers, a vector's doubling, a hash map's bucket arrays), so
// a freed large span is parked here as it is, still mapped page by page, and
// handed back whole to the next request for that many pages: one lock held
// for a list pop. TCMalloc and jemalloc keep freed large extents the same way.
//
// What it may hold is bounded — spans of at most `max_pages`, at most
// `max_bytes` in all — and it does not let the heap grow while it holds
// enough pages to serve the request: a miss that finds that many pages here
// first gives them all back to the heap, where they coalesce with their
// neighbours. The scavenger gives back spans parked longer than the decay
// period (large_cache_trim), and release_free_memory all of them.
//
// A parked span is free: its `cached` flag is set, so a second free of its
// address, or a realloc or malloc_usable_size of it, stops the process like
// any other double free. Its pages are poisoned for AddressSanitizer. In the
// statistics its bytes are cached bytes, as free objects in thread caches
// are: counted freed when parked, allocated again when taken.
//
// Lock order: the cache's lock is taken alone, never with another allocator
// lock held, except by lock_all, which takes it after every transfer tier's
// and before mheap's.
#pragma once

#include "internal.h"

namespace spanmap::detail {

class large_cache {
public:
    // 4 MiB: the size up to which glibc's own mmap threshold grows, so the
    // sizes that glibc serves from its heap are the ones served from here.
    static constexpr std::uint32_t max_pages = 512;
    static constexpr std::size_t max_bytes = std::size_t{32} << 20;

    constexpr large_cache() noexcept = default;
    large_cache(const large_cache&) = delete;
    large_cache& operator=(const large_cache&) = delete;

    // A parked span of exactly npages, no longer parked; nullptr on a miss.
    mspan* take(std::size_t npages) noexcept;
    // Parks the live large span s, freed by the program; false when it does
    // not fit (too big, or the cache is full), and then s is untouched. A span
    // already parked is a double free: the process stops naming ptr.
    bool put(mspan* s, const void* ptr) noexcept;
    // Takes out every span parked before tick `now - min_age` (all of them
    // with min_age 0), at most `room` of them, into out; returns how many.
    std::size_t take_old(std::uint32_t now, std::uint32_t min_age, mspan** out, std::size_t room) noexcept;
    // Pages parked now (racy; exact at a quiet point).
    std::size_t pages() const noexcept { return pages_.load(std::memory_order_relaxed); }
    std::size_t spans() const noexcept { return spans_.load(std::memory_order_relaxed); }
    // Cumulative: spans parked (frees) and taken back (mallocs), and their bytes.
    std::uint64_t nput() const noexcept { return nput_.load(std::memory_order_relaxed); }
    std::uint64_t ntake() const noexcept { return ntake_.load(std::memory_order_relaxed); }
    std::uint64_t bytes_put() const noexcept { return bytes_put_.load(std::memory_order_relaxed); }
    std::uint64_t bytes_taken() const noexcept { return bytes_taken_.load(std::memory_order_relaxed); }
    mutex& lock() noexcept { return lock_; }
    // For walkers holding lock(): the newest parked span of npages pages.
    const mspan* newest(std::uint32_t npages) const noexcept { return heads_[npages]; }
    std::uint64_t nreturned() const noexcept { return nreturned_.load(std::memory_order_relaxed); }
    std::uint64_t bytes_returned() const noexcept { return bytes_returned_.load(std::memory_order_relaxed); }

private:
    void unlink(mspan* s, std::uint32_t npages) noexcept;

    mutex lock_;
    // One list per page count, newest first, through the spans' next/prev
    // (a large span is on no mcentral list).
    mspan* heads_[max_pages + 1] = {};
    // Written under the lock; read without it by statistics.
    std::atomic<std::size_t> pages_{0};
    std::atomic<std::size_t> spans_{0};
    std::atomic<std::uint64_t> nput_{0};
    std::atomic<std::uint64_t> ntake_{0};
    std::atomic<std::uint64_t> bytes_put_{0};
    std::atomic<std::uint64_t> bytes_taken_{0};
    // Parked spans given back to the heap, which counts them freed a second
    // time: statistics take these off its count (snapshot.cpp).
    std::atomic<std::uint64_t> nreturned_{0};
    std::atomic<std::uint64_t> bytes_returned_{0};
};

// The large-object path over the cache: a span of npages (align_pages > 1: one
// aligned to that many pages, which the cache does not keep), nullptr when the
// OS refuses; and the free of a checked live large span s at ptr.
mspan* large_alloc_span(std::size_t npages, std::size_t align_pages) noexcept;
void large_free_span(mspan* s, void* ptr) noexcept;
// Parked spans back to the heap: those older than min_age ticks (0: all).
void large_cache_trim(std::uint32_t now, std::uint32_t min_age) noexcept;

}  // namespace spanmap::detail

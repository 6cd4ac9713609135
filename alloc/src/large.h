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
// enough pages to serve the request. A request that no parked span fits
// exactly takes the smallest one larger than it, cut to size: the pages past
// the block go back to the heap (mheap::shrink_span, a few bitmap words and
// no page-map entry), so a program whose large sizes vary — a few live
// buffers of random sizes replaced one at a time — is served from what it
// freed with one lock and one cut, where giving every parked span back and
// carving anew cost a lock per span. Only when no parked span is large
// enough, but all of them together are, do they all go back to the heap,
// where they coalesce with their neighbours. The scavenger gives back spans
// parked longer than the decay period (large_cache_trim), and
// release_free_memory all of them.
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
//
// In front of it, each thread cache keeps a few large slots of its own
// (thread_large_slots, the last member of mcache): a freed large span parks
// there first, and the thread's next request for that many pages takes it
// back with no lock — one exchange on a word of its own cache. A pair of one
// large size on one thread, the common case (a buffer allocated and freed in
// a loop), so costs no more than glibc's, whose top chunk is as near at hand.
// What a thread may hoard is bounded: four spans, 4 MiB in all (the largest
// span the central cache keeps, and as much again as the small bins' bound);
// a span that does not fit pushes the oldest out to the central cache. A
// request that no slot holds exactly takes the smallest slot that fits, cut
// to size, before it looks at the central cache; one that nothing parked
// fits, while the slots and the central cache hold at least the pages asked
// for, empties the slots into the central cache, whose own rule then lets the
// pages coalesce.
//
// The slots are written by their owner alone, except that the scavenger can
// take spans out of an idle thread's slots: every tick it takes those parked
// longer than the decay period and gives them to the heap, as it does with
// the central cache's (large_cache_trim); release_free_memory takes them all,
// from every thread. Owner and trimmer never both get a span. A trimmer
// takes a span by an exchange of its slot's word; the owner would have to
// as well, and that one locked instruction cost a third of a 64 KiB pair.
// So the cost is moved to the trimmers, which are rare (an asymmetric
// Dekker handshake, as user-space RCU does it): the owner marks itself
// inside a take (`in_take`), and reads `slot_trimmers` with only a compiler
// barrier between; while no trimmer runs, it empties the slot with a plain
// load and store. A trimmer counts itself in slot_trimmers, then makes
// every thread of the process pass a full barrier (membarrier), then waits
// for every owner inside a take to leave it: after that, any owner either
// finished its plain take before the trimmer looked, or saw the trimmer and
// exchanges, and the trimmer exchanges too. Where the kernel has no
// membarrier (or under ThreadSanitizer, which cannot see it), slot_trimmers
// never drops to zero and owners always exchange.
// A thread's slots also go to the central cache when it exits, when the
// program flushes its thread cache, and in a fork child for every thread that
// did not come along. A parked span in a slot is parked like any other: its
// `cached` flag is set, its pages poisoned, its bytes counted as freed.
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

    // The smallest parked span of npages or more (exactly npages when one is
    // parked), no longer parked, for the caller to cut to size; nullptr when
    // none is that large.
    mspan* take_fit(std::size_t npages) noexcept;
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

    // The page count of the first non-empty list from npages up; 0 if none.
    std::uint32_t first_nonempty(std::size_t npages) const noexcept;

    mutex lock_;
    // One list per page count, newest first, through the spans' next/prev
    // (a large span is on no mcentral list).
    mspan* heads_[max_pages + 1] = {};
    // Bit n set: heads_[n] is not empty. A best fit or a trim looks at a few
    // words, not at every list.
    static constexpr std::size_t nonempty_words = (max_pages + 64) / 64;
    std::uint64_t nonempty_[nonempty_words] = {};
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

// A thread's own large slots (see above). Each slot's span word is stored by
// the owner and emptied by whoever exchanges it to null first: the owner
// taking the span back, or a trimmer (the scavenger, release_free_memory)
// taking it away. The counters are written by the owner alone, with plain
// stores; statistics add them up over the live caches (under caches_lock)
// and the totals of caches handed back (large_slot_totals).
struct thread_large_slots {
    static constexpr unsigned nslots = 4;
    // 4 MiB: the largest span the central cache keeps fits alone.
    static constexpr std::uint32_t max_pages = large_cache::max_pages;

    std::atomic<mspan*> span[nslots];
    // 1 while the owner is inside slot_take (see the essay above).
    std::atomic<std::uint32_t> in_take;
    std::atomic<std::uint32_t> tick[nslots];  // the heap's tick when parked
    // Written by the owner alone: span[i]'s page count when it parked it (0:
    // empty as far as the owner knows; a trimmer may have emptied it since),
    // read by statistics for the slots whose span word is set; and the slot
    // to push out next when they are full.
    std::atomic<std::uint32_t> pages[nslots];
    std::uint32_t held;  // the sum of pages[]
    std::uint32_t victim;
    // Cumulative: spans parked here (frees) and taken back by the owner
    // (mallocs), and their bytes.
    std::atomic<std::uint64_t> nput;
    std::atomic<std::uint64_t> ntake;
    std::atomic<std::uint64_t> bytes_put;
    std::atomic<std::uint64_t> bytes_taken;
};

// Every slot's counters, folded: those of caches handed back, and the spans
// that left a slot other than by its owner's malloc (to the central cache or
// the heap, which count them freed again).
struct large_slot_totals {
    std::atomic<std::uint64_t> nput{0};
    std::atomic<std::uint64_t> ntake{0};
    std::atomic<std::uint64_t> bytes_put{0};
    std::atomic<std::uint64_t> bytes_taken{0};
    std::atomic<std::uint64_t> nreturned{0};
    std::atomic<std::uint64_t> bytes_returned{0};
};
extern constinit large_slot_totals slot_totals;

// Trimmers of thread slots at work, plus one for good where owners must
// always exchange (no membarrier; ThreadSanitizer). Starts at one: owners
// exchange until initialisation has registered for membarrier.
extern constinit std::atomic<std::uint32_t> slot_trimmers;

// The owner empties its slot i and gets what it held; nullptr when a trimmer
// took it first.
inline mspan* slot_take(thread_large_slots& t, unsigned i) noexcept {
    t.in_take.store(1, std::memory_order_relaxed);
    // Orders the store above before the load below for the compiler; the
    // processor's side is the trimmer's membarrier.
    std::atomic_signal_fence(std::memory_order_seq_cst);
    mspan* s;
    if (__builtin_expect(slot_trimmers.load(std::memory_order_acquire) == 0, 1)) {
        s = t.span[i].load(std::memory_order_relaxed);
        t.span[i].store(nullptr, std::memory_order_relaxed);
    } else {
        s = t.span[i].exchange(nullptr, std::memory_order_acquire);
    }
    t.in_take.store(0, std::memory_order_release);
    return s;
}

// The owner takes back the span of slot i, which it parked with npages
// pages; nullptr when a trimmer took it first.
inline mspan* large_slot_take_back(thread_large_slots& t, unsigned i, std::uint32_t npages) noexcept {
    t.pages[i].store(0, std::memory_order_relaxed);
    t.held -= npages;
    mspan* s = slot_take(t, i);
    if (s == nullptr) return nullptr;
    s->parked.store(false, std::memory_order_relaxed);
    bump(t.ntake);
    bump(t.bytes_taken, std::uint64_t{npages} * page_size);
    return s;
}

// The owner's span of exactly npages from its slots, no longer parked;
// nullptr on a miss.
inline mspan* large_slots_take(thread_large_slots& t, std::size_t npages) noexcept {
    for (unsigned i = 0; i < thread_large_slots::nslots; ++i) {
        if (t.pages[i].load(std::memory_order_relaxed) != npages) continue;
        if (mspan* s = large_slot_take_back(t, i, static_cast<std::uint32_t>(npages))) return s;
    }
    return nullptr;
}
// The smallest span of npages or more in the owner's slots, no longer parked
// (for the caller to cut to size); nullptr when none is that large.
mspan* large_slots_take_fit(thread_large_slots& t, std::size_t npages) noexcept;
// The owner parks its live large span s (checked, not parked) in a slot,
// pushing older spans out to the central cache to make room; false when s
// is too big for the slots.
bool large_slots_put(thread_large_slots& t, mspan* s) noexcept;
// Pages the owner last parked in its slots (a trimmer may have taken some).
inline std::size_t large_slots_pages(const thread_large_slots& t) noexcept { return t.held; }
// The owner's slots, all of them, to the central cache.
void large_slots_flush(thread_large_slots& t) noexcept;
// Flushes the slots of a cache being handed back and folds its counters
// into slot_totals (retire).
void large_slots_retire(thread_large_slots& t) noexcept;
// Spans parked in every live cache's slots now, and their pages; and the
// slots' counters, summed. The caller holds caches_lock.
struct slot_census {
    std::uint64_t spans;
    std::uint64_t pages;
    std::uint64_t nput;
    std::uint64_t ntake;
    std::uint64_t bytes_put;
    std::uint64_t bytes_taken;
};
slot_census large_slots_census_locked() noexcept;

// The large-object path over the caches, past the thread's slots: a span of
// npages (align_pages > 1: one aligned to that many pages, which the cache
// does not keep), nullptr when the OS refuses; and the free of a checked live
// large span s at ptr.
// t: the calling thread's slots, nullptr without a cache.
mspan* large_alloc_span(std::size_t npages, std::size_t align_pages, thread_large_slots* t) noexcept;
void large_free_span(mspan* s, void* ptr) noexcept;
// Parked spans back to the heap, in the central cache and in every thread's
// slots: those older than min_age ticks (0: all).
void large_cache_trim(std::uint32_t now, std::uint32_t min_age) noexcept;
// Registers for membarrier and lets owners take with plain stores if that
// took (initialisation); and again in a fork child, which is one thread.
void large_slots_init() noexcept;
void large_slots_after_fork_child() noexcept;

}  // namespace spanmap::detail

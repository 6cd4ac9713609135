// The scavenger: giving idle memory back to the OS. See <spanmap/alloc.h>.
//
// A free page keeps its memory until it has stayed free for the decay period
// (SPANMAP_CONF decay_ms, default 1000). Then a background thread — started
// lazily, once the heap has freed some pages, as Go's bgscavenge — hands it
// back with madvise(MADV_DONTNEED) (or MADV_FREE, SPANMAP_CONF madvise:free)
// and marks it released in its arena's bitmap. The clock is coarse on
// purpose: the thread ticks four times per decay period, and a free stamps the
// tick on its whole bitmap word (64 pages, 512 KiB), so one recent free keeps
// its 512 KiB neighbourhood resident a little longer — the price of not
// keeping a time per page. The thread runs on time, not on allocation
// activity, so an idle process shrinks too (jemalloc#1940).
//
// The heap's growth is the other cue: when it reserves more address space
// while it holds free pages not yet released, it asks the thread to release as
// many pages as it grew by, at once and whatever their age, as Go's mheap.grow
// does; the thread is woken for it, and the allocation that grew the heap
// does not wait.
//
// Released pages stay in the heap's free bitmap and are reused first-fit like
// any free page, before new address space is reserved; with MADV_DONTNEED
// they are known to read as zero, so calloc and allocate_zeroed skip clearing
// them.
//
// release_free_memory() does it all at once: the calling thread's cache, the
// spare empty span of every mcentral, the parked large spans and the heap's
// cached empty spans, then every free page, and it returns
// only once pages the background thread had in flight have landed. Other threads'
// caches are theirs alone (they are read without locks), so what they hold
// stays until they exit or refill; they are bounded (see cache.h).
//
// The scavenger never holds a lock across an madvise: it takes the pages it
// is about to release out of the free set (in flight, so nobody allocates
// them meanwhile), drops mheap's lock, madvises, and takes the lock again to
// mark them free and released — a bounded chunk (pages_per_call) at a time.
// So an allocation never waits for the kernel on the scavenger's behalf. After fork the child has no
// scavenger thread and starts none; its allocation slow paths keep the same
// clock instead and release what has aged, so a busy child shrinks too (an
// idle one keeps what it has until it allocates again).
#pragma once

#include <cstddef>

namespace spanmap::detail {

// Starts the background thread if it is due. Call with no allocator lock held.
// parked_pages: free pages the caller's thread keeps in its large slots,
// which count towards the start like the heap's free pages.
void maybe_start_scavenger(std::size_t parked_pages = 0) noexcept;
// The fork child has no scavenger thread and may not start one (the child of
// a threaded process may call only async-signal-safe functions, and
// ThreadSanitizer refuses): its allocation slow paths scavenge instead.
void scavenger_after_fork_child() noexcept;
// The heap grew by `pages` while holding at least that many free, unreleased
// pages: the scavenger releases that many soon, whatever their age (see
// mheap::grow). Never waits; may be called under mheap's lock.
void scavenge_after_growth(std::size_t pages) noexcept;
// Everything free, back to the OS now; returns the bytes released.
std::size_t release_free_memory() noexcept;

}  // namespace spanmap::detail

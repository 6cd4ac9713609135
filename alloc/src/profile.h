// The sampling heap profiler: how it hangs off the allocator. See
// <spanmap/profile.h> for the API and <spanmap/alloc.h> for the allocator.
//
// Sampling. Each thread cache keeps a byte countdown (cache_profile in
// cache.h) drawn from an exponential distribution with mean `rate`; an
// allocation that takes it below zero is sampled and the countdown is drawn
// again. That is a Poisson process over allocated bytes, so an object of s
// bytes is sampled with probability 1 - exp(-s/rate) — the rule pprof's
// heap_v2 unscaling inverts. Sizes are what the allocation takes: its class
// size, or a large object's whole pages. Go's MemProfileRate works the same.
//
// The hooks, and what they cost:
//   alloc_small   the countdown itself (count_for_profile in cache.h): a
//                 subtract and a store on a word in the line the TLS pointer
//                 leads to, and a branch to profile_small() when it goes
//                 below zero. Profiling off, the countdown runs from
//                 countdown_off (16 MiB) and profile_small() only winds it
//                 up again, so the fast path is the same instructions on or
//                 off, and being on costs only the samples themselves.
//   alloc_large   the same countdown, on the large (locked, slow) path, when
//                 the cache's `profiling` flag is set.
//   free          one test of mspan::live_samples, in the span line the free
//                 path loads anyway; non-zero sends the free to
//                 profile_on_free(), which drops the object from the table of
//                 sampled live objects if it is there.
// profile_start/profile_stop set the flag of every live cache under
// caches_lock (start sets profiling_redraw: the owner draws its countdown
// afresh, at the new rate) and store -1 into its countdown, so the owner's
// next allocation is a sample point that reads the flag; a cache takes the
// current state when it is attached. (The owner's countdown update is a
// plain load and store, not an atomic read-modify-write: when the store of
// -1 lands between them it is lost, and the thread sees the change at the
// end of its current countdown instead — at most countdown_off bytes, or one
// sampling interval, later.) A thread whose cache was handed back (it is
// exiting) allocates from mcentral and is not sampled.
//
// Recording a sample: the stack is captured with unw_backtrace before any
// lock is taken (libunwind reads the loader's tables; an allocator lock held
// there deadlocks against a dlopen that allocates), with the cache's
// in_profiler flag set and its countdown parked out of reach, so that
// allocations made meanwhile (libunwind may allocate) are never sampled.
// spanmap's own frames — the functions in the spanmap_alloc_text section
// (SPANMAP_ALLOC_TEXT), or the whole of libspanmap_malloc.so — are dropped,
// so the first frame is the program's. Then, under the profiler's lock: the stack is found or added in
// a hash table of stacks, and the object in a hash table of sampled live
// objects (address -> stack, size). Both tables live on memory mapped from
// the OS; the profiler never calls malloc.
//
// Lock: the profiler's one mutex guards both tables. It never nests with an
// allocator lock (nothing that holds it allocates, and it is never taken with
// an allocator lock held), and fork_prepare takes it first. Before that,
// fork_prepare waits for the threads inside libunwind to come out: libunwind
// has locks of its own, and a child that inherited one held would hang at its
// first sample.
#pragma once

#include "cache.h"

#include <spanmap/profile.h>

namespace spanmap::detail {

// Go's MemProfileRate, 512 KiB: <spanmap/profile.h> names it.
using spanmap::default_profile_rate;
// Frames kept per stack; deeper stacks are cut (pprof reads them as they are).
inline constexpr std::size_t max_profile_depth = 64;

// Whether profiling is on: an attached cache's flag is set to
// profiling_redraw if so, profiling_off if not.
bool profile_active() noexcept;
// The fork handlers' part (cache.cpp). prepare: waits until no thread is in
// libunwind (whose locks the child could never take) and takes the tables'
// lock; parent: undoes it; child: called after parent, forgets the threads
// that are gone.
void profile_fork_prepare() noexcept;
void profile_fork_parent() noexcept;
void profile_fork_child() noexcept;
// SPANMAP_CONF's prof and prof_rate, applied at initialisation (init_slow).
void profile_init_from_conf() noexcept;

// The large-object path's hook: counts p (span s) against the countdown of the
// calling thread's cache, giving the thread a cache if it has none yet.
void profile_large(void* p, mspan* s) noexcept;
// A free of an object in a span with live samples: drops p from the sampled
// objects if it is one. Cold: called only when s->live_samples != 0.
void profile_on_free(void* p, mspan* s) noexcept;

// --- for tests ---------------------------------------------------------------

// A fixed seed for the countdowns of the caches that draw after the call (at
// the next profile_start); 0 goes back to seeds from the OS. Each cache that
// draws gets seed + its turn, so one thread's samples repeat run to run.
void profile_seed(std::uint64_t seed) noexcept;
// Called while a sample is recorded (after the stack is captured, before the
// lock is taken), as libunwind may be: tests allocate from it to check that
// allocations made inside the profiler are neither sampled nor deadlock.
extern std::atomic<void (*)()> profile_test_hook;

struct profile_totals {
    std::uint64_t stacks;        // distinct stacks recorded
    std::uint64_t live_samples;  // entries in the table of sampled live objects
    std::uint64_t inuse_objects, inuse_bytes;  // over all stacks: sampled, not yet freed
    std::uint64_t alloc_objects, alloc_bytes;  // over all stacks: sampled, cumulative
};
profile_totals read_profile_totals() noexcept;
// Checks the tables against each other and the heap: the live table's entries
// are the stacks' in-use figures, each entry is an allocated object in a span
// whose live_samples counts it. Call at a quiet point. false + why on failure.
bool profile_check_invariants(char* why, std::size_t why_len) noexcept;

}  // namespace spanmap::detail

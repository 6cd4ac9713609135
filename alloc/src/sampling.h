// The sampler's hooks in the allocator's paths, and what they cost (see
// <sampler.h> for the sampler as the profiler sees it).
//
// Sampling is a Poisson process over allocated bytes: each thread cache's
// countdown (cache_profile in cache.h) is drawn from an exponential
// distribution with mean `rate`, so an object of s bytes is sampled with
// probability 1 - exp(-s/rate) — the rule pprof's heap_v2 unscaling inverts.
// Sizes are what the allocation takes: its class size, or a large object's
// whole pages. Go's MemProfileRate works the same.
//
//   small allocation  the countdown itself (count_for_profile in fastpath.h):
//                     a subtract and a store on a word in the line the TLS
//                     pointer leads to, and a call to sample_small() when it
//                     goes below zero. Sampling off, the countdown runs from
//                     countdown_off (16 MiB) and sample_small() only winds it
//                     up again, so the fast path is the same instructions on
//                     or off, and being on costs only the samples themselves.
//   large allocation  the same countdown on the (locked, slow) large path,
//                     when the cache's `profiling` flag is set.
//   free              nothing of its own: a span with a live sample has the
//                     sampled bit flipped in its pages' free_check words,
//                     which moves the fast path's offsets past every object, so
//                     the object-start test sends each of its frees to the
//                     checked path, which tests the object's sampled bit and
//                     calls sampled_free() when set.
//
// start/stop set the flag of every live cache under caches_lock (start sets
// profiling_redraw: the owner draws its countdown afresh, at the new rate) and
// store -1 into its countdown, so the owner's next allocation is a sample
// point that reads the flag; a cache takes the current state when it is
// attached. (The owner's countdown update is a plain load and store, not an
// atomic read-modify-write: when the store of -1 lands between them it is
// lost, and the thread sees the change at the end of its current countdown
// instead — at most countdown_off bytes, or one sampling interval, later.) A
// thread whose cache was handed back (it is exiting) is not sampled.
#pragma once

#include "cache.h"
#include "sampler.h"

namespace spanmap::detail {

// A small allocation p (class c) whose size took mc's countdown below zero:
// a sample when sampling is on, else the countdown starts again.
void* sample_small(mcache* mc, void* p, unsigned c) noexcept;
// The large-object path's hook: counts p (span s) against the countdown of the
// calling thread's cache, giving the thread a cache if it has none yet.
void sample_large(void* p, mspan* s) noexcept;
// A free of p in span s, which has sampled objects: if p is one of them (its
// bit is set), the recorder forgets it and clears the bit.
void sampled_free(void* p, mspan* s) noexcept;
// Whether sampling is on (a cache being attached takes this state).
bool sampling_active() noexcept;
// The recorder's fork handlers, when one is installed.
void sampler_fork_prepare() noexcept;
void sampler_fork_parent() noexcept;
void sampler_fork_child() noexcept;

}  // namespace spanmap::detail

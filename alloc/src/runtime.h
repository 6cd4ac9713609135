// The runtime root: the process-wide state every tier hangs from, its
// initialisation, the one lock order, and fork. See DESIGN.md for the
// overview of the tiers themselves.
//
// There is one allocator per process, so its state is one constant-
// initialised object, `g`: it is ready before any constructor runs, because
// spanmap may be malloc and be called first of all — by the dynamic loader,
// by another library's constructor. Nothing in it needs a constructor or a
// destructor, and nothing is freed at exit: other exit handlers may still
// allocate.
//
// Initialisation is lazy and happens once (init_slow, behind ensure_init's
// one acquire load): the size classes' mcentrals and transfer tiers are set
// up, the free mark's keys drawn, the thread-exit key made and SPANMAP_CONF
// read. Nothing it calls under its lock allocates, so it never re-enters
// itself; other threads wait on the lock. The fork handlers are registered
// after the state is usable, outside the lock, because glibc may allocate to
// record them — and that allocation finds the allocator ready.
//
// fork: the child must not inherit a lock held by a thread that does not
// exist there. Every allocator lock is taken before fork in the one order
// the allocator nests them (lock_all), after the locks of the profiler's
// recorder (its fork_prepare, through the sampler), which nest with none;
// the child then empties and parks the caches of the
// threads that did not come along.
#pragma once

#include "large.h"
#include "transfer.h"

#include <pthread.h>

namespace spanmap::detail {

struct mcache;

// Everything process-wide, constant-initialised so that it is ready before any
// constructor runs (the allocator may be called first of all).
struct global_state {
    mheap heap;
    mcentral central[num_classes];
    transfer_cache transfer[num_classes];
    large_cache large;
    pthread_key_t exit_key = 0;
    std::atomic<int> init_state{0};  // 0: not yet, 2: done
    mutex init_lock;

    mutex caches_lock;  // guards the two lists and the counts below
    mcache* live = nullptr;
    mcache* parked = nullptr;
    std::size_t nlive = 0;
    std::size_t nparked = 0;
    std::size_t caches_mapped = 0;

    // Objects allocated and freed by threads without a cache, and by caches
    // that were handed back (their counters fold in here).
    std::atomic<std::uint64_t> retired_nmalloc[num_classes] = {};
    std::atomic<std::uint64_t> retired_nfree[num_classes] = {};
};
extern constinit global_state g;
// The free mark's keys (fastpath.h), drawn once at initialisation: the xor
// key has its low 4 bits set, so no object address (16-byte aligned, or 8
// for the 8- and 24-byte classes) xors to zero; the multiplier is odd. Not
// members of g: free's fast path then reads each with one instruction, not
// after an address of g's. A cache line of their own, which nothing writes
// after initialisation, so that every thread's free keeps it.
struct alignas(64) free_keys {
    std::uint64_t xor_key;
    std::uint64_t mul_key;
};
extern constinit free_keys free_key __attribute__((visibility("hidden")));

void init_slow() noexcept;
// Every mcentral (in class order), every transfer tier, the large cache,
// then mheap, then the cache lists: the one order the allocator nests its
// locks in. For walkers that need a still heap (invariant checks, statistics)
// and for fork.
void lock_all() noexcept;
void unlock_all() noexcept;
inline void ensure_init() noexcept {
    if (g.init_state.load(std::memory_order_acquire) != 2) init_slow();
}

}  // namespace spanmap::detail

// The sampling heap profiler: a module above the allocator. See
// <spanmap/profile.h> for the API and the output format, and <sampler.h> for
// how the allocator samples and calls up into the recorder installed here.
//
// Three parts, one file each:
//   capture.cpp  the stack of a sample: libunwind (linked, or opened with
//                dlopen by the malloc replacement, which needs libc alone),
//                with spanmap's own frames dropped so the first frame is the
//                program's.
//   tables.cpp   the recorder: a hash table of stacks and one of sampled live
//                objects (address -> stack, size), on memory mapped from the
//                OS; the profiler never calls malloc.
//   pprof.cpp    the profile written for pprof (heap_v2 text, then
//                /proc/self/maps so that pprof can place the addresses), on
//                demand and at exit for SPANMAP_CONF=prof:true.
// profiler.cpp holds the public API and starts profiling from SPANMAP_CONF.
//
// Recording a sample: the stack is captured before any lock is taken
// (libunwind reads the loader's tables; a lock held there deadlocks against a
// dlopen that allocates); the allocator has parked the thread's countdown, so
// allocations made meanwhile (libunwind may allocate) are never sampled. Then,
// under the tables' lock, the stack is found or added and the object entered.
//
// Lock: the tables' one mutex. It never nests with an allocator lock (nothing
// that holds it allocates, and it is never taken with an allocator lock held),
// and the fork handlers take it before the allocator's locks. Before that,
// fork_prepare waits for the threads inside libunwind to come out: libunwind
// has locks of its own, and a child that inherited one held would hang at its
// first sample.
#pragma once

#include "sampler.h"

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include <spanmap/profile.h>

namespace spanmap::detail {

// Frames kept per stack; deeper stacks are cut (pprof reads them as they are).
inline constexpr std::size_t max_profile_depth = 64;

// --- capture.cpp ---------------------------------------------------------------

// Whether stacks can be had at all (built with libunwind).
constexpr bool have_unwinder() {
#ifdef SPANMAP_HAVE_LIBUNWIND
    return true;
#else
    return false;
#endif
}
// Opens libunwind where it is not linked in; false if it cannot be had. Never
// from inside malloc (dlopen allocates).
bool load_unwinder() noexcept;
// Before sampling starts: finds spanmap's own code range and initialises the
// unwinder (whose first use is not thread-safe).
void prepare_capture() noexcept;
// The program's stack at the calling sample point, innermost first, spanmap's
// frames dropped: at least one frame (0 when nothing could be had).
std::size_t capture_program_stack(std::uintptr_t* frames, std::size_t max) noexcept;
// The fork gate: prepare waits until no thread is in libunwind; done lets them in.
void capture_fork_prepare() noexcept;
void capture_fork_done() noexcept;
void capture_fork_child() noexcept;

// --- tables.cpp ----------------------------------------------------------------

// One stack and what was sampled from it. Stacks are never removed: their
// cumulative figures outlive their objects. The frames follow the record.
struct stack_record {
    std::uint64_t hash;
    std::uint64_t alloc_objects, alloc_bytes;  // sampled, cumulative
    std::uint64_t free_objects, free_bytes;    // of those, freed since
    std::uint32_t depth;
    std::uintptr_t* frames() noexcept { return reinterpret_cast<std::uintptr_t*>(this + 1); }
    const std::uintptr_t* frames() const noexcept { return reinterpret_cast<const std::uintptr_t*>(this + 1); }
};
static_assert(sizeof(stack_record) % alignof(std::uintptr_t) == 0, "frames follow the record, aligned");

// A sampled object not yet freed.
struct live_sample {
    std::uintptr_t addr;  // 0: an empty slot
    stack_record* stack;
    std::uint64_t bytes;
};

struct profile_tables {
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;  // guards the rest
    stack_record** stacks = nullptr;  // open addressing on hash, linear probing
    std::size_t stack_slots = 0;
    std::size_t nstacks = 0;
    char* chunk = nullptr;  // unused tail of the newest record chunk
    std::size_t chunk_left = 0;
    live_sample* live = nullptr;  // open addressing on the address, linear probing
    std::size_t live_slots = 0;
    std::size_t nlive = 0;
};
extern profile_tables tables;

class tables_lock {
public:
    tables_lock() noexcept { pthread_mutex_lock(&tables.lock); }
    ~tables_lock() { pthread_mutex_unlock(&tables.lock); }
    tables_lock(const tables_lock&) = delete;
    tables_lock& operator=(const tables_lock&) = delete;
};

// The recorder the allocator calls (installed by profiler.cpp).
extern const sampler::recorder profile_recorder;

struct profile_totals {
    std::uint64_t stacks;        // distinct stacks recorded
    std::uint64_t live_samples;  // entries in the table of sampled live objects
    std::uint64_t inuse_objects, inuse_bytes;  // over all stacks: sampled, not yet freed
    std::uint64_t alloc_objects, alloc_bytes;  // over all stacks: sampled, cumulative
};
// Under the tables' lock.
profile_totals totals_locked() noexcept;

// --- pprof.cpp -----------------------------------------------------------------

// Writes the profile to path; false with errno on failure.
bool write_profile(const char* path) noexcept;

// --- for tests -----------------------------------------------------------------

// A fixed seed for the countdowns of the caches that draw after the call (at
// the next profile_start); 0 goes back to seeds from the OS. Each cache that
// draws gets seed + its turn, so one thread's samples repeat run to run.
void profile_seed(std::uint64_t seed) noexcept;
// Called while a sample is recorded (after the stack is captured, before the
// lock is taken), as libunwind may be: tests allocate from it to check that
// allocations made inside the profiler are neither sampled nor deadlock.
extern std::atomic<void (*)()> profile_test_hook;
profile_totals read_profile_totals() noexcept;
// Checks the tables against each other and the heap: the live table's entries
// are the stacks' in-use figures, each entry is an allocated object in a span
// whose live_samples counts it. Call at a quiet point. false + why on failure.
bool profile_check_invariants(char* why, std::size_t why_len) noexcept;

}  // namespace spanmap::detail

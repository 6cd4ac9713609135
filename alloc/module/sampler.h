// The allocator's side of the heap profiler, as the profiler (alloc/profile)
// sees it.
//
// Sampling is the allocator's: each thread cache keeps a byte countdown drawn
// from an exponential distribution with mean `rate`, and an allocation that
// takes it below zero is a sample point (the countdown lives in the cache
// line the fast path already touches, see cache.h). What a sample records —
// the stack, the tables, the profile written for pprof — is the profiler's,
// a module above the allocator that plugs in a `recorder`. The allocator
// calls up only through that table: with no recorder installed nothing is
// ever sampled, and the allocator links and runs without the profiler.
//
// The allocator keeps, per span, which objects are sampled (a bit each and a
// count), so that free sends only sampled objects to the recorder. The
// recorder sets and clears them (mark/unmark) under the lock that guards its
// own tables, which its fork_prepare takes: a child never inherits a table
// entry without its bit, or a bit without its entry.
#pragma once

#include <cstddef>
#include <cstdint>

// Every function that can stand between the program's call and the
// profiler's stack capture (the allocation entry points, the paths to the
// sampler and the recorder's record) is placed in this section, so the
// profiler can drop their frames by address: the linker gathers the section
// into one range and names its ends __start_spanmap_alloc_text and
// __stop_spanmap_alloc_text.
#define SPANMAP_ALLOC_TEXT __attribute__((section("spanmap_alloc_text")))
// At the other end, the entry points of what runs rarely if ever (reports,
// profile and invariant writers, introspection, fatal errors, configuration
// warnings) are [[gnu::cold]]: compiled for size and gathered apart from the
// allocator's own code, they no longer spread it over more pages of the
// preloaded library's text, every one of which a process maps (40 KiB of
// text, and of resident set, less).

namespace spanmap::sampler {

struct recorder {
    // Records p (bytes) as sampled from the calling stack, and marks it
    // (mark()); false when it could not (no memory for the tables). Called from inside an allocation
    // with no allocator lock held and the thread's countdown parked, so
    // allocations it makes (an unwinder's) are never sampled.
    bool (*record)(void* p, std::size_t bytes) noexcept;
    // p, marked sampled, is being freed: drop it and unmark it.
    bool (*forget)(void* p) noexcept;
    // fork: prepare runs before the allocator takes its locks, parent and
    // child after it releases them (in the child, parent first, then child).
    void (*fork_prepare)() noexcept;
    void (*fork_parent)() noexcept;
    void (*fork_child)() noexcept;
};

// The span bookkeeping of a sampled object p: its bit and its span's count.
void mark(void* p) noexcept;
void unmark(void* p) noexcept;

// Installs r (static storage) for good. The first installed wins.
void install(const recorder* r) noexcept;

// Starts sampling every thread at the given mean rate (bytes), or stops it:
// every live cache is told, and draws its countdown afresh at its next
// allocation. Needs a recorder installed.
void start(std::uint64_t rate) noexcept;
void stop() noexcept;
bool active() noexcept;
std::uint64_t rate() noexcept;
// Tests: a fixed seed for the countdowns drawn after the call (each cache
// that draws gets seed + its turn); 0 goes back to seeds from the OS.
void seed(std::uint64_t s) noexcept;

// SPANMAP_CONF's prof, prof_rate and prof_prefix, and whether the allocator
// was initialised (init() does it).
bool initialised() noexcept;
void init() noexcept;
bool conf_prof() noexcept;
std::uint64_t conf_prof_rate() noexcept;
const char* conf_prof_prefix() noexcept;  // at most max_prof_prefix bytes
inline constexpr std::size_t max_prof_prefix = 255;

// Metadata memory for the profiler's tables, counted in the allocator's
// metadata (mem_stats' other_sys) and named in /proc/self/maps.
void* map_metadata(std::size_t bytes, const char* vma_name) noexcept;
void unmap_metadata(void* p, std::size_t bytes) noexcept;

// What the heap says about a recorded object, for the profiler's invariant
// check (at a quiet point).
struct object_facts {
    bool in_span;         // a span (small or large, not free pages) holds p
    bool small;           // a small span's object
    std::size_t usable;   // its class size, or the large span's bytes
    bool free_in_span;    // free in its span's bitmap
    bool sampled_bit;     // its span marks it sampled
    const void* span;     // the span, for telling spans apart
    std::uint32_t span_live_samples;  // the span's count of sampled objects
    std::uint32_t span_sampled_bits;  // and its bits, counted
};
object_facts facts(std::uintptr_t p) noexcept;

}  // namespace spanmap::sampler

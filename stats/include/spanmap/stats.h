#pragma once
// spanmap's statistics and inspection — what the figures mean, how they add
// up and how they are kept cheap. The allocator's own design is told in
// <spanmap/alloc.h>.
//
// Where the bytes are
//   Every byte the allocator maps from the OS is counted once, in sys:
//
//     sys        = heap_sys + mspan_sys + mcache_sys + other_sys
//     heap_sys   = heap_inuse + heap_idle                 (the arenas' reserved pages)
//     heap_inuse = alloc + cached_bytes + span_free + span_waste
//     heap_released <= heap_idle
//
//   alloc (Go's Alloc, equal to heap_alloc) is what the program holds: a small
//   object counts its class size, a large one its whole pages. A free object
//   waiting in a thread cache or in the transfer tier between caches is not
//   the program's: it is in cached_bytes, not in alloc (Go's ReadMemStats
//   likewise counts only the slots handed out, not an mcache's free ones).
//   span_free are free objects back in their span's bitmap (mcentral's),
//   span_waste the tail of each small span too short for one more object.
//   heap_idle are arena pages no span holds; they stay mapped — and resident,
//   once touched — until the scavenger gives them back (madvise), and
//   heap_released counts the ones it gave back and that no span took since. mspan_sys / mcache_sys / other_sys are
//   the allocator's own records (span records; thread caches; arena records,
//   the arena list and the heap profiler's tables), mapped from the OS, never
//   from malloc.
//
// Counting
//   mallocs, frees, total_alloc and by_size[] are cumulative; by_size[0]
//   counts large objects (Go's class 0), whose sizes vary:
//
//     heap_objects = mallocs - frees
//                  = Σ (by_size[c].mallocs - by_size[c].frees)
//     alloc        = Σ_{c>=1} (by_size[c].mallocs - by_size[c].frees) × size_c
//                    + large_bytes
//
//   A large object grown or shrunk in place by realloc changes large_bytes
//   and total_alloc (growth counts as allocated bytes) but not mallocs.
//
// Cheap to keep
//   The free fast path pays one plain add into a counter of the thread's own
//   cache (cache_bin::nfree: one writer, a relaxed load and store, no
//   read-modify-write, no cache line shared with another thread); malloc pays
//   nothing: a bin's mallocs follow from its frees, the objects that moved in
//   and out of it, and its count. A thread that exits folds its counters into process-wide totals,
//   which also count the rare thread without a cache. Large objects and spans
//   are counted by mheap under the lock it already holds. read_mem_stats()
//   adds these up: it takes the heap's lock and the cache list's lock for a
//   moment each, and never stops other threads.
//
// Exact at a quiet point
//   Counters of running threads are read while they run, so while threads
//   allocate every figure is some recent value and derived ones may disagree
//   by the operations in flight (a difference that would go negative is shown
//   as 0). Once no thread allocates or frees and the reader has synchronised
//   with them (threads joined, say), every identity above holds exactly.
//   recompute_mem_stats() finds the same figures a second way — walking every
//   arena's page map and every span under every allocator lock, and counting
//   the objects in thread caches — and a test checks that the two agree.
//
// Never allocates
//   Everything here works when spanmap *is* malloc: results go into fixed
//   structs the caller holds; /proc is read with open/read into buffers on the
//   stack and parsed by hand; reports are formatted with snprintf (integer,
//   pointer and string conversions only — glibc may format floating point
//   through malloc) into a stack buffer and written with write(2).

#include <spanmap/mem_stats.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>

namespace spanmap {

inline constexpr std::size_t num_size_classes = SPANMAP_NUM_SIZE_CLASSES;

// --- the snapshot ------------------------------------------------------------

using mem_stats = ::spanmap_mem_stats;
using size_class_stats = ::spanmap_size_class_stats;

// From the counters: cheap, exact at a quiet point (see above).
mem_stats read_mem_stats() noexcept;
// The same figures found by walking every span and thread cache under every
// allocator lock; the cumulative ones (mallocs, frees, total_alloc, by_size)
// and the records' sizes come from the counters, as nothing else holds them.
// It blocks every allocation while it walks; meant for tests and reports.
mem_stats recompute_mem_stats() noexcept;

// --- per size class (jemalloc's bins table) ------------------------------------

struct class_stats {
    std::uint32_t size;              // object bytes (0 for index 0: large objects)
    std::uint32_t pages_per_span;    // 0 for large objects: each has its own span
    std::uint32_t objects_per_span;  // 1 for large objects
    std::uint64_t spans;
    std::uint64_t objects;  // spans × objects_per_span
    std::uint64_t in_use;   // out with the program
    std::uint64_t cached;   // free, in thread caches or the transfer tier
    std::uint64_t free;     // free, in their spans
    std::uint64_t mallocs;  // cumulative, as by_size
    std::uint64_t frees;
    // in_use + cached + free == objects; in_use == mallocs - frees when quiet.
    double utilisation() const noexcept { return objects != 0 ? double(in_use) / double(objects) : 0.0; }
};

// Walks every span under every lock (exact at a quiet point). Index 0 is the
// large objects: spans == objects == in_use == live large objects.
void read_class_stats(class_stats (&out)[num_size_classes]) noexcept;

// One thread cache attached to a running thread.
struct cache_stats {
    const void* cache;    // identifies the cache (its address)
    bool current_thread;  // the calling thread's own
    std::uint64_t objects;
    std::uint64_t bytes;
};
// Fills out[0 .. min(n, max)) and returns n, the number of live caches.
std::size_t read_cache_stats(cache_stats* out, std::size_t max) noexcept;

// --- the arenas in /proc/self/maps -----------------------------------------------

// Every arena is named "spanmap: heap" with prctl(PR_SET_VMA_ANON_NAME) when
// it is reserved, so /proc/self/maps shows "[anon:spanmap: heap]" (as Go 1.25
// shows "[anon: Go: heap]"). Kernels built without CONFIG_ANON_VMA_NAME
// refuse with EINVAL; the arenas are then found by address alone.
enum class naming_outcome : std::uint8_t {
    no_arenas,    // nothing reserved yet
    named,        // every arena took its name
    unsupported,  // the kernel refused with EINVAL (no CONFIG_ANON_VMA_NAME)
    failed,       // refused for another reason (name_errno says which)
};

inline constexpr std::size_t max_report_arenas = 64;  // 4 GiB of heap, listed one by one
inline constexpr std::size_t max_report_lines = 64;
inline constexpr std::size_t max_line_name = 64;

// One line of /proc/self/maps with its /proc/self/smaps figures (bytes).
struct mapping_line {
    std::uintptr_t start;
    std::uintptr_t end;
    char perms[5];             // "rw-p"
    char name[max_line_name];  // "[anon:spanmap: heap]", a path, or "" (truncated to fit)
    std::uint64_t size;
    std::uint64_t rss;
    std::uint64_t private_dirty;
    std::uint64_t anon_huge_pages;
};

struct arena_mapping {
    std::uintptr_t base;
    std::uintptr_t end;
    bool named;      // prctl took when the arena was reserved
    bool name_seen;  // every line over the arena shows "[anon:spanmap: heap]"
    bool covered;    // the lines cover the arena without a gap
    std::uint32_t first_line;  // lines over the arena: lines[first_line, +nlines);
    std::uint32_t nlines;      // adjacent arenas may share a line
    std::uint64_t pages_in_use;  // 8 KiB pages held by spans
    std::uint64_t pages_idle;
    // Resident bytes (mincore, per OS page), split by whether the heap page
    // under them is in a span; rss == rss_in_use + rss_idle. A page that was
    // only ever read maps the kernel's shared zero page: mincore counts it,
    // smaps' Rss does not (the heap itself never reads a page it has not
    // written).
    std::uint64_t rss;
    std::uint64_t rss_in_use;
    std::uint64_t rss_idle;
};

struct mapping_report {
    bool ok;           // /proc/self/smaps or /proc/self/maps could be read
    bool has_figures;  // smaps was read; without it Size/Rss/... are 0
    bool truncated;    // more arenas or lines than the lists hold (totals still cover all)
    naming_outcome naming;
    int name_errno;
    std::size_t narenas;  // arenas in the heap; arenas[] holds the first max_report_arenas
    std::size_t nlines;   // lines over the heap; lines[] holds the first max_report_lines
    // The heap beside its resident memory (bytes); the rss figures sum the arenas'.
    std::uint64_t heap_sys;
    std::uint64_t heap_inuse;
    std::uint64_t heap_idle;
    std::uint64_t heap_released;
    std::uint64_t heap_rss;
    std::uint64_t heap_rss_in_use;
    std::uint64_t heap_rss_idle;
    // Sums over every line that overlaps an arena, from smaps. When the lines
    // are exactly the arenas (as named arenas are), lines_size == heap_sys and
    // lines_rss == heap_rss at a quiet point.
    std::uint64_t lines_size;
    std::uint64_t lines_rss;
    std::uint64_t lines_private_dirty;
    std::uint64_t lines_anon_huge_pages;
    arena_mapping arenas[max_report_arenas];
    mapping_line lines[max_report_lines];
};

// Reads /proc/self/smaps (or /proc/self/maps, where smaps is missing) and the
// residency of every arena page. The report is some 12 KiB (less than 16 KiB,
// asserted): mind small stacks.
mapping_report inspect_mappings() noexcept;
const char* to_string(naming_outcome n) noexcept;

// --- one pointer -------------------------------------------------------------

enum class object_state : std::uint8_t {
    not_in_heap,  // no arena of the heap holds the address (or not yet: an arena's unreserved top)
    idle_page,    // inside an arena, on a page no span holds
    span_tail,    // inside a small span, past its last object
    allocated,    // the object is out with the program
    cached,       // free, in a thread cache's bin, the transfer tier or the large cache
    free,         // free in its span's bitmap
};

struct location {
    object_state state;
    std::uintptr_t arena;       // the arena's base; 0 when not_in_heap
    std::uintptr_t span_start;  // 0 when no span holds the address
    std::uintptr_t span_end;
    std::size_t pages;
    unsigned size_class;        // 0: a large object
    std::size_t object_size;    // the class size, or the large object's bytes
    std::size_t object_index;
    std::uintptr_t object_start;
    bool interior;  // the address is inside the object, not at its start
};

// Where p lies in the heap. The span and its free bitmap are read under their
// locks (mcentral's, then mheap's), so a span is never seen half-made. An
// object neither free in its span nor in a thread cache is allocated; the
// caches are read under their list's lock while their owners push and pop
// without one, so the cached/allocated answer for an object of another
// thread's cache is exact at a quiet point (for the calling thread's own
// cache, always). Reads no object memory. Never allocates.
location locate(const void* p) noexcept;
const char* to_string(object_state s) noexcept;

// --- reports -----------------------------------------------------------------

enum class stats_format : std::uint8_t { text, json };

// The full report: the summary whose lines add up, counters, the size-class
// table, the thread caches, and the arenas with their /proc lines and RSS.
// Flushes f, then writes to its file descriptor (a FILE without one, such as
// fmemopen's, gets fwrite). SPANMAP_CONF=stats_print:true prints it, as text,
// to stderr at exit.
void print_stats(std::FILE* f, stats_format format = stats_format::text) noexcept;
// The same report into buf (always NUL-terminated when len > 0), like
// snprintf: returns the length of the whole report, which is >= len when it
// was cut short.
std::size_t format_stats(char* buf, std::size_t len, stats_format format = stats_format::text) noexcept;

}  // namespace spanmap

// How the statistics are gathered; <spanmap/stats.h> says what they mean.
//
// Two sources feed one builder. `counters` are the allocator's running
// counts: cumulative ones (mallocs, frees, bytes of large objects) that only
// counting can know, and the heap's running totals. A `heap_shape` says where
// the objects and pages are now; it comes either from the counters (cheap:
// read_mem_stats) or from walking every arena, span and thread cache under
// every lock (recompute_mem_stats, the class table, the report). Building
// mem_stats from either shape with the same code is what makes the test that
// compares the two meaningful: they differ only where the shape came from.
#pragma once

#include "cache.h"

#include <spanmap/stats.h>

namespace spanmap::detail {

static_assert(num_size_classes == num_classes, "the public class count is the allocator's");

// Objects per span and the bytes of a span of class c (c >= 1).
constexpr std::uint64_t class_objects_per_span(unsigned c) {
    return std::uint64_t{sc::class_pages[c]} * page_size / sc::class_size[c];
}
constexpr std::uint64_t class_span_bytes(unsigned c) { return std::uint64_t{sc::class_pages[c]} * page_size; }

// The size a thread cache's mapping is rounded to (cache.cpp's new_cache).
inline constexpr std::size_t mcache_mapped_bytes = round_up(sizeof(mcache), os_page_size);

struct counters {
    // Per class; index 0 counts large objects.
    std::uint64_t nmalloc[num_classes];
    std::uint64_t nfree[num_classes];
    std::uint64_t large_bytes_alloc;  // cumulative, whole pages, in-place growth included
    std::uint64_t large_bytes_freed;
    std::uint64_t pages_released;
    std::uint64_t metadata_sys;
    std::uint64_t span_records_mapped;
    std::uint64_t caches_mapped;
    std::uint64_t live_caches;
    std::uint64_t parked_caches;
};

struct heap_shape {
    std::uint64_t arenas;
    std::uint64_t pages_in_use;
    std::uint64_t pages_idle;
    std::uint64_t span_records;       // span records in use
    std::uint64_t spans[num_classes];  // [0]: large objects' spans
    std::uint64_t live[num_classes];   // objects with the program; [0]: large objects
    std::uint64_t cached[num_classes];
    std::uint64_t free[num_classes];  // free in their spans
    std::uint64_t large_bytes;
    // Large spans parked in the large cache: free, so cached, not the program's.
    std::uint64_t parked_spans;
    std::uint64_t parked_bytes;
};

// Lock order, as everywhere in the allocator: every mcentral in class order,
// then mheap, then the cache list.

// Needs the cache list's lock (walks the live caches) and the heap's (span
// records); the caller holds both, or neither and passes take_locks.
void read_counters(counters& k, bool take_locks) noexcept;
// From the counters alone.
void shape_from_counters(const counters& k, heap_shape& h) noexcept;
// Walks every arena page, span and live cache; the caller holds lock_all().
void shape_from_walk(heap_shape& h) noexcept;

void build_mem_stats(const counters& k, const heap_shape& h, mem_stats& m) noexcept;
void build_class_stats(const counters& k, const heap_shape& h, class_stats (&out)[num_classes]) noexcept;

// One walk for both (what the report shows).
void walk_snapshot(counters& k, heap_shape& h) noexcept;

}  // namespace spanmap::detail

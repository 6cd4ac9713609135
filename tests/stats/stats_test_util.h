// Helpers for the statistics tests: the identities every snapshot must meet,
// a field-by-field comparison of two snapshots, and the sizes the allocator's
// internals imply (these tests see alloc/src, as the allocator tests do).
//
// Test suites are named stats_* so that `ctest -R stats` runs them all.
#pragma once

#include "cache.h"
#include "../common/test_common.h"

#include <spanmap/alloc.h>
#include <spanmap/spanmap.h>
#include <spanmap/stats.h>

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace spanmap::test {

namespace sc = spanmap::sc;

inline constexpr std::uint64_t kArena = std::uint64_t{64} << 20;

// The class spanmap::allocate(n, 8) uses: the smallest class that holds n.
inline unsigned class_of(std::size_t n) {
    for (unsigned c = 1; c < spanmap::num_size_classes; ++c)
        if (sc::class_size[c] >= n) return c;
    return 0;
}

inline std::uint64_t objects_per_span(unsigned c) { return std::uint64_t{sc::class_pages[c]} * kPage / sc::class_size[c]; }

// The identities of <spanmap/stats.h>, exact at a quiet point.
inline void expect_identities(const spanmap::mem_stats& m, const char* where) {
    SCOPED_TRACE(where);
    EXPECT_EQ(m.heap_idle + m.heap_inuse, m.heap_sys);
    EXPECT_LE(m.heap_released, m.heap_idle);
    EXPECT_EQ(m.sys, m.heap_sys + m.mspan_sys + m.mcache_sys + m.other_sys);
    // Arenas are reserved a step at a time: all but the newest may be partial.
    EXPECT_EQ(m.heap_sys % kPage, 0u);
    EXPECT_LE(m.heap_sys, m.arenas * kArena);
    EXPECT_EQ(m.heap_alloc, m.alloc);
    EXPECT_EQ(m.mallocs - m.frees, m.heap_objects);
    EXPECT_EQ(m.heap_inuse, m.alloc + m.cached_bytes + m.span_free + m.span_waste);
    EXPECT_LE(m.mspan_inuse, m.mspan_sys);
    EXPECT_LE(m.mcache_inuse, m.mcache_sys);
    EXPECT_GE(m.total_alloc, m.alloc);

    std::uint64_t mallocs = 0, frees = 0, small_bytes = 0, objects = 0;
    for (unsigned c = 0; c < spanmap::num_size_classes; ++c) {
        EXPECT_EQ(m.by_size[c].size, sc::class_size[c]) << "class " << c;
        EXPECT_GE(m.by_size[c].mallocs, m.by_size[c].frees) << "class " << c;
        mallocs += m.by_size[c].mallocs;
        frees += m.by_size[c].frees;
        objects += m.by_size[c].mallocs - m.by_size[c].frees;
        small_bytes += (m.by_size[c].mallocs - m.by_size[c].frees) * m.by_size[c].size;
    }
    EXPECT_EQ(mallocs, m.mallocs);
    EXPECT_EQ(frees, m.frees);
    EXPECT_EQ(objects, m.heap_objects);
    EXPECT_EQ(m.by_size[0].mallocs - m.by_size[0].frees, m.large_objects);
    EXPECT_EQ(small_bytes + m.large_bytes, m.alloc);
}

// Every field, by name, so a mismatch says which.
inline void expect_same_stats(const spanmap::mem_stats& a, const spanmap::mem_stats& b, const char* where) {
    SCOPED_TRACE(where);
#define SPANMAP_TEST_EQ(name) EXPECT_EQ(a.name, b.name) << #name;
    SPANMAP_MEM_STATS_FIELDS(SPANMAP_TEST_EQ)
#undef SPANMAP_TEST_EQ
    for (unsigned c = 0; c < spanmap::num_size_classes; ++c) {
        EXPECT_EQ(a.by_size[c].size, b.by_size[c].size) << "by_size[" << c << "]";
        EXPECT_EQ(a.by_size[c].mallocs, b.by_size[c].mallocs) << "by_size[" << c << "]";
        EXPECT_EQ(a.by_size[c].frees, b.by_size[c].frees) << "by_size[" << c << "]";
    }
}

// The counters and the walk agree, and both meet the identities.
inline void expect_fast_equals_slow(const char* where) {
    const spanmap::mem_stats fast = spanmap::read_mem_stats();
    const spanmap::mem_stats slow = spanmap::recompute_mem_stats();
    expect_identities(fast, where);
    expect_identities(slow, where);
    expect_same_stats(fast, slow, where);
}

}  // namespace spanmap::test

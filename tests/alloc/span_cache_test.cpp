// The heap's empty-span cache (alloc/src/heap.h), seen through the public
// API: 32 KiB objects are a span each, so a batch of them freed and flushed
// leaves empty spans in the cache; the next batch takes those spans back
// whole, a span carved for anything else gives them all back first, and
// release_free_memory empties it. The unit tests of the cache against a
// model are in central_tier_test.cpp.
#include "test_util.h"

#include <spanmap/alloc.h>
#include <spanmap/spanmap.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <vector>

namespace spanmap::test {
namespace {

constexpr std::size_t kObject = 32768;  // the largest small class: one object, four pages a span
constexpr std::size_t kBatch = 256;

class SpanCache : public HeapTest {
protected:
    void SetUp() override { spanmap::release_free_memory(); }
};

debug::heap_info info() { return debug::read_heap_info(); }

// n objects of kObject bytes, each filled with its own pattern.
std::vector<void*> allocate_batch(std::uint64_t seed, std::size_t n = kBatch) {
    std::vector<void*> v;
    v.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        void* p = spanmap_malloc(kObject);
        EXPECT_NE(p, nullptr);
        fill_pattern(p, kObject, seed + i);
        v.push_back(p);
    }
    return v;
}

void free_batch(const std::vector<void*>& v, std::uint64_t seed) {
    for (std::size_t i = 0; i < v.size(); ++i) {
        EXPECT_EQ(check_pattern(v[i], kObject, seed + i), -1) << "object " << i << " changed while it was live";
        spanmap_free(v[i]);
    }
}

TEST_F(SpanCache, FreedSpansServeTheNextBatchWhole) {
    const std::vector<void*> first = allocate_batch(1);
    free_batch(first, 1);
    spanmap_thread_cache_flush();
    const debug::heap_info after_free = info();
    // One spare stays with mcentral; the transfer tier was drained by the flush.
    EXPECT_GE(after_free.cached_spans, kBatch - 1);
    EXPECT_EQ(after_free.cached_span_bytes, after_free.cached_spans * 4 * kPage);
    const std::size_t reserved = after_free.pages_in_use + after_free.pages_free;
    // Built before the second batch: under the preload its nodes come from
    // the allocator, and a span carved for them would empty the cache.
    const std::set<void*> before(first.begin(), first.end());

    // Half as many: a refill may take a few more spans than the batch needs.
    const std::vector<void*> second = allocate_batch(2, kBatch / 2);
    const debug::heap_info after_malloc = info();
    EXPECT_LE(after_malloc.cached_spans, after_free.cached_spans - (kBatch / 2 - 1));
    EXPECT_EQ(after_malloc.pages_in_use + after_malloc.pages_free, reserved) << "the heap grew";
    for (std::size_t i = 0; i < second.size(); ++i)
        EXPECT_EQ(before.count(second[i]), 1u) << "object " << i << " at " << second[i] << " is not one of the freed batch's";
    EXPECT_EQ(std::set<void*>(second.begin(), second.end()).size(), second.size());
    free_batch(second, 2);
}

TEST_F(SpanCache, ACarvedSpanGivesTheCacheBackFirst) {
    const std::vector<void*> batch = allocate_batch(3);
    free_batch(batch, 3);
    spanmap_thread_cache_flush();
    ASSERT_GE(info().cached_spans, kBatch - 1);
    const std::size_t reserved = info().pages_in_use + info().pages_free;
    // A large object the large cache does not hold (SetUp emptied it): a
    // span carved from the free pages, placed as if nothing were cached.
    constexpr std::size_t kLarge = 3 << 20;
    void* big = spanmap_malloc(kLarge);
    ASSERT_NE(big, nullptr);
    EXPECT_EQ(info().cached_spans, 0u);
    EXPECT_EQ(info().cached_span_bytes, 0u);
    EXPECT_EQ(info().pages_in_use + info().pages_free, reserved) << "the heap grew while the cached spans' pages were enough";
    // The lowest-addressed fit: below the freed batch's highest span.
    EXPECT_LT(addr(big), addr(*std::max_element(batch.begin(), batch.end())));
    spanmap_free(big);
}

TEST_F(SpanCache, ReleaseFreeMemoryEmptiesIt) {
    const std::vector<void*> batch = allocate_batch(4);
    free_batch(batch, 4);
    spanmap_thread_cache_flush();
    ASSERT_GE(info().cached_spans, kBatch - 1);
    spanmap::release_free_memory();
    EXPECT_EQ(info().cached_spans, 0u);
    EXPECT_EQ(info().cached_span_bytes, 0u);
}

}  // namespace
}  // namespace spanmap::test

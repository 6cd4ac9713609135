// The large cache (alloc/src/large.h): freed large spans kept whole for the
// next request of their page count, cut to size for a smaller one, within its
// bounds, and given back to the heap when a miss could use their pages or a
// release asks for them.
#include "test_util.h"

#include <spanmap/alloc.h>
#include <spanmap/spanmap.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

namespace spanmap::test {
namespace {

constexpr std::size_t MiB = std::size_t{1} << 20;
constexpr std::size_t kMaxCachedBytes = 4 * MiB;     // large_cache::max_pages
constexpr std::size_t kCacheBound = 32 * MiB;        // large_cache::max_bytes
constexpr std::size_t kSlotsBound = 4 * MiB;         // thread_large_slots::max_pages

class LargeCache : public HeapTest {
protected:
    void SetUp() override { spanmap::release_free_memory(); }
};

debug::heap_info info() { return debug::read_heap_info(); }

TEST_F(LargeCache, AFreedSpanServesTheNextRequestOfItsPageCount) {
    void* p = spanmap_malloc(300000);
    fill_pattern(p, 300000, 1);
    spanmap_free(p);
    EXPECT_EQ(info().large_cached_objects, 1u);
    EXPECT_EQ(info().large_cached_bytes, round_up(300000, kPage));
    // Same page count, another byte count: the same span.
    void* q = spanmap_malloc(round_up(300000, kPage) - 5);
    EXPECT_EQ(q, p);
    EXPECT_EQ(info().large_cached_objects, 0u);
    spanmap_free(q);
    // calloc of a parked span reads as zero: it held the program's data.
    void* z = spanmap_calloc(1, 300000);
    EXPECT_EQ(z, p);
    EXPECT_EQ(first_nonzero(z, 300000), -1);
    spanmap_free(z);
}

TEST_F(LargeCache, SpansAboveItsSizeAndBeyondItsBoundGoStraightBack) {
    void* big = spanmap_malloc(kMaxCachedBytes + kPage);
    spanmap_free(big);
    EXPECT_EQ(info().large_cached_objects, 0u);
    std::vector<void*> blocks;
    for (int i = 0; i < 12; ++i) blocks.push_back(spanmap_malloc(kMaxCachedBytes));
    for (void* p : blocks) spanmap_free(p);
    // The thread's slots keep one, the central cache the next eight.
    EXPECT_EQ(info().large_cached_bytes, kSlotsBound + kCacheBound);
    EXPECT_EQ(info().large_cached_objects, 1 + kCacheBound / kMaxCachedBytes);
}

// No parked span of the page count asked for: the smallest one larger serves
// it, cut to size — the thread's own slots first, then the central cache —
// and the pages past the block go back to the heap, free.
TEST_F(LargeCache, ASmallerRequestIsCutFromTheSmallestSpanThatFits) {
    const auto start = info();
    auto* big = static_cast<char*>(spanmap_malloc(2 * MiB));
    auto* mid = static_cast<char*>(spanmap_malloc(MiB));
    fill_pattern(big, 2 * MiB, 1);
    fill_pattern(mid, MiB, 2);
    spanmap_free(big);
    spanmap_free(mid);
    ASSERT_EQ(info().large_cached_objects, 2u);
    // 700 KiB: the 1 MiB span, not the 2 MiB one, cut to 88 pages.
    constexpr std::size_t kCut = 700 * 1024;
    auto* p = static_cast<char*>(spanmap_calloc(1, kCut));
    EXPECT_EQ(p, mid);
    EXPECT_EQ(first_nonzero(p, kCut), -1);
    EXPECT_EQ(spanmap_usable_size(p), round_up(kCut, kPage));
    EXPECT_EQ(info().large_cached_objects, 1u);
    EXPECT_EQ(info().large_cached_bytes, 2 * MiB);
    EXPECT_EQ(info().pages_in_use, start.pages_in_use + (2 * MiB + round_up(kCut, kPage)) / kPage);
    EXPECT_TRUE(invariants_hold());
    // The cut-off pages are free: the block grows back over them in place.
    fill_pattern(p, kCut, 3);
    auto* grown = static_cast<char*>(spanmap_realloc(p, MiB));
    EXPECT_EQ(grown, p);
    EXPECT_EQ(check_pattern(grown, kCut, 3), -1);
    spanmap_free(grown);

    // A 4 MiB span fills the slots; the next free pushes it out to the
    // central cache, which then serves a 3 MiB request from it.
    spanmap::release_free_memory();
    auto* four = static_cast<char*>(spanmap_malloc(kMaxCachedBytes));
    auto* two = static_cast<char*>(spanmap_malloc(2 * MiB));
    spanmap_free(four);
    spanmap_free(two);
    ASSERT_EQ(info().large_cached_objects, 2u);
    auto* q = static_cast<char*>(spanmap_malloc(3 * MiB));
    EXPECT_EQ(q, four);
    EXPECT_EQ(spanmap_usable_size(q), 3 * MiB);
    EXPECT_EQ(info().large_cached_bytes, 2 * MiB);
    EXPECT_TRUE(invariants_hold());
    spanmap_free(q);
}

TEST_F(LargeCache, AMissGivesParkedPagesBackBeforeTheHeapGrows) {
    std::vector<void*> blocks;
    for (int i = 0; i < 16; ++i) blocks.push_back(spanmap_malloc(MiB));
    for (void* p : blocks) spanmap_free(p);
    const auto before = info();
    ASSERT_EQ(before.large_cached_bytes, 16 * MiB);
    // 8 MiB, a size nothing parked has: the 16 parked spans are contiguous,
    // go back and coalesce, and the request is served from their pages.
    void* p = spanmap_malloc(8 * MiB);
    const auto after = info();
    EXPECT_EQ(after.large_cached_objects, 0u);
    EXPECT_EQ(after.arenas, before.arenas);
    EXPECT_EQ(after.pages_in_use, before.pages_in_use - 8 * MiB / kPage);
    spanmap_free(p);
}

TEST_F(LargeCache, AnAlignedRequestGoesToTheHeapWithTheParkedPages) {
    void* p = spanmap_malloc(64 * kPage);
    spanmap_free(p);
    ASSERT_EQ(info().large_cached_objects, 1u);
    // The cache cannot promise an alignment, so the request is a miss; the
    // parked span could serve it, so it goes back to the heap first, which
    // then places the block where the alignment allows.
    void* a = spanmap::allocate(64 * kPage, 16 * kPage);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a) % (16 * kPage), 0u);
    EXPECT_EQ(info().large_cached_objects, 0u);
    spanmap::deallocate(a);
}

// Random sizes across the cache's bound, random frees, contents checked: no
// span is handed out twice, and the heap's walk agrees after each round.
TEST_F(LargeCache, RandomLargeTrafficKeepsEveryBlockItsOwn) {
    std::mt19937_64 rng(7);
    struct live { void* p; std::size_t n; std::uint64_t seed; };
    std::vector<live> blocks;
    const std::size_t rounds = scaled(40, 8);
    std::uint64_t seed = 100;
    for (std::size_t r = 0; r < rounds; ++r) {
        for (int op = 0; op < 50; ++op) {
            if (blocks.empty() || rng() % 3 != 0) {
                // Mostly a few page counts (reuse), sometimes any, sometimes above the bound.
                const std::size_t pick = rng() % 10;
                const std::size_t n = pick < 6   ? (std::size_t{1} << (15 + rng() % 6)) + 1
                                      : pick < 9 ? sc::max_small_size + 1 + rng() % (3 * MiB)
                                                 : kMaxCachedBytes + 1 + rng() % MiB;
                void* p = spanmap_malloc(n);
                ASSERT_NE(p, nullptr);
                for (const live& b : blocks) ASSERT_NE(b.p, p);
                fill_pattern(p, n < 4096 ? n : 4096, seed);
                blocks.push_back({p, n, seed++});
            } else {
                const std::size_t i = rng() % blocks.size();
                ASSERT_EQ(check_pattern(blocks[i].p, blocks[i].n < 4096 ? blocks[i].n : 4096, blocks[i].seed), -1);
                spanmap_free(blocks[i].p);
                blocks[i] = blocks.back();
                blocks.pop_back();
            }
        }
        const auto hi = info();
        ASSERT_EQ(hi.large_objects, blocks.size());
        ASSERT_LE(hi.large_cached_bytes, kSlotsBound + kCacheBound);
        ASSERT_TRUE(invariants_hold());
    }
    for (const live& b : blocks) spanmap_free(b.p);
    spanmap::release_free_memory();
    EXPECT_EQ(info().large_cached_objects, 0u);
    EXPECT_EQ(info().large_objects, 0u);
}

// Threads that each keep a few large blocks of random sizes and replace one
// at a time — the traffic that cuts parked spans to size — while every
// eighth block goes to the next thread, which frees it into its own slots.
// Each block carries its size, seed and pattern at both ends: a span cut
// while another block still used its pages, or handed to two threads, breaks
// one of them.
TEST_F(LargeCache, ThreadsCuttingParkedSpansKeepEveryBlockTheirOwn) {
    constexpr unsigned kThreads = 4;
    constexpr std::size_t kWindow = 8;
    constexpr std::size_t kEdge = 4096;
    const std::size_t steps = scaled(3000, 400);
    std::atomic<void*> handoff[kThreads] = {};
    std::atomic<unsigned> bad{0};
    // [size, seed] then the pattern at both ends.
    auto make = [](rng& r, std::uint64_t seed) -> void* {
        const std::size_t size = (std::size_t{32} << 10) << r.below(8) | r.below(std::size_t{1} << 15) << 3;
        auto* p = static_cast<std::uint64_t*>(spanmap_malloc(size));
        if (p == nullptr) return nullptr;
        p[0] = size;
        p[1] = seed;
        fill_pattern(p + 2, kEdge, seed);
        fill_pattern(reinterpret_cast<char*>(p) + size - kEdge, kEdge, ~seed);
        return p;
    };
    auto check_and_free = [&bad](void* v) {
        if (v == nullptr) return;
        auto* p = static_cast<std::uint64_t*>(v);
        const std::size_t size = p[0];
        const std::uint64_t seed = p[1];
        if (check_pattern(p + 2, kEdge, seed) != -1 ||
            check_pattern(reinterpret_cast<char*>(p) + size - kEdge, kEdge, ~seed) != -1)
            ++bad;
        spanmap_free(v);
    };
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < kThreads; ++t) {
        pool.emplace_back([&, t] {
            rng r(0x1a7e0000 + t);
            std::uint64_t seed = std::uint64_t{t} << 40;
            void* window[kWindow];
            for (void*& p : window) p = make(r, ++seed);
            for (std::size_t step = 0; step < steps; ++step) {
                void*& slot = window[r.below(kWindow)];
                if (r.below(8) == 0)
                    check_and_free(handoff[(t + 1) % kThreads].exchange(slot, std::memory_order_acq_rel));
                else
                    check_and_free(slot);
                slot = make(r, ++seed);
                if (slot == nullptr) ++bad;
            }
            for (void* p : window) check_and_free(p);
        });
    }
    for (std::thread& th : pool) th.join();
    for (auto& h : handoff) check_and_free(h.exchange(nullptr));
    EXPECT_EQ(bad.load(), 0u);
    EXPECT_EQ(info().large_objects, 0u);
    EXPECT_TRUE(invariants_hold());
}

}  // namespace
}  // namespace spanmap::test

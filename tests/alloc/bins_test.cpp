// The thread cache's bins size themselves (cache.h): a bin whose working set
// does not fit grows until it does, an idle grown bin shrinks back, and the
// caps of one thread never add up to more than thread_cache_bytes. Each test
// runs in a thread of its own, so that it starts from a cache at its start
// caps, and reads that thread's bins directly.
#include "cache.h"
#include "test_util.h"

#include <algorithm>
#include <set>
#include <thread>
#include <vector>

namespace {

using namespace spanmap::test;
namespace d = spanmap::detail;

template <class F>
void in_new_thread(F f) {
    std::thread(f).join();
}

d::mcache* own_cache() {
    return d::thread_cache();
}

std::uint32_t cap_of(unsigned c) { return own_cache()->bins[c].cap.load(std::memory_order_relaxed); }
std::uint32_t count_of(unsigned c) { return own_cache()->bins[c].count.load(std::memory_order_relaxed); }

// The caps add up to the record of them, within the bound; every count fits.
::testing::AssertionResult sizing_holds() {
    const d::mcache* mc = own_cache();
    std::size_t caps = 0, held = 0;
    for (unsigned c = 1; c < d::num_classes; ++c) {
        const std::uint32_t cap = mc->bins[c].cap.load(std::memory_order_relaxed);
        const std::uint32_t n = mc->bins[c].count.load(std::memory_order_relaxed);
        if (cap < d::bin_start_cap(c) || cap > d::bin_max_cap(c))
            return ::testing::AssertionFailure() << "class " << c << " cap " << cap;
        if (n > cap) return ::testing::AssertionFailure() << "class " << c << " holds " << n << " > cap " << cap;
        caps += std::size_t{cap} * sc::class_size[c];
        held += std::size_t{n} * sc::class_size[c];
    }
    if (caps != mc->sizing.cap_bytes)
        return ::testing::AssertionFailure() << "caps add up to " << caps << ", recorded " << mc->sizing.cap_bytes;
    if (caps > d::thread_cache_bytes) return ::testing::AssertionFailure() << "caps " << caps << " over the bound";
    if (held > d::max_cached_bytes()) return ::testing::AssertionFailure() << "holds " << held << " bytes";
    return ::testing::AssertionSuccess();
}

// Mallocs n objects of `size` and frees them, newest first.
void batch_cycle(std::size_t size, std::size_t n) {
    std::vector<void*> objs(n);
    for (void*& p : objs) {
        p = spanmap_malloc(size);
        ASSERT_NE(p, nullptr);
    }
    for (std::size_t i = n; i-- > 0;) spanmap_free(objs[i]);
}

class Bins : public HeapTest {};

TEST_F(Bins, ABatchOf1000GrowsItsBinUntilItCyclesThroughItAlone) {
    for (const std::size_t size : {16, 256, 1024}) {
        in_new_thread([size] {
            batch_cycle(size, 1);
            const unsigned c = d::size_class_malloc(size);
            ASSERT_EQ(cap_of(c), d::bin_start_cap(c));
            for (int i = 0; i < 3; ++i) batch_cycle(size, 1000);
            EXPECT_GE(cap_of(c), 1000u) << size;
            EXPECT_TRUE(sizing_holds());
            // Warm: a whole cycle neither refills nor flushes.
            const std::uint64_t moved = own_cache()->moved_in[c].load(std::memory_order_relaxed);
            batch_cycle(size, 1000);
            EXPECT_EQ(own_cache()->moved_in[c].load(std::memory_order_relaxed), moved) << size;
        });
    }
}

// Fresh objects enter a bin a page's worth first, then twice as many per
// refill up to a move (cache.h, bin_first_fill): a thread that allocates one
// object of a class writes the free mark into a page of them, not a move.
TEST_F(Bins, RefillsFromMcentralRampUpFromAPageOfObjects) {
    for (const std::size_t size : {8, 96, 1024, 4096, 32768}) {
        in_new_thread([size] {
            const unsigned c = d::size_class_malloc(size);
            const std::uint32_t move = d::bin_move(c, d::bin_start_cap(c));
            ASSERT_EQ(d::bin_first_fill(c), std::clamp<std::uint32_t>(4096 / sc::class_size[c], 1, move)) << size;
            // Batches parked by earlier tests would come whole.
            d::drain_transfer();
            std::vector<void*> kept;
            std::uint32_t expect = d::bin_first_fill(c);
            for (int refill = 0; refill < 8; ++refill) {
                kept.push_back(spanmap_malloc(size));
                ASSERT_NE(kept.back(), nullptr);
                EXPECT_EQ(count_of(c), expect - 1) << size << " B, refill " << refill;
                while (count_of(c) != 0) kept.push_back(spanmap_malloc(size));
                expect = std::min(2 * expect, move);
            }
            for (void* p : kept) spanmap_free(p);
        });
    }
}

// 32 KiB objects (a span each) freed in order and allocated again come back
// in steps to the adjacent block: the heap hands its most recently cached
// spans out first, and the bin pops them in that order (heap.cpp,
// alloc_spans). The other way round, half the steps were jumps.
TEST_F(Bins, CachedSpansComeBackInTheOrderTheyWereFreed) {
    in_new_thread([] {
        constexpr std::size_t size = 32768;
        constexpr std::size_t n = 400;
        std::vector<void*> objs(n);
        std::size_t adjacent = 0;
        for (int round = 0; round < 3; ++round) {
            for (std::size_t i = 0; i < n; ++i) {
                objs[i] = spanmap_malloc(size);
                ASSERT_NE(objs[i], nullptr);
                if (round == 2 && i > 0) {
                    const auto step = reinterpret_cast<std::intptr_t>(objs[i]) - reinterpret_cast<std::intptr_t>(objs[i - 1]);
                    adjacent += step == std::intptr_t{size} || step == -std::intptr_t{size};
                }
            }
            for (void* p : objs) spanmap_free(p);
        }
        EXPECT_GE(adjacent, (n - 1) * 8 / 10) << "of " << n - 1 << " steps";
    });
}

TEST_F(Bins, ABinThatOnlyOverflowsKeepsItsCap) {
    // Objects allocated by one thread, freed by another: the freeing thread's
    // bin never runs dry, so it passes batches on instead of hoarding.
    std::vector<void*> objs(5000);
    for (void*& p : objs) p = spanmap_malloc(64);
    in_new_thread([&objs] {
        for (void* p : objs) spanmap_free(p);
        const unsigned c = d::size_class_malloc(64);
        EXPECT_EQ(cap_of(c), d::bin_start_cap(c));
        EXPECT_LE(count_of(c), d::bin_start_cap(c));
    });
}

TEST_F(Bins, AnIdleGrownBinShrinksBack) {
    in_new_thread([] {
        const unsigned grown = d::size_class_malloc(256);
        for (int i = 0; i < 3; ++i) batch_cycle(256, 1000);
        const std::uint32_t big = cap_of(grown);
        ASSERT_GT(big, d::bin_start_cap(grown));
        // Slow-path events in another class only (every refill of a class
        // allocated and not freed is one), two looks' worth.
        const unsigned other = d::size_class_malloc(32);
        std::vector<void*> kept(3 * d::sizing_period * d::bin_batch(other));
        for (void*& p : kept) p = spanmap_malloc(32);
        EXPECT_LT(cap_of(grown), big);
        EXPECT_TRUE(sizing_holds());
        for (void* p : kept) spanmap_free(p);
    });
}

TEST_F(Bins, GrowingPastTheBoundTakesFromOtherBins) {
    in_new_thread([] {
        // Each of these grows to about 1 MiB: together more than the bound
        // leaves above the start caps.
        const std::size_t sizes[] = {1024, 2048, 4096, 8192, 1024, 2048};
        batch_cycle(16, 1);  // the cache exists from here on
        bool took = false;
        for (const std::size_t size : sizes) {
            std::uint32_t before[d::num_classes];
            for (unsigned c = 1; c < d::num_classes; ++c) before[c] = cap_of(c);
            for (int i = 0; i < 3; ++i) batch_cycle(size, 1100);
            ASSERT_TRUE(sizing_holds()) << size;
            for (unsigned c = 1; c < d::num_classes; ++c)
                if (c != d::size_class_malloc(size) && cap_of(c) < before[c]) took = true;
        }
        EXPECT_TRUE(took);
    });
}

// Random mallocs and frees of many sizes against a model of the live set:
// every malloc returns an object not live already, every object reads back
// its pattern, and after every step the caps stay within the bound.
TEST_F(Bins, RandomTrafficAgainstAModel) {
    in_new_thread([] {
        rng r(0xb1b5);
        struct live {
            void* p;
            std::size_t n;
            std::uint64_t seed;
        };
        std::vector<live> model;
        std::set<void*> addresses;
        for (int step = 0; step < 200000; ++step) {
            // Phases that favour mallocs, then frees, so bins both run dry and overflow.
            const bool grow = (step / 5000) % 2 == 0 ? r.chance(70) : r.chance(30);
            if (grow || model.empty()) {
                const std::size_t n = r.chance(80) ? r.between(1, 1024) : r.between(1025, kMaxSmall);
                void* p = spanmap_malloc(n);
                ASSERT_NE(p, nullptr);
                ASSERT_TRUE(addresses.insert(p).second) << "step " << step << ": " << p << " handed out twice";
                fill_pattern(p, n, static_cast<std::uint64_t>(step));
                model.push_back({p, n, static_cast<std::uint64_t>(step)});
            } else {
                const std::size_t k = r.below(model.size());
                const live l = model[k];
                ASSERT_LT(check_pattern(l.p, l.n, l.seed), 0) << "step " << step;
                addresses.erase(l.p);
                model[k] = model.back();
                model.pop_back();
                spanmap_free(l.p);
            }
            if (step % 64 == 0) {
                ASSERT_TRUE(sizing_holds()) << "step " << step;
            }
        }
        for (const live& l : model) {
            ASSERT_LT(check_pattern(l.p, l.n, l.seed), 0);
            spanmap_free(l.p);
        }
        ASSERT_TRUE(sizing_holds());
        ASSERT_TRUE(invariants_hold());
    });
}

}  // namespace

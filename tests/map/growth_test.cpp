// Growth as Go does it, seen from outside: exact bucket counts, the
// incremental evacuation through stats(), the old array's memory handed back,
// same-size growth under churn, shrink_to_fit(), and what iterators may do
// in the middle of a growth.

#include "map_test_util.h"

#include <spanmap/map.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

using spanmap_test::ledger;
using u64 = std::uint64_t;
using tracked_map = spanmap::map<u64, u64, spanmap::hash<u64>, std::equal_to<u64>,
                                 spanmap_test::tracking_allocator<std::pair<const u64, u64>>>;

// The bucket count the issue states for n inserts into an empty map: the
// smallest 2^B with n <= 8 (B = 0) or n <= 13 * 2^(B-1). Written out
// independently of the map's own arithmetic.
std::size_t expected_buckets(std::size_t n) {
    if (n <= 8) return 1;
    std::size_t B = 1;
    while (n > 13 * (std::size_t{1} << (B - 1))) ++B;
    return std::size_t{1} << B;
}

// Bytes the map says it holds, which must equal what its allocator handed out
// (a tracking allocator does not round).
std::size_t claimed(const tracked_map& m) {
    const auto s = m.stats();
    return s.bucket_array_bytes + s.overflow_bytes;
}

void fill(tracked_map& m, u64 from, u64 to) {
    for (u64 k = from; k < to; ++k) m[k] = k * 3;
}

void expect_contents(const tracked_map& m, u64 from, u64 to) {
    ASSERT_EQ(m.size(), to - from);
    for (u64 k = from; k < to; ++k) {
        auto it = m.find(k);
        ASSERT_TRUE(it != m.end()) << k;
        ASSERT_EQ(it->second, k * 3) << k;
    }
}

TEST(Growth, BucketCountAfterEveryInsert) {
    spanmap::map<u64, int> m;
    EXPECT_EQ(m.bucket_count(), 1u);
    const std::size_t n = spanmap_test::scaled(200000, 20000);
    for (std::size_t i = 1; i <= n; ++i) {
        m[i * 0x9e3779b97f4a7c15ULL] = 1;
        ASSERT_EQ(m.bucket_count(), expected_buckets(i)) << "after " << i << " inserts";
    }
}

TEST(Growth, ThirteenAndFourteenTellLoadFactorSixPointFive) {
    // 13 entries fit 2 buckets at 6.5 (but not at 6.0); the 14th doubles.
    for (std::size_t n : {8u, 9u, 13u, 14u, 26u, 27u, 52u, 53u}) {
        spanmap::map<int, int> m;
        for (int i = 0; i < static_cast<int>(n); ++i) m[i] = i;
        EXPECT_EQ(m.bucket_count(), expected_buckets(n)) << n;
    }
    EXPECT_EQ(expected_buckets(13), 2u);
    EXPECT_EQ(expected_buckets(14), 4u);
    EXPECT_EQ(expected_buckets(8), 1u);
    EXPECT_EQ(expected_buckets(9), 2u);
}

TEST(Growth, ReserveIsMakeWithHint) {
    for (std::size_t n : {0u, 1u, 8u, 9u, 13u, 14u, 100u, 1000u, 6656u, 6657u, 100000u}) {
        ledger l;
        tracked_map m{spanmap_test::tracking_allocator<std::pair<const u64, u64>>(&l)};
        m.reserve(n);
        EXPECT_EQ(m.bucket_count(), expected_buckets(n)) << n;
        for (u64 k = 0; k < n; ++k) {
            m[k] = k;
            ASSERT_EQ(m.bucket_count(), expected_buckets(n)) << "a reserved map grew at " << k;
        }
        EXPECT_FALSE(m.stats().growing);
        EXPECT_EQ(l.bytes, claimed(m));
    }
    // The constructor's size argument is the same hint.
    spanmap::map<int, int> hinted(1000);
    EXPECT_EQ(hinted.bucket_count(), expected_buckets(1000));
}

TEST(Growth, PreallocatedOverflowBucketsFromBFour) {
    ledger l;
    tracked_map m{spanmap_test::tracking_allocator<std::pair<const u64, u64>>(&l)};
    m.reserve(13 * 8);  // B = 4: 16 buckets and 2^(4-4) = 1 preallocated overflow bucket
    auto s = m.stats();
    EXPECT_EQ(s.B, 4);
    EXPECT_EQ(s.overflow_preallocated_left, 1u);
    EXPECT_EQ(s.bucket_array_bytes, 17 * s.bucket_bytes);
    m.reserve(13 * 512);  // B = 10 on an empty map: 1024 + 64
    s = m.stats();
    EXPECT_EQ(s.B, 10);
    EXPECT_EQ(s.overflow_preallocated_left, 64u);
    EXPECT_EQ(s.bucket_array_bytes, (1024 + 64) * s.bucket_bytes);
    EXPECT_EQ(s.bucket_bytes, 8 + 8 * 16 + 8u) << "tophash[8], 8 pairs of two words, overflow pointer";
}

TEST(Growth, ArenaArrayIsRoundedToWhatTheAllocatorHandsOut) {
    spanmap::map<u64, u64> m;
    m.reserve(13 * 512);
    const auto s = m.stats();
    const std::size_t requested = (1024 + 64) * s.bucket_bytes;
    EXPECT_EQ(s.bucket_array_bytes, spanmap::good_size(requested, 8)) << "array bytes as the arena rounds them";
    EXPECT_EQ(s.overflow_preallocated_left,
              spanmap::good_size(requested, 8) / s.bucket_bytes - 1024);
}

TEST(Growth, IncrementalEvacuationSeenThroughStats) {
    ledger l;
    tracked_map m{spanmap_test::tracking_allocator<std::pair<const u64, u64>>(&l)};
    const u64 full = 13 * 512;  // the most that 2^10 buckets hold
    fill(m, 0, full);
    auto s = m.stats();
    ASSERT_EQ(s.B, 10);
    ASSERT_FALSE(s.growing);
    EXPECT_EQ(l.bytes, claimed(m));
    const std::size_t bytes_before = l.bytes;

    m[full] = full * 3;  // count+1 > 6.5 * 2^10: doubling starts with this insert
    s = m.stats();
    ASSERT_TRUE(s.growing);
    EXPECT_FALSE(s.same_size_growth);
    EXPECT_EQ(s.B, 11);
    EXPECT_EQ(s.old_B, 10);
    EXPECT_EQ(s.old_bucket_count, 1024u);
    constexpr std::size_t per_write = 1 + spanmap::detail::evacuations_per_write;  // the key's, then in order
    EXPECT_GE(s.old_buckets_evacuated, per_write - 1) << "the write that starts a growth does its evacuation work";
    EXPECT_LE(s.old_buckets_evacuated, per_write);
    EXPECT_NE(s.old_buckets.begin, 0u);
    EXPECT_EQ(l.bytes, claimed(m));
    EXPECT_GT(l.bytes, bytes_before);
    const std::size_t old_array_bytes = s.old_buckets.end - s.old_buckets.begin;

    // Lookups and iteration never evacuate.
    const std::size_t evacuated = s.old_buckets_evacuated;
    for (u64 k = 0; k <= full; ++k) ASSERT_EQ(m.at(k), k * 3);
    for (const auto& [k, v] : m) ASSERT_EQ(v, k * 3);
    EXPECT_EQ(m.stats().old_buckets_evacuated, evacuated);
    char why[256];
    ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why;

    // Each write evacuates at most per_write old buckets and, while the
    // growth lasts, at least evacuations_per_write of them (those in order;
    // the key's may be done already), so the growth ends within
    // 2^oldB / evacuations_per_write writes.
    u64 next = full + 1;
    std::size_t writes = 0;
    while (m.stats().growing) {
        const std::size_t before = m.stats().old_buckets_evacuated;
        m[next] = next * 3;
        ++next;
        ++writes;
        const auto now = m.stats();
        if (now.growing) {
            ASSERT_LE(now.old_buckets_evacuated - before, per_write);
            ASSERT_GE(now.old_buckets_evacuated - before, per_write - 1);
        }
        ASSERT_LE(writes, 1024u / spanmap::detail::evacuations_per_write);
        ASSERT_EQ(l.bytes, claimed(m));
    }
    s = m.stats();
    EXPECT_EQ(s.old_bucket_count, 0u);
    EXPECT_EQ(s.old_buckets.begin, 0u);
    EXPECT_EQ(l.bytes, claimed(m)) << "the old array went back to the allocator";
    EXPECT_EQ(s.bucket_array_bytes, (2048 + 128) * s.bucket_bytes) << "only the new array is left";
    EXPECT_EQ(old_array_bytes, (1024 + 64) * s.bucket_bytes);
    ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why;
    expect_contents(m, 0, next);
}

TEST(Growth, EraseByKeyEvacuatesEraseByIteratorDoesNot) {
    ledger l;
    tracked_map m{spanmap_test::tracking_allocator<std::pair<const u64, u64>>(&l)};
    fill(m, 0, 13 * 64 + 1);  // just started doubling from B = 7
    ASSERT_TRUE(m.stats().growing);
    const std::size_t evacuated = m.stats().old_buckets_evacuated;
    for (u64 k = 0; k < 100; k += 2) m.erase(m.find(k));
    EXPECT_EQ(m.stats().old_buckets_evacuated, evacuated);
    m.erase(u64{1});
    EXPECT_GT(m.stats().old_buckets_evacuated, evacuated);
    char why[256];
    ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why;
}

TEST(Growth, SameSizeGrowthUnderChurn) {
    // A constant-size map under insert/erase churn: erased slots leave holes
    // that inserts into other buckets cannot use, chains grow overflow
    // buckets, and once there are about as many overflow buckets as buckets
    // a same-size growth packs them again. B never changes.
    ledger l;
    tracked_map m{spanmap_test::tracking_allocator<std::pair<const u64, u64>>(&l)};
    std::mt19937_64 rng(42);
    std::deque<u64> keys;
    const std::size_t size = 13 * 8 - 4;  // B = 4, nearly full
    while (keys.size() < size) {
        const u64 k = rng();
        if (m.try_emplace(k, k * 3).second) keys.push_back(k);
    }
    const auto B = m.stats().B;
    ASSERT_EQ(B, 4);
    int same_size = 0;
    bool was_growing = false;
    std::size_t max_overflow = 0;
    char why[256];
    for (int op = 0; op < 200000 && same_size < 3; ++op) {
        m.erase(keys.front());
        keys.pop_front();
        u64 k;
        do k = rng();
        while (!m.try_emplace(k, k * 3).second);
        keys.push_back(k);
        const auto s = m.stats();
        ASSERT_EQ(s.B, B) << "churn at constant size must not double";
        max_overflow = std::max(max_overflow, s.overflow_buckets);
        if (s.growing && !was_growing) {
            EXPECT_TRUE(s.same_size_growth);
            ++same_size;
        }
        was_growing = s.growing;
        ASSERT_EQ(l.bytes, claimed(m));
        if (op % 1000 == 0) {
            ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why;
        }
    }
    EXPECT_GE(same_size, 3);
    EXPECT_GE(max_overflow, 16u) << "same-size growth starts at noverflow >= 2^B";
    ASSERT_EQ(m.size(), keys.size());
    for (u64 k : keys) ASSERT_EQ(m.at(k), k * 3);
}

TEST(Growth, ShrinkToFitHandsMemoryBack) {
    ledger l;
    tracked_map m{spanmap_test::tracking_allocator<std::pair<const u64, u64>>(&l)};
    const u64 n = spanmap_test::scaled(100000, 20000);
    fill(m, 0, n);
    for (u64 k = 100; k < n; ++k) m.erase(k);
    for (u64 i = 0; i < n; ++i) m.erase(n + 1);  // finish any growth (writes)
    ASSERT_FALSE(m.stats().growing);
    const std::size_t big = l.bytes;
    const auto before = m.stats();
    EXPECT_GT(before.B, 10);

    m.shrink_to_fit();
    auto s = m.stats();
    ASSERT_TRUE(s.growing);
    EXPECT_TRUE(s.shrinking);
    EXPECT_EQ(s.B, 4) << "smallest B for 100 entries";
    EXPECT_EQ(s.old_B, before.B);
    expect_contents(m, 0, 100);
    char why[256];
    ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why;
    // Iteration mid-shrink sees every entry once.
    std::set<u64> seen;
    for (const auto& [k, v] : m) ASSERT_TRUE(seen.insert(k).second);
    EXPECT_EQ(seen.size(), 100u);

    // Writes finish the shrink (at most 2^oldB of them); then the big array is gone.
    for (std::size_t writes = 0; writes < before.bucket_count; writes += 2) {
        m[n + 7] = 1;
        m.erase(n + 7);
    }
    ASSERT_FALSE(m.stats().growing);
    ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why;
    expect_contents(m, 0, 100);
    EXPECT_EQ(l.bytes, claimed(m));
    EXPECT_LT(l.bytes * 50, big);
    EXPECT_EQ(m.bucket_count(), 16u);

    // An empty map gives everything back at once.
    m.clear();
    m.shrink_to_fit();
    EXPECT_EQ(l.bytes, 0u);
    EXPECT_EQ(m.stats().bucket_array_bytes, 0u);
    m[1] = 3;  // and is usable again
    EXPECT_EQ(m.at(1), 3u);
}

TEST(Growth, ShrinkToFitOnArena) {
    spanmap::map<u64, u64> m;
    const u64 n = spanmap_test::scaled(200000, 20000);
    for (u64 k = 0; k < n; ++k) m[k] = k;
    for (u64 k = 10; k < n; ++k) m.erase(k);
    const auto big = m.stats().bucket_array_bytes;
    const auto old_count = m.bucket_count();
    m.shrink_to_fit();
    EXPECT_TRUE(m.stats().shrinking);
    for (std::size_t i = 0; i < old_count; ++i) m.erase(n + 1);
    EXPECT_FALSE(m.stats().growing);
    EXPECT_LT(m.stats().bucket_array_bytes * 100, big);
    EXPECT_EQ(m.size(), 10u);
}

TEST(Growth, ReserveOnNonEmptyMapMoreThanDoubling) {
    ledger l;
    tracked_map m{spanmap_test::tracking_allocator<std::pair<const u64, u64>>(&l)};
    fill(m, 0, 50);
    m.reserve(100000);  // B 3 -> 14: an eager (cleared) array, entries spread over 2^11 ways
    auto s = m.stats();
    EXPECT_TRUE(s.growing);
    EXPECT_EQ(s.B, 14);
    expect_contents(m, 0, 50);
    char why[256];
    ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why;
    std::size_t count = 0;
    for (const auto& kv : m) count += kv.first < 50;
    EXPECT_EQ(count, 50u);
    fill(m, 50, 100000);
    EXPECT_EQ(m.bucket_count(), expected_buckets(100000));
    ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why;
    expect_contents(m, 0, 100000);
    EXPECT_EQ(l.bytes, claimed(m));
}

// A map caught in the middle of a doubling: it held n_old_full entries (a
// full array), one more insert started the doubling, `extra` writes followed.
void fill_to_mid_growth(tracked_map& m, u64 n_old_full, u64 extra) {
    fill(m, 0, n_old_full + 1 + extra);
    ASSERT_TRUE(m.stats().growing);
}

TEST(Growth, IterationInTheMiddleOfGrowth) {
    ledger l;
    tracked_map m{spanmap_test::tracking_allocator<std::pair<const u64, u64>>(&l)};
    const u64 n = 13 * 256 + 1 + 50;
    fill_to_mid_growth(m, 13 * 256, 50);
    const auto s = m.stats();
    ASSERT_GT(s.old_buckets_evacuated, 0u);
    ASSERT_LT(s.old_buckets_evacuated, s.old_bucket_count);
    std::vector<int> seen(n, 0);
    for (const auto& [k, v] : m) {
        ASSERT_LT(k, n);
        ++seen[k];
        EXPECT_EQ(v, k * 3);
    }
    for (u64 k = 0; k < n; ++k) ASSERT_EQ(seen[k], 1) << k;
}

TEST(Growth, EraseDuringIterationInTheMiddleOfGrowth) {
    ledger l;
    tracked_map m{spanmap_test::tracking_allocator<std::pair<const u64, u64>>(&l)};
    const u64 n = 13 * 256 + 1 + 50;
    fill_to_mid_growth(m, 13 * 256, 50);
    const auto evacuated = m.stats().old_buckets_evacuated;
    // Hold iterators to some entries we keep: erase(iterator) invalidates
    // only the erased entry.
    std::vector<std::pair<tracked_map::iterator, u64>> held;
    for (u64 k = 1; k < n; k += 100) held.emplace_back(m.find(k), k);
    std::size_t visited = 0;
    for (auto it = m.begin(); it != m.end();) {
        ++visited;
        it = it->first % 2 == 0 ? m.erase(it) : std::next(it);
    }
    EXPECT_EQ(visited, n);
    EXPECT_EQ(m.stats().old_buckets_evacuated, evacuated) << "erase(iterator) moved entries";
    for (const auto& [it, k] : held) {
        EXPECT_EQ(it->first, k);
        EXPECT_EQ(it->second, k * 3);
    }
    char why[256];
    ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why;
    EXPECT_EQ(m.size(), n / 2);
    for (u64 k = 0; k < n; ++k) EXPECT_EQ(m.contains(k), k % 2 == 1) << k;
    // The growth still finishes, and the rest can go the same way.
    for (u64 k = 0; m.stats().growing; k += 2) m.erase(k);
    EXPECT_EQ(erase_if(m, [](const auto&) { return true; }), n / 2);
    EXPECT_TRUE(m.empty());
    ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why;
}

TEST(Growth, EmptiedInTheMiddleOfGrowth) {
    // Emptied by erase(iterator), which evacuates nothing: the growth is
    // still on, but reserve() and shrink_to_fit() have nothing to move.
    ledger l;
    tracked_map m{spanmap_test::tracking_allocator<std::pair<const u64, u64>>(&l)};
    fill_to_mid_growth(m, 13 * 256, 5);
    erase_if(m, [](const auto&) { return true; });
    ASSERT_TRUE(m.stats().growing);
    m.reserve(100000);
    auto s = m.stats();
    EXPECT_FALSE(s.growing);
    EXPECT_EQ(m.bucket_count(), expected_buckets(100000));
    EXPECT_EQ(l.bytes, claimed(m));
    fill_to_mid_growth(m, 13 * 8192, 5);
    erase_if(m, [](const auto&) { return true; });
    ASSERT_TRUE(m.stats().growing);
    m.shrink_to_fit();
    EXPECT_FALSE(m.stats().growing);
    EXPECT_EQ(l.bytes, 0u);
    char why[256];
    ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why;
}

TEST(Growth, ClearAndDestroyInTheMiddleOfGrowthReleaseEverything) {
    ledger l;
    {
        tracked_map m{spanmap_test::tracking_allocator<std::pair<const u64, u64>>(&l)};
        fill_to_mid_growth(m, 13 * 1024, 10);
        m.clear();
        EXPECT_TRUE(m.empty());
        EXPECT_FALSE(m.stats().growing);
        EXPECT_EQ(l.bytes, claimed(m));
        char why[256];
        ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why;
        fill(m, 0, 20000);
        expect_contents(m, 0, 20000);
        fill_to_mid_growth(m, 13 * 2048, 3);
    }
    EXPECT_EQ(l.bytes, 0u);
    EXPECT_EQ(l.allocations, l.deallocations);
}

TEST(Growth, ConcurrentReadsOfAGrowingMap) {
    // Go's TestConcurrentReadsAfterGrowth: readers share a map in the middle
    // of a growth; lookups read unevacuated old buckets and write nothing.
    spanmap::map<u64, u64> m;
    const u64 n = 13 * 1024 + 1 + 20;
    for (u64 k = 0; k < n; ++k) m[k] = k + 1;
    ASSERT_TRUE(m.stats().growing);
    std::vector<std::thread> readers;
    std::vector<int> ok(4, 0);
    for (int t = 0; t < 4; ++t) {
        readers.emplace_back([&, t] {
            bool good = true;
            for (int round = 0; round < spanmap_test::scaled(20, 3); ++round) {
                for (u64 k = 0; k < n; ++k) good &= m.find(k)->second == k + 1;
                good &= !m.contains(n + static_cast<u64>(t));
                u64 sum = 0;
                for (const auto& [k, v] : m) sum += v - k;
                good &= sum == n;
            }
            ok[static_cast<std::size_t>(t)] = good;
        });
    }
    for (auto& r : readers) r.join();
    for (int t = 0; t < 4; ++t) EXPECT_TRUE(ok[static_cast<std::size_t>(t)]) << t;
}

}  // namespace

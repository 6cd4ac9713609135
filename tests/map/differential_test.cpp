// Differential test: seeded random operation sequences applied to
// spanmap::map and to std::unordered_map, compared after every operation that
// returns something, with full comparisons and invariant checks at intervals.
// Phases alternate between growing (insert-heavy), draining (erase-heavy) and
// churning, over key universes of different sizes, so the map grows, shrinks,
// compacts (same-size growth) and is caught mid-evacuation all the time.
//
// A failure prints the seed and the operation number; rerun one seed with
//   SPANMAP_DIFF_SEED=<seed> ./map_test --gtest_filter='Differential.*'

#include "map_test_util.h"

#include <spanmap/map.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <unordered_map>

namespace {

struct phase {
    const char* name;
    int insert, erase, find;  // weights out of insert + erase + find (+ rare operations)
    std::uint64_t universe;   // keys are drawn from [0, universe)
};

constexpr phase phases[] = {
    {"grow", 70, 10, 20, 1 << 18},   {"drain", 10, 70, 20, 1 << 18}, {"churn", 40, 40, 20, 1 << 12},
    {"small", 45, 45, 10, 40},       {"grow-wide", 60, 5, 35, 1 << 22}, {"erase-all", 0, 95, 5, 1 << 22},
};

std::uint64_t seed_from_env(std::uint64_t fallback) {
    const char* s = std::getenv("SPANMAP_DIFF_SEED");
    return s ? std::strtoull(s, nullptr, 0) : fallback;
}

template <class K, class V, class MakeKey, class MakeValue>
void run(std::uint64_t seed, long operations, MakeKey make_key, MakeValue make_value) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    spanmap::map<K, V> m;
    std::unordered_map<K, V> ref;
    std::mt19937_64 rng(seed);
    char why[256];
    const long phase_length = 50000;
    const long check_every = spanmap_test::scaled(25000, 50000);
    long same_size_growths = 0, shrinks = 0, growths_seen = 0;
    bool was_growing = false;
    std::size_t last_bucket_count = m.bucket_count();
    for (long op = 0; op < operations; ++op) {
        const phase& ph = phases[(op / phase_length + seed) % std::size(phases)];
        const K k = make_key(rng() % ph.universe);
        const auto dice = static_cast<int>(rng() % 1000);
        const int total = ph.insert + ph.erase + ph.find;
        const int pick = dice * total / 1000;
        if (dice == 999 && rng() % 16 == 0) {
            // Rare whole-map operations.
            switch (rng() % 4) {
            case 0:
                m.clear();
                ref.clear();
                break;
            case 1:
                m.shrink_to_fit();
                shrinks += m.stats().shrinking;
                break;
            case 2:
                m.reserve(ref.size() * 2 + 100);
                break;
            case 3: {
                auto pred = [](const auto& kv) { return kv.second.back() % 3 == 0; };
                const auto removed = erase_if(m, pred);
                const auto ref_removed = std::erase_if(ref, pred);
                ASSERT_EQ(removed, ref_removed) << "op " << op;
                break;
            }
            }
        } else if (pick < ph.insert) {
            const V v = make_value(op);
            switch (rng() % 4) {
            case 0:
                m[k] = v;
                ref[k] = v;
                break;
            case 1: {
                auto [it, inserted] = m.try_emplace(k, v);
                ASSERT_EQ(inserted, ref.try_emplace(k, v).second) << "op " << op;
                ASSERT_EQ(it->first, k);
                break;
            }
            case 2:
                ASSERT_EQ(m.insert_or_assign(k, v).second, ref.insert_or_assign(k, v).second) << "op " << op;
                break;
            case 3:
                ASSERT_EQ(m.emplace(k, v).second, ref.emplace(k, v).second) << "op " << op;
                break;
            }
        } else if (pick < ph.insert + ph.erase) {
            if (rng() % 2) {
                ASSERT_EQ(m.erase(k), ref.erase(k)) << "op " << op;
            } else {
                // Erase through an iterator (moves nothing, even mid-growth).
                auto it = m.find(k);
                const bool present = ref.erase(k) == 1;
                ASSERT_EQ(it != m.end(), present) << "op " << op;
                if (present) m.erase(it);
            }
        } else {
            auto it = m.find(k);
            auto rit = ref.find(k);
            ASSERT_EQ(it == m.end(), rit == ref.end()) << "op " << op;
            if (rit != ref.end()) {
                ASSERT_EQ(it->second, rit->second) << "op " << op;
            }
        }
        ASSERT_EQ(m.size(), ref.size()) << "op " << op;
        // A doubling changes bucket_count() as it starts; a growth may end
        // within a few writes, so it is looked for after every op.
        growths_seen += m.bucket_count() > last_bucket_count;
        last_bucket_count = m.bucket_count();
        if (op % 8 == 0) {
            // stats() walks every chain; sample it for same-size growths.
            const auto s = m.stats();
            if (s.growing && !was_growing && s.same_size_growth) {
                ++growths_seen;
                ++same_size_growths;
            }
            was_growing = s.growing;
        }

        if (op % check_every == 0 || op + 1 == operations) {
            ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why << " at op " << op;
            std::size_t visited = 0;
            for (const auto& [kk, vv] : m) {
                ++visited;
                auto rit = ref.find(kk);
                ASSERT_TRUE(rit != ref.end()) << "op " << op;
                ASSERT_EQ(rit->second, vv) << "op " << op;
            }
            ASSERT_EQ(visited, ref.size()) << "op " << op;
        }
    }
    std::printf("seed %#llx: %ld growths, %ld same-size growths, %ld shrinks\n",
                static_cast<unsigned long long>(seed), growths_seen, same_size_growths, shrinks);
    EXPECT_GT(growths_seen, 0);
}

std::string value_string(long op) { return std::to_string(op); }

TEST(Differential, IntegerKeysMillionOps) {
    const long ops = spanmap_test::scaled(1200000, 200000);
    run<std::uint64_t, std::string>(
        seed_from_env(0x5eed0001), ops, [](std::uint64_t k) { return k * 0x9e3779b97f4a7c15ULL >> 7; },
        value_string);
}

TEST(Differential, StringKeysMillionOps) {
    const long ops = spanmap_test::scaled(1000000, 150000);
    run<std::string, std::string>(
        seed_from_env(0x5eed0002), ops,
        [](std::uint64_t k) {
            // 1 to ~70 bytes: short, 4-16, 17-48 and the three-lane path.
            std::string s = std::to_string(k);
            s.append(k % 67, static_cast<char>('a' + k % 26));
            return s;
        },
        value_string);
}

TEST(Differential, DenseIntegerKeysOtherSeeds) {
    // Small universes: constant churn on a few buckets.
    for (std::uint64_t seed = 1; seed <= 3; ++seed) {
        run<std::uint64_t, std::string>(
            seed_from_env(seed), spanmap_test::scaled(100000, 20000), [](std::uint64_t k) { return k; },
            value_string);
    }
}

}  // namespace

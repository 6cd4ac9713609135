// Go's runtime/map_test.go cases that carry over to C++: NaN keys, -0.0,
// growing with NaN and -0.0 keys, big keys and values, empty types, the
// tombstone (emptyOne/emptyRest) invariant, and cleared slots.
//
// Where C++ differs from Go it says so: C++ inserts never replace the key of
// a present entry (Go's needkeyupdate overwrites +0 with -0), and iterators
// do not survive inserts (Go's iterators do), so "grow while iterating"
// becomes "iterate while a growth is in progress".

#include "map_test_util.h"

#include <spanmap/map.h>

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <variant>
#include <vector>

namespace {

constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();

TEST(GoMap, NaNKeysNeverMatch) {
    // TestNan: each insert of NaN adds an entry; no lookup finds one.
    spanmap::map<double, int> m;
    m[nan_value] = 1;
    m[nan_value] = 2;
    m[nan_value] = 4;
    EXPECT_EQ(m.size(), 3u);
    EXPECT_TRUE(m.find(nan_value) == m.end());
    EXPECT_EQ(m.count(nan_value), 0u);
    EXPECT_EQ(m.erase(nan_value), 0u);
    int sum = 0;
    for (const auto& [k, v] : m) {
        EXPECT_TRUE(std::isnan(k));
        sum += v;
    }
    EXPECT_EQ(sum, 7);
    char why[256];
    ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why;
    // erase(iterator) is the only way to remove them.
    EXPECT_EQ(erase_if(m, [](const auto& kv) { return std::isnan(kv.first); }), 3u);
    EXPECT_TRUE(m.empty());
}

TEST(GoMap, NegativeZeroIsZero) {
    // TestNegativeZero: +0 and -0 are one key. (Go then holds -0, because it
    // overwrites keys; C++ keeps the key first inserted.)
    spanmap::map<double, bool> m;
    m[+0.0] = true;
    m[-0.0] = true;
    EXPECT_EQ(m.size(), 1u);
    EXPECT_FALSE(std::signbit(m.begin()->first));
    spanmap::map<double, bool> n;
    n[-0.0] = true;
    n[+0.0] = false;
    EXPECT_EQ(n.size(), 1u);
    EXPECT_TRUE(std::signbit(n.begin()->first));
    EXPECT_FALSE(n.at(0.0));
    spanmap::map<float, int> f;
    f[-0.0f] = 1;
    EXPECT_EQ(f.count(0.0f), 1u);
}

TEST(GoMap, GrowWithNaN) {
    // TestGrowWithNaN: NaN keys spread across buckets (random hashes) and
    // survive growth; iteration in the middle of growth sees each once.
    spanmap::map<double, int> m;
    const int nans = 1000;
    for (int i = 0; i < nans; ++i) m[nan_value] = i;
    for (int i = 0; i < 2000; ++i) m[static_cast<double>(i)] = -1;
    EXPECT_EQ(m.size(), static_cast<std::size_t>(nans + 2000));
    EXPECT_LT(m.stats().longest_chain, 8u) << "NaNs must not pile into one chain";
    std::set<int> values;
    int nan_count = 0;
    for (const auto& [k, v] : m) {
        if (std::isnan(k)) {
            ++nan_count;
            EXPECT_TRUE(values.insert(v).second);
        }
    }
    EXPECT_EQ(nan_count, nans);
    char why[256];
    ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why;
}

TEST(GoMap, GrowWithNegativeZero) {
    // TestGrowWithNegativeZero: -0.0 keys hash as +0.0 across growths.
    spanmap::map<double, int> m;
    m[-0.0] = 7;
    for (int i = 1; i < 10000; ++i) m[static_cast<double>(i)] = i;
    EXPECT_EQ(m.at(0.0), 7);
    EXPECT_EQ(m.at(-0.0), 7);
    m[0.0] = 8;
    EXPECT_EQ(m.size(), 10000u);
    EXPECT_EQ(m.at(-0.0), 8);
}

// Over 128 bytes: stored indirectly.
struct big_key {
    std::array<std::uint64_t, 32> words{};
    friend bool operator==(const big_key&, const big_key&) = default;
};
struct big_key_hash {
    std::uint64_t operator()(const big_key& k, std::uint64_t seed) const noexcept {
        return spanmap::detail::hash_bytes(k.words.data(), sizeof k.words, seed);
    }
};
struct big_value {
    std::array<char, 200> bytes{};
};

TEST(GoMap, BigKeysAndValues) {
    // TestBigItems / TestMapLargeKeyNoPointer / TestMapLargeValNoPointer.
    spanmap::map<big_key, big_value, big_key_hash> m;
    const auto s0 = m.stats();
    EXPECT_EQ(s0.bucket_bytes, 8 + 8 * sizeof(void*) + sizeof(void*))
        << "big entries are kept behind pointers: a slot is one pointer to the pair";
    const int n = 1000;
    for (int i = 0; i < n; ++i) {
        big_key k;
        k.words[0] = static_cast<std::uint64_t>(i);
        k.words[31] = static_cast<std::uint64_t>(i) * 7;
        big_value v;
        v.bytes[0] = static_cast<char>(i);
        v.bytes[199] = static_cast<char>(i * 3);
        m[k] = v;
    }
    for (int i = 0; i < n; ++i) {
        big_key k;
        k.words[0] = static_cast<std::uint64_t>(i);
        k.words[31] = static_cast<std::uint64_t>(i) * 7;
        const auto& v = m.at(k);
        EXPECT_EQ(v.bytes[0], static_cast<char>(i));
        EXPECT_EQ(v.bytes[199], static_cast<char>(i * 3));
    }
    for (int i = 0; i < n; i += 2) {
        big_key k;
        k.words[0] = static_cast<std::uint64_t>(i);
        k.words[31] = static_cast<std::uint64_t>(i) * 7;
        EXPECT_EQ(m.erase(k), 1u);
    }
    EXPECT_EQ(m.size(), static_cast<std::size_t>(n / 2));
    char why[256];
    ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why;
}

TEST(GoMap, BigValuesThroughTheTrackingAllocator) {
    // Indirect objects come from the map's allocator too, and go back.
    spanmap_test::ledger l;
    {
        spanmap::map<int, big_value, spanmap::hash<int>, std::equal_to<int>,
                     spanmap_test::tracking_allocator<std::pair<const int, big_value>>>
            m{spanmap_test::tracking_allocator<std::pair<const int, big_value>>(&l)};
        for (int i = 0; i < 500; ++i) m[i].bytes[5] = 'x';
        EXPECT_GE(l.allocations, 500u);
        for (int i = 0; i < 250; ++i) m.erase(i);
    }
    EXPECT_EQ(l.bytes, 0u);
}

struct empty_type {
    friend bool operator==(empty_type, empty_type) { return true; }
};

TEST(GoMap, EmptyKeysAndValues) {
    // TestEmptyKeyAndValue: all empty keys are one key.
    spanmap::map<std::monostate, std::monostate> a;
    a[std::monostate{}] = std::monostate{};
    a[std::monostate{}] = std::monostate{};
    EXPECT_EQ(a.size(), 1u);
    spanmap::map<int, empty_type, spanmap::hash<int>> b;
    for (int i = 0; i < 100; ++i) b[i];
    EXPECT_EQ(b.size(), 100u);
    EXPECT_TRUE(b.contains(42));
    // An empty value costs what it costs in std::pair<const int, empty_type>
    // (C++ objects are at least one byte, padded to the int's alignment):
    // tophash 8 + 8 slots of 8 + overflow 8.
    static_assert(sizeof(std::pair<const int, empty_type>) == 8);
    EXPECT_EQ(b.stats().bucket_bytes, 80u);
}

TEST(GoMap, TombstonesAfterFillDeleteRefill) {
    // TestMapTombstones: empty_one / empty_rest stay consistent (checked by
    // check_invariants: empty_rest only as the tail of a chain, never an
    // empty_one just before it).
    spanmap::map<int, int> m;
    const int n = 10000;
    char why[256];
    for (int i = 0; i < n; ++i) m[i] = i;
    ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why;
    for (int i = 0; i < n; i += 2) m.erase(i);
    ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why;
    for (int i = n; i < 3 * n / 2; ++i) m[i] = i;
    ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why;
    for (int i = 0; i < 3 * n / 2; ++i) m.erase(i);
    ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why;
    EXPECT_TRUE(m.empty());
    EXPECT_TRUE(m.begin() == m.end());
}

TEST(GoMap, ErasedSlotIsClearedBeforeReuse) {
    // Go clears a deleted slot's key and value (typedmemclr); in C++ the
    // value is destroyed, and the next insert into the slot constructs a new
    // one: a reused slot never shows the old value.
    spanmap::map<int, std::array<std::uint64_t, 4>> m;
    for (int i = 0; i < 8; ++i) m[i] = {1, 2, 3, 4};
    m.erase(3);
    const auto& fresh = m[3];  // value-initialised, in the slot 3 had
    for (auto w : fresh) EXPECT_EQ(w, 0u);
    spanmap::map<int, std::string> s;
    s[1] = std::string(100, 'q');
    s.erase(1);
    EXPECT_EQ(s[1], "");
}

TEST(GoMap, IterationOrderDependsOnTheSeed) {
    // Go randomises iteration order per iteration; here order is fixed per
    // map but differs between maps, since each map has its own seed (a
    // program cannot come to depend on one order).
    std::set<std::vector<int>> orders;
    for (int round = 0; round < 8; ++round) {
        spanmap::map<int, int> m;
        for (int i = 0; i < 64; ++i) m[i] = i;
        std::vector<int> order;
        for (const auto& [k, v] : m) order.push_back(k);
        orders.insert(order);
    }
    EXPECT_GT(orders.size(), 1u);
}

TEST(GoMap, ReseededWhenEmptied) {
    // Go reseeds a map that becomes empty, so a flood of colliding keys
    // cannot be replayed after a clear. The order of the same keys changes.
    spanmap::map<int, int> m;
    std::set<std::vector<int>> orders;
    for (int round = 0; round < 8; ++round) {
        for (int i = 0; i < 64; ++i) m[i] = i;
        std::vector<int> order;
        for (const auto& [k, v] : m) order.push_back(k);
        orders.insert(order);
        if (round % 2) {
            m.clear();
        } else {
            for (int i = 0; i < 64; ++i) m.erase(i);
        }
    }
    EXPECT_GT(orders.size(), 1u);
}

// The bucket's 8 tophash bytes are tested at once (SSE2 or SWAR); every test
// must select exactly the slots a loop over the bytes would.
TEST(GoMap, TophashWordSelectsWhatEachByteSays) {
    using spanmap::detail::tophash_word;
    const std::uint8_t alphabet[] = {0, 1, 2, 3, 4, 5, 6, 0x7f, 0x80, 0x81, 0xfe, 0xff};
    std::uint64_t rng = 42;
    auto next = [&rng] {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        return rng >> 33;
    };
    auto slots = [](auto mask) {
        unsigned bits = 0;
        for (; mask; mask &= mask - 1) bits |= 1u << tophash_word::first(mask);
        return bits;
    };
    for (int round = 0; round < 20000; ++round) {
        std::array<std::uint8_t, 8> th{};
        for (auto& t : th) t = alphabet[next() % std::size(alphabet)];
        const std::uint8_t top = alphabet[5 + next() % (std::size(alphabet) - 5)];
        const tophash_word w = tophash_word::load(th.data());
        unsigned live = 0, empty = 0, match = 0;
        bool rest = false;
        for (unsigned i = 0; i < 8; ++i) {
            live |= unsigned{th[i] >= spanmap::detail::min_top_hash} << i;
            empty |= unsigned{th[i] <= spanmap::detail::empty_one} << i;
            match |= unsigned{th[i] == top} << i;
            rest |= th[i] == spanmap::detail::empty_rest;
        }
        ASSERT_EQ(slots(w.live()), live) << round;
        ASSERT_EQ(slots(w.empty()), empty) << round;
        ASSERT_EQ(slots(w.matching(top)), match) << round;
        ASSERT_EQ(w.has_empty_rest(), rest) << round;
    }
}

// Erase's tail cleanup: slot i just became empty_one and only empty_rest
// follows it; the empty_one run ending at i becomes empty_rest, and the
// result says whether the run reached slot 0.
TEST(GoMap, EmptyOneRunBecomesEmptyRest) {
    using namespace spanmap::detail;
    std::uint64_t rng = 7;
    auto next = [&rng] {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        return rng >> 33;
    };
    for (int round = 0; round < 20000; ++round) {
        const unsigned i = static_cast<unsigned>(next() % 8);
        std::array<std::uint8_t, 8> th{};  // empty_rest after i
        for (unsigned k = 0; k < i; ++k) {
            th[k] = next() % 2 ? std::uint8_t{empty_one} : static_cast<std::uint8_t>(min_top_hash + next() % 251);
        }
        th[i] = empty_one;
        std::array<std::uint8_t, 8> want = th;
        unsigned k = i + 1;
        while (k > 0 && want[k - 1] == empty_one) want[--k] = empty_rest;
        const bool reached_zero = clear_empty_one_run(th.data(), i);
        ASSERT_EQ(th, want) << round;
        ASSERT_EQ(reached_zero, k == 0) << round;
    }
}

// Erase's word update against a model of Go's byte loop, in both of its
// forms: a bucket whose bytes after its first empty_rest are all empty_rest,
// a live slot erased, and for slot 7 the next bucket's state (tail_rest).
template <bool BranchFree>
void check_erase_tophash() {
    using namespace spanmap::detail;
    std::uint64_t rng = 11;
    auto next = [&rng] {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        return rng >> 33;
    };
    int erased = 0;
    int runs_to_zero = 0;
    for (int round = 0; round < 40000; ++round) {
        const unsigned rest_from = static_cast<unsigned>(next() % 9);
        std::array<std::uint8_t, 8> th{};
        for (unsigned k = 0; k < rest_from; ++k) {
            th[k] = next() % 3 == 0 ? std::uint8_t{empty_one} : static_cast<std::uint8_t>(min_top_hash + next() % 251);
        }
        const unsigned i = static_cast<unsigned>(next() % 8);
        if (!is_live(th[i])) continue;
        const bool tail_rest = next() % 2 != 0;
        std::array<std::uint8_t, 8> want = th;
        want[i] = empty_one;
        const bool rest = i + 1 < 8 ? want[i + 1] == empty_rest : tail_rest;
        unsigned k = i + 1;
        if (rest) {
            while (k > 0 && want[k - 1] == empty_one) want[--k] = empty_rest;
        }
        const bool reached_zero = erase_tophash<BranchFree>(th.data(), i, tail_rest);
        ASSERT_EQ(th, want) << round;
        ASSERT_EQ(reached_zero, rest && k == 0) << round;
        ++erased;
        runs_to_zero += reached_zero ? 1 : 0;
    }
    EXPECT_GT(erased, 10000);
    EXPECT_GT(runs_to_zero, 100);  // the cross-bucket case is exercised
}

TEST(GoMap, EraseTophashMatchesTheByteLoop) {
    check_erase_tophash<true>();
    check_erase_tophash<false>();
}

}  // namespace

// Element types: a counting type (constructions == destructions, no stray
// copies), move-only keys and values, over-aligned values, hashes,
// comparisons and constructors that throw, and the write-in-progress check.

#include "map_test_util.h"

#include <spanmap/map.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace {

using spanmap_test::counted;
using spanmap_test::counted_hash;
using spanmap_test::injected_failure;
using spanmap_test::ledger;
using spanmap_test::throwing_value;

TEST(Elements, CountingTypeBalancesAndIsNeverCopied) {
    counted::reset();
    {
        spanmap::map<counted, counted, counted_hash> m;
        const int n = 20000;
        for (int i = 0; i < n; ++i) m.emplace(counted(i), counted(i * 2));
        for (int i = 0; i < n; ++i) m.try_emplace(counted(i), i);  // present: constructs no value
        EXPECT_EQ(counted::copies, 0) << "inserting rvalues (and growing) must not copy";
        EXPECT_GT(counted::moves, 0) << "evacuation moves entries";
        EXPECT_EQ(m.size(), static_cast<std::size_t>(n));
        EXPECT_EQ(counted::alive(), 2 * n + 0) << "one key and one value per entry";
        for (int i = 0; i < n; i += 2) m.erase(counted(i));
        EXPECT_EQ(counted::alive(), n);
        for (int i = 0; i < n / 2; ++i) m.erase(m.begin());
        EXPECT_EQ(counted::alive(), 0);
        for (int i = 0; i < 1000; ++i) m[counted(i)] = counted(i);
        EXPECT_EQ(counted::copies, 0);
        const long before = counted::copies;
        spanmap::map<counted, counted, counted_hash> copy(m);
        EXPECT_EQ(counted::copies - before, 2000) << "a copy copies each key and value once";
        spanmap::map<counted, counted, counted_hash> moved(std::move(copy));
        EXPECT_EQ(counted::copies - before, 2000) << "a move copies nothing";
        m.clear();
        EXPECT_EQ(counted::alive(), 2000);
        m = moved;
        m.shrink_to_fit();
        for (int i = 0; i < 1000; ++i) m.erase(counted(-1));
    }
    EXPECT_EQ(counted::constructed, counted::destroyed);
}

TEST(Elements, MoveOnlyKeysAndValues) {
    spanmap::map<int, std::unique_ptr<int>> values;
    for (int i = 0; i < 10000; ++i) values.emplace(i, std::make_unique<int>(i));
    for (int i = 0; i < 10000; ++i) ASSERT_EQ(*values.at(i), i);
    values[5] = std::make_unique<int>(55);
    EXPECT_EQ(*values.at(5), 55);
    spanmap::map<int, std::unique_ptr<int>> moved(std::move(values));
    EXPECT_EQ(moved.size(), 10000u);
    values = std::move(moved);
    EXPECT_EQ(*values.at(9999), 9999);

    spanmap::map<std::unique_ptr<int>, int> keys;
    std::vector<int*> raw;
    for (int i = 0; i < 5000; ++i) {
        auto p = std::make_unique<int>(i);
        raw.push_back(p.get());
        keys.try_emplace(std::move(p), i);
    }
    EXPECT_EQ(keys.size(), 5000u);
    for (const auto& [k, v] : keys) EXPECT_EQ(*k, v);
    char why[256];
    ASSERT_TRUE(keys.check_invariants(why, sizeof why)) << why;
}

struct alignas(32) avx_value {
    double lanes[4];
};
struct alignas(64) line_key {
    std::uint64_t id;
    friend bool operator==(const line_key& a, const line_key& b) { return a.id == b.id; }
};
struct line_key_hash {
    std::uint64_t operator()(const line_key& k, std::uint64_t seed) const noexcept {
        return spanmap::hash<std::uint64_t>{}(k.id, seed);
    }
};

TEST(Elements, OverAlignedValuesStayAligned) {
    spanmap::map<int, avx_value> m;
    for (int i = 0; i < 20000; ++i) m[i] = avx_value{{1.0 * i, 2, 3, 4}};
    for (auto&& [k, v] : m) {
        ASSERT_EQ(reinterpret_cast<std::uintptr_t>(&v) % 32, 0u);
        ASSERT_EQ(v.lanes[0], 1.0 * k);
    }
    ledger l;
    spanmap::map<line_key, avx_value, line_key_hash, std::equal_to<line_key>,
                 spanmap_test::tracking_allocator<std::pair<const line_key, avx_value>>>
        n{spanmap_test::tracking_allocator<std::pair<const line_key, avx_value>>(&l)};
    for (std::uint64_t i = 0; i < 5000; ++i) n[line_key{i}].lanes[1] = static_cast<double>(i);
    for (auto&& [k, v] : n) {
        ASSERT_EQ(reinterpret_cast<std::uintptr_t>(&k) % 64, 0u);
        ASSERT_EQ(reinterpret_cast<std::uintptr_t>(&v) % 32, 0u);
        ASSERT_EQ(v.lanes[1], static_cast<double>(k.id));
    }
}

// A hash that throws on the countdown's zero; not noexcept, so evacuation
// computes all the hashes it needs before it moves anything.
struct flaky_hash {
    static inline int countdown = -1;
    std::size_t operator()(int k) const {
        if (countdown >= 0 && countdown-- == 0) throw injected_failure();
        return std::hash<int>{}(k);
    }
};

template <class Map>
std::map<int, std::string> snapshot(const Map& m) {
    std::map<int, std::string> out;
    for (const auto& [k, v] : m) out.emplace(k, v);
    return out;
}

TEST(Elements, ThrowingHashLeavesTheMapUnchanged) {
    ledger l;
    using alloc = spanmap_test::tracking_allocator<std::pair<const int, std::string>>;
    {
        spanmap::map<int, std::string, flaky_hash, std::equal_to<int>, alloc> m{alloc(&l)};
        std::map<int, std::string> expected;
        char why[256];
        int next = 0;
        int failures = 0;
        int evacuation_failures = 0;
        // Each insert draws a countdown: 0 throws at the new key's own hash,
        // 1..20 somewhere in the evacuation that precedes the insert.
        const int trials = spanmap_test::scaled(20000, 4000);
        for (int trial = 0; trial < trials; ++trial) {
            flaky_hash::countdown = trial % 7 == 0 ? (trial / 7) % 21 : -1;
            const int k = next++;
            try {
                m[k] = std::to_string(k);
                expected[k] = std::to_string(k);
            } catch (const injected_failure&) {
                ++failures;
                // Past the key's own hash, only evacuation hashes.
                evacuation_failures += trial % 7 == 0 && (trial / 7) % 21 > 0;
            }
            flaky_hash::countdown = -1;
            if (trial % 500 == 0 || trial % 7 == 0) {
                ASSERT_EQ(m.size(), expected.size());
                ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why << " at trial " << trial;
            }
            if (trial % 1000 == 0) {
                ASSERT_EQ(snapshot(m), expected);
            }
        }
        EXPECT_GT(failures, trials / 100);
        EXPECT_GT(evacuation_failures, trials / 1000);
        ASSERT_EQ(snapshot(m), expected);
        // erase(key) evacuates too.
        for (int trial = 0; trial < 2000; ++trial) {
            flaky_hash::countdown = trial % 4;
            try {
                if (m.erase(trial) == 1) expected.erase(trial);
            } catch (const injected_failure&) {
            }
            flaky_hash::countdown = -1;
        }
        ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why;
        ASSERT_EQ(snapshot(m), expected);
    }
    EXPECT_EQ(l.bytes, 0u) << "nothing leaked";
}

// Stored in the slot (its move is noexcept); only its int constructor throws.
struct throwing_direct {
    int value;
    throwing_direct(int v) : value(v) { throwing_value::maybe_throw(); }
    throwing_direct(throwing_direct&&) noexcept = default;
    throwing_direct(const throwing_direct&) = default;
};
struct throwing_value_hash {
    std::uint64_t operator()(const throwing_value& v, std::uint64_t seed) const noexcept {
        return spanmap::hash<int>{}(v.value, seed);
    }
};

TEST(Elements, ThrowingConstructorsLeaveTheMapUnchanged) {
    ledger l;
    {
        // throwing_value may throw when copied and has no move: stored behind
        // a pointer, allocated through the map's allocator.
        using alloc = spanmap_test::tracking_allocator<std::pair<const throwing_value, throwing_value>>;
        spanmap::map<throwing_value, throwing_value, throwing_value_hash, std::equal_to<throwing_value>, alloc> m{
            alloc(&l)};
        int failures = 0;
        for (int i = 0; i < 5000; ++i) {
            // Throws building the temporary key (0), the key in its slot (1) or the value (2).
            throwing_value::countdown = i % 4 == 0 ? (i / 4) % 3 : -1;
            try {
                m.emplace(i, i);
            } catch (const injected_failure&) {
                ++failures;
                EXPECT_FALSE(m.contains(throwing_value(i)));
            }
            throwing_value::countdown = -1;
        }
        EXPECT_GT(failures, 1000);
        EXPECT_LT(failures, 1300);
        EXPECT_EQ(m.size(), static_cast<std::size_t>(5000 - failures));
        EXPECT_EQ(throwing_value::alive, static_cast<long>(2 * m.size())) << "no half-built entry left behind";
        char why[256];
        ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why;
    }
    EXPECT_EQ(throwing_value::alive, 0);
    EXPECT_EQ(l.bytes, 0u);

    spanmap::map<int, throwing_direct> direct;
    for (int i = 0; i < 3000; ++i) {
        throwing_value::countdown = i % 2 == 0 ? 0 : -1;
        try {
            direct.try_emplace(i, i);
        } catch (const injected_failure&) {
        }
        throwing_value::countdown = -1;
    }
    EXPECT_EQ(direct.size(), 1500u);
    for (int i = 0; i < 3000; ++i) EXPECT_EQ(direct.contains(i), i % 2 == 1);
}

// Every key hashes alike, so every insert compares against every key.
struct constant_hash {
    std::size_t operator()(int) const noexcept { return 42; }
};
struct flaky_equal {
    static inline int countdown = -1;
    bool operator()(int a, int b) const {
        if (countdown >= 0 && countdown-- == 0) throw injected_failure();
        return a == b;
    }
};

TEST(Elements, ThrowingComparisonLeavesTheMapUnchanged) {
    spanmap::map<int, int, constant_hash, flaky_equal> m;
    for (int i = 0; i < 200; ++i) m[i] = i;
    for (int i = 200; i < 400; ++i) {
        flaky_equal::countdown = i % 50;
        EXPECT_THROW(m[i] = i, injected_failure);
        flaky_equal::countdown = -1;
        EXPECT_EQ(m.size(), 200u);
    }
    char why[256];
    ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why;
    for (int i = 0; i < 200; ++i) EXPECT_EQ(m.at(i), i);
}

// --- the write-in-progress check (Go's hashWriting) -------------------------------

std::function<void()> hash_hook;
struct hooked_hash {
    std::uint64_t operator()(int k, std::uint64_t seed) const {
        if (hash_hook) hash_hook();
        return spanmap::hash<int>{}(k, seed);
    }
};
std::function<void()> ctor_hook;
struct hooked_value {
    hooked_value() {
        if (ctor_hook) ctor_hook();
    }
};

// Each of these stops the process.
void write_from_the_hash_during_a_write() {
    spanmap::map<int, int, hooked_hash> m;
    hash_hook = [&] {
        hash_hook = nullptr;
        m[2] = 2;
    };
    m[1] = 1;
}
void write_from_a_constructor_during_a_write() {
    spanmap::map<int, hooked_value> m;
    ctor_hook = [&] {
        ctor_hook = nullptr;
        m.erase(7);
    };
    m[1];
}
void read_during_a_write() {
    spanmap::map<int, int, hooked_hash> m;
    m[1] = 1;
    hash_hook = [&] {
        hash_hook = nullptr;
        (void)m.find(1);
    };
    m[2] = 2;
}

class ElementsDeathTest : public ::testing::Test {
protected:
    void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(ElementsDeathTest, WriteFromTheHashDuringAWrite) {
    EXPECT_DEATH(write_from_the_hash_during_a_write(), "fatal error: concurrent map writes");
}

TEST_F(ElementsDeathTest, WriteFromAConstructorDuringAWrite) {
    EXPECT_DEATH(write_from_a_constructor_during_a_write(), "fatal error: concurrent map writes");
}

TEST_F(ElementsDeathTest, ReadDuringAWrite) {
    EXPECT_DEATH(read_during_a_write(), "fatal error: concurrent map read and map write");
}

TEST(Elements, NestedMapsAreIndependentWrites) {
    // Writing to another map from inside a write is fine.
    spanmap::map<int, spanmap::map<int, int>> outer;
    for (int i = 0; i < 100; ++i) outer[i][i] = i;
    for (auto&& [k, inner] : outer) inner[k + 1000] = 1;
    EXPECT_EQ(outer.at(5).size(), 2u);
}

}  // namespace

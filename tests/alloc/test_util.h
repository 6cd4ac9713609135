// Helpers shared by the allocator tests: the expected size of every request
// (derived from the size-class table, which size_classes_test checks against
// Go's), patterns that tie a block's contents to its identity, and a fixture
// that checks the heap's invariants after each test.
#pragma once

#include "sizeclasses.h"
#include "../common/test_common.h"

#include <spanmap/alloc.h>
#include <spanmap/spanmap.h>

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace spanmap::test {

namespace sc = spanmap::sc;

static_assert(kPage == std::size_t{1} << sc::page_shift);
inline constexpr std::size_t kMaxSmall = sc::max_small_size;

constexpr std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

// The smallest class that holds n bytes, found by scanning the table rather
// than through the lookup tables the allocator itself uses. `skip` is a class
// size the caller cannot use (24 for malloc: it is not 16-byte aligned).
inline std::size_t smallest_class_fitting(std::size_t n, std::size_t skip = 0) {
    for (int c = 1; c < sc::num_classes; ++c)
        if (sc::class_size[c] >= n && sc::class_size[c] != skip) return sc::class_size[c];
    return 0;
}

// What spanmap_malloc(n) must make usable: the malloc contract spelled out.
inline std::size_t expected_malloc_usable(std::size_t n) {
    if (n > kMaxSmall) return round_up(n, kPage);
    if (n <= 8) return 8;
    return smallest_class_fitting(n, /*skip=*/24);
}

// What spanmap::allocate(n, align) must make usable for align <= 8: any class,
// the 24-byte one included.
inline std::size_t expected_allocate8_usable(std::size_t n) {
    if (n > kMaxSmall) return round_up(n, kPage);
    return smallest_class_fitting(n == 0 ? 1 : n);
}

// A word sequence seeded by a block's identity, so a block that is handed out
// twice, overlaps another or is clobbered by the allocator's free-list links
// shows up as a mismatch on verification.
inline std::uint64_t mix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// SplitMix64: the same sequence on every platform and standard library.
class rng {
public:
    explicit rng(std::uint64_t seed) : s_(seed) {}
    std::uint64_t next() { return mix(s_++); }
    std::size_t below(std::size_t n) { return static_cast<std::size_t>(next() % n); }
    std::size_t between(std::size_t lo, std::size_t hi) { return lo + below(hi - lo + 1); }
    bool chance(unsigned percent) { return below(100) < percent; }

private:
    std::uint64_t s_;
};

inline void fill_pattern(void* p, std::size_t n, std::uint64_t seed) {
    auto* b = static_cast<unsigned char*>(p);
    const std::uint64_t base = mix(seed);
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const std::uint64_t w = base ^ (i * 0x100000001b3ULL);
        std::memcpy(b + i, &w, 8);
    }
    const std::uint64_t w = base ^ (i * 0x100000001b3ULL);
    std::memcpy(b + i, &w, n - i);
}

// Offset of the first byte that differs from fill_pattern(p, n, seed), or -1.
inline std::ptrdiff_t check_pattern(const void* p, std::size_t n, std::uint64_t seed) {
    const auto* b = static_cast<const unsigned char*>(p);
    const std::uint64_t base = mix(seed);
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const std::uint64_t want = base ^ (i * 0x100000001b3ULL);
        std::uint64_t got;
        std::memcpy(&got, b + i, 8);
        if (got != want) {
            for (std::size_t j = 0; j < 8; ++j)
                if (b[i + j] != reinterpret_cast<const unsigned char*>(&want)[j])
                    return static_cast<std::ptrdiff_t>(i + j);
        }
    }
    const std::uint64_t want = base ^ (i * 0x100000001b3ULL);
    for (std::size_t j = 0; i + j < n; ++j)
        if (b[i + j] != reinterpret_cast<const unsigned char*>(&want)[j])
            return static_cast<std::ptrdiff_t>(i + j);
    return -1;
}

inline std::ptrdiff_t first_nonzero(const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i)
        if (b[i] != 0) return static_cast<std::ptrdiff_t>(i);
    return -1;
}

inline std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

// check_invariants() as a gtest assertion that prints the violation.
inline ::testing::AssertionResult invariants_hold() {
    char why[512] = {};
    if (spanmap::debug::check_invariants(why, sizeof why)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "heap invariant violated: " << why;
}

// Every test leaves the heap quiet (its threads joined), so each one ends by
// walking all tiers: a test that passes but corrupts the heap still fails.
class HeapTest : public ::testing::Test {
protected:
    void TearDown() override { EXPECT_TRUE(invariants_hold()); }
};

}  // namespace spanmap::test

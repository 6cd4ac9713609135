// The map's memory through its Allocator: the arena allocator (default),
// std::allocator, std::pmr::polymorphic_allocator (with uses-allocator
// construction of the elements), and a stateful allocator whose propagation
// traits are set each way for copy assignment, move assignment and swap.

#include "map_test_util.h"

#include <spanmap/alloc.h>
#include <spanmap/map.h>
#include <spanmap/pmr.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <memory_resource>
#include <sstream>
#include <string>
#include <unordered_map>

namespace {

using spanmap_test::ledger;
using spanmap_test::tracking_allocator;

// A memory_resource that checks every deallocation against its allocation.
class checking_resource : public std::pmr::memory_resource {
public:
    ledger l;

private:
    void* do_allocate(std::size_t bytes, std::size_t align) override { return l.allocate(bytes, align); }
    void do_deallocate(void* p, std::size_t bytes, std::size_t align) override { l.deallocate(p, bytes, align); }
    bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override { return this == &o; }
};

TEST(Allocators, PolymorphicAllocatorCarriesItsResourceIntoTheElements) {
    checking_resource res;
    {
        using value_alloc = std::pmr::polymorphic_allocator<std::pair<const std::pmr::string, std::pmr::string>>;
        spanmap::map<std::pmr::string, std::pmr::string, spanmap::hash<std::pmr::string>,
                     std::equal_to<std::pmr::string>, value_alloc>
            m{value_alloc(&res)};
        const std::string tail(40, 't');  // longer than the small-string buffer
        for (int i = 0; i < 5000; ++i) m.try_emplace(std::pmr::string(std::to_string(i) + tail), std::to_string(i) + tail);
        EXPECT_EQ(m.size(), 5000u);
        auto it = m.find(std::string_view("17" + tail));
        ASSERT_TRUE(it != m.end());
        EXPECT_EQ(it->first.get_allocator().resource(), &res) << "keys built with the map's allocator";
        EXPECT_EQ(it->second.get_allocator().resource(), &res) << "values built with the map's allocator";
        EXPECT_EQ(m.get_allocator().resource(), &res);
        const auto s = m.stats();
        EXPECT_GE(res.l.bytes, s.bucket_array_bytes + s.overflow_bytes + 2 * 5000 * tail.size());
        for (int i = 0; i < 2500; ++i) m.erase(std::pmr::string(std::to_string(i) + tail));
        char why[256];
        ASSERT_TRUE(m.check_invariants(why, sizeof why)) << why;
        // pmr containers do not propagate on copy: a copy uses the default resource.
        spanmap::map<std::pmr::string, std::pmr::string, spanmap::hash<std::pmr::string>,
                     std::equal_to<std::pmr::string>, value_alloc>
            copy(m);
        EXPECT_EQ(copy.get_allocator().resource(), std::pmr::get_default_resource());
        EXPECT_TRUE(copy == m);
    }
    EXPECT_EQ(res.l.bytes, 0u);
    EXPECT_EQ(res.l.allocations, res.l.deallocations);
}

TEST(Allocators, ArenaMemoryResourceUnderPmr) {
    using value_alloc = std::pmr::polymorphic_allocator<std::pair<const std::uint64_t, std::uint64_t>>;
    spanmap::map<std::uint64_t, std::uint64_t, spanmap::hash<std::uint64_t>, std::equal_to<std::uint64_t>, value_alloc>
        m{value_alloc(spanmap::pmr_resource())};
    for (std::uint64_t i = 0; i < 100000; ++i) m[i] = i;
    for (std::uint64_t i = 0; i < 100000; ++i) ASSERT_EQ(m.at(i), i);
}

TEST(Allocators, StdAllocatorIsNotRounded) {
    spanmap::map<std::uint64_t, std::uint64_t, spanmap::hash<std::uint64_t>, std::equal_to<std::uint64_t>,
                 std::allocator<std::pair<const std::uint64_t, std::uint64_t>>>
        m;
    m.reserve(13 * 1024);  // B = 11
    const auto s = m.stats();
    EXPECT_EQ(s.B, 11);
    EXPECT_EQ(s.overflow_preallocated_left, 128u) << "exactly 2^(B-4): no rounding for std::allocator";
    EXPECT_EQ(s.bucket_array_bytes, (2048 + 128) * s.bucket_bytes);
}

// The map finds an allocator's extra abilities by its members, not its name:
// any allocator with good_size(n) gets its arrays rounded up (the tail
// becoming preallocated overflow buckets), and they go back through its
// deallocate. allocate_zeroed(n) is not asked for, even by a reserve: the
// map writes the chain heads of a fresh array itself, and the ledger's
// 0xA5 filling would show any it did not.
template <class T>
struct hooked_allocator {
    using value_type = T;
    spanmap_test::ledger* ledger;
    std::size_t* zeroed;

    hooked_allocator(spanmap_test::ledger* l, std::size_t* z) noexcept : ledger(l), zeroed(z) {}
    template <class U>
    hooked_allocator(const hooked_allocator<U>& o) noexcept : ledger(o.ledger), zeroed(o.zeroed) {}
    T* allocate(std::size_t n) { return static_cast<T*>(ledger->allocate(n * sizeof(T), alignof(T))); }
    void deallocate(T* p, std::size_t n) noexcept { ledger->deallocate(p, n * sizeof(T), alignof(T)); }
    T* allocate_zeroed(std::size_t n) {
        ++*zeroed;
        T* p = allocate(n);
        std::memset(static_cast<void*>(p), 0, n * sizeof(T));
        return p;
    }
    // Rounds every block up to whole 4 KiB pages, as a page allocator would.
    std::size_t good_size(std::size_t n) const noexcept { return (n * sizeof(T) + 4095) / 4096 * 4096 / sizeof(T); }
    template <class U>
    friend bool operator==(const hooked_allocator& a, const hooked_allocator<U>& b) noexcept {
        return a.ledger == b.ledger;
    }
};

TEST(Allocators, HooksAreFoundByTheirMembers) {
    spanmap_test::ledger l;
    std::size_t zeroed = 0;
    using A = hooked_allocator<std::pair<const std::uint64_t, std::uint64_t>>;
    {
        spanmap::map<std::uint64_t, std::uint64_t, spanmap::hash<std::uint64_t>, std::equal_to<std::uint64_t>, A> m{
            A(&l, &zeroed)};
        m.reserve(13 * 1024);  // B = 11, its chain heads written up front
        const auto s = m.stats();
        EXPECT_EQ(s.B, 11);
        const std::size_t page_bytes = ((2048 + 128) * s.bucket_bytes + 4095) / 4096 * 4096;
        EXPECT_EQ(s.overflow_preallocated_left, page_bytes / s.bucket_bytes - 2048) << "2^(B-4), rounded up by good_size";
        EXPECT_GT(s.overflow_preallocated_left, 128u);
        EXPECT_EQ(s.bucket_array_bytes, page_bytes);
        for (std::uint64_t i = 0; i < 30000; ++i) m[i] = i;  // one doubling, lazily initialised
        EXPECT_EQ(zeroed, 0u);
        for (std::uint64_t i = 0; i < 30000; ++i) ASSERT_EQ(m.at(i), i);
    }
    EXPECT_EQ(l.bytes, 0u) << "every array went back through the allocator that made it";
}

TEST(Allocators, ArenaArraysAreWhatTheArenaHandedOut) {
    spanmap::map<std::uint64_t, std::uint64_t> m;
    for (std::uint64_t i = 0; i < 50000; ++i) m[i] = i;
    const auto s = m.stats();
    ASSERT_NE(s.buckets.begin, 0u);
    const void* array = reinterpret_cast<const void*>(s.buckets.begin);
    EXPECT_EQ(spanmap::usable_size(array), s.bucket_array_bytes);
    EXPECT_LE(s.buckets.end - s.buckets.begin, s.bucket_array_bytes);
    EXPECT_GT(s.buckets.end - s.buckets.begin + s.bucket_bytes, s.bucket_array_bytes)
        << "rounding left less than a bucket unused";
}

TEST(Allocators, BucketArrayIsFoundInProcSelfMaps) {
    spanmap::map<std::uint64_t, std::uint64_t> m;
    for (std::uint64_t i = 0; i < 200000; ++i) m[i] = i;
    const auto s = m.stats();
    std::ifstream maps("/proc/self/maps");
    ASSERT_TRUE(maps.good());
    std::string line;
    bool found = false;
    while (std::getline(maps, line)) {
        unsigned long lo = 0, hi = 0;
        if (std::sscanf(line.c_str(), "%lx-%lx", &lo, &hi) != 2) continue;
        if (s.buckets.begin >= lo && s.buckets.end <= hi) found = true;
    }
    EXPECT_TRUE(found) << "the current bucket array lies inside one mapping";
}

// --- propagation traits ------------------------------------------------------------

template <bool POCCA, bool POCMA, bool POCS>
struct propagation {
    using alloc = tracking_allocator<std::pair<const int, std::string>, POCCA, POCMA, POCS>;
    using map = spanmap::map<int, std::string, spanmap::hash<int>, std::equal_to<int>, alloc>;

    static void fill(map& m, int from, int to) {
        for (int i = from; i < to; ++i) m[i] = std::to_string(i);
    }
    static std::unordered_map<int, std::string> contents(const map& m) {
        std::unordered_map<int, std::string> out;
        for (const auto& [k, v] : m) out.emplace(k, v);
        return out;
    }

    static void copy_assignment() {
        ledger la, lb;
        {
            map a{alloc(&la)}, b{alloc(&lb)};
            fill(a, 0, 1000);
            fill(b, 5000, 5500);
            a = b;
            EXPECT_TRUE(a.get_allocator() == (POCCA ? alloc(&lb) : alloc(&la)));
            EXPECT_EQ(contents(a), contents(b));
            if (POCCA) {
                EXPECT_EQ(la.bytes, 0u) << "a gave its old memory back to its old allocator";
            } else {
                EXPECT_GT(la.bytes, 0u);
            }
            a[1] = "one";
            EXPECT_FALSE(b.contains(1));
        }
        EXPECT_EQ(la.bytes, 0u);
        EXPECT_EQ(lb.bytes, 0u);
    }

    static void move_assignment() {
        ledger la, lb;
        {
            map a{alloc(&la)}, b{alloc(&lb)};
            fill(a, 0, 1000);
            fill(b, 5000, 5500);
            const auto expected = contents(b);
            const std::size_t lb_allocations = lb.allocations;
            a = std::move(b);
            EXPECT_EQ(contents(a), expected);
            if (POCMA) {
                EXPECT_TRUE(a.get_allocator() == alloc(&lb));
                EXPECT_EQ(la.bytes, 0u);
                EXPECT_EQ(lb.allocations, lb_allocations) << "the memory changed hands, nothing was copied";
            } else {
                // Unequal allocators that do not propagate: element by element.
                EXPECT_TRUE(a.get_allocator() == alloc(&la));
                EXPECT_GT(la.bytes, 0u);
            }
            b.clear();
            fill(b, 0, 10);
            EXPECT_EQ(b.size(), 10u);
        }
        EXPECT_EQ(la.bytes, 0u);
        EXPECT_EQ(lb.bytes, 0u);
        // Equal allocators: always a steal.
        ledger l;
        {
            map a{alloc(&l)}, b{alloc(&l)};
            fill(a, 0, 100);
            fill(b, 0, 200);
            const std::size_t before = l.allocations;
            a = std::move(b);
            EXPECT_EQ(a.size(), 200u);
            EXPECT_EQ(l.allocations, before);
        }
        EXPECT_EQ(l.bytes, 0u);
    }

    static void swap() {
        ledger la, lb;
        {
            map a{alloc(&la)};
            map b{alloc(POCS ? &lb : &la)};  // without propagation only equal allocators may swap
            fill(a, 0, 1000);
            fill(b, 5000, 5500);
            const auto ca = contents(a), cb = contents(b);
            const auto alloc_a = a.get_allocator(), alloc_b = b.get_allocator();
            a.swap(b);
            EXPECT_EQ(contents(a), cb);
            EXPECT_EQ(contents(b), ca);
            EXPECT_TRUE(a.get_allocator() == alloc_b);
            EXPECT_TRUE(b.get_allocator() == alloc_a);
            a[1] = "x";
            b[1] = "y";
        }
        EXPECT_EQ(la.bytes, 0u);
        EXPECT_EQ(lb.bytes, 0u);
    }

    static void constructors() {
        ledger la, lb;
        {
            map a{alloc(&la)};
            fill(a, 0, 1000);
            map copy(a);
            EXPECT_TRUE(copy.get_allocator() == alloc(&la));
            map other(a, alloc(&lb));
            EXPECT_TRUE(other.get_allocator() == alloc(&lb));
            EXPECT_EQ(contents(other), contents(a));
            map moved(std::move(other), alloc(&la));  // unequal: element by element
            EXPECT_TRUE(moved.get_allocator() == alloc(&la));
            EXPECT_EQ(contents(moved), contents(a));
            EXPECT_TRUE(other.empty());
        }
        EXPECT_EQ(la.bytes, 0u);
        EXPECT_EQ(lb.bytes, 0u);
    }
};

TEST(Allocators, PropagateOnCopyAssignment) {
    propagation<true, true, true>::copy_assignment();
    propagation<false, true, true>::copy_assignment();
}
TEST(Allocators, PropagateOnMoveAssignment) {
    propagation<true, true, true>::move_assignment();
    propagation<true, false, true>::move_assignment();
}
TEST(Allocators, PropagateOnSwap) {
    propagation<true, true, true>::swap();
    propagation<true, true, false>::swap();
}
TEST(Allocators, AllocatorExtendedConstructors) {
    propagation<true, true, true>::constructors();
    propagation<false, false, false>::constructors();
}

}  // namespace

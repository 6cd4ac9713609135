// When a growth's evacuation ends, the map hands a big old bucket array back
// to the OS through the arena allocator, a piece per insert (shrink_release), the
// last piece with deallocate_release: its pages leave the resident set within
// an insert per 120 KiB of it instead of after the allocator's decay period (600 s
// in this test's process, see CMakeLists.txt), and no single insert pays for
// the whole array.

#include <spanmap/alloc.h>
#include <spanmap/map.h>

#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace {

// Resident bytes of the whole OS pages inside [begin, end).
std::size_t resident(std::uintptr_t begin, std::uintptr_t end) {
    const auto os_page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    begin = (begin + os_page - 1) & ~(os_page - 1);
    end &= ~(os_page - 1);
    if (end <= begin) return 0;
    std::vector<unsigned char> vec((end - begin) / os_page);
    if (::mincore(reinterpret_cast<void*>(begin), end - begin, vec.data()) != 0) return end - begin;
    std::size_t r = 0;
    for (unsigned char v : vec) r += (v & 1) * os_page;
    return r;
}

// Inserts new keys until the growth in progress ends, and not one more: an
// insert evacuates at most two old buckets, so a quarter of the buckets left
// as inserts cannot overshoot, and stats() (a walk of the map) is asked a few
// dozen times, not once per insert.
template <class Map>
void insert_until_evacuated(Map& m, std::uint64_t& k) {
    for (spanmap::map_stats s = m.stats(); s.growing; s = m.stats()) {
        const std::size_t left = s.old_bucket_count - s.old_buckets_evacuated;
        for (std::size_t i = 0, n = std::max<std::size_t>(1, left / 4); i < n; ++i) m.emplace(k, k), ++k;
    }
}

TEST(MapRelease, OldArrayLeavesTheResidentSetWhenEvacuationEnds) {
    spanmap::map<std::uint64_t, std::uint64_t> m;
    std::uint64_t k = 0;
    // Up to the growth from 2^15 to 2^16 buckets: the old array, 4.5 MiB of
    // buckets, is large (pages of its own) and fully written.
    while (m.bucket_count() < (std::size_t{1} << 16)) m.emplace(k, k), ++k;
    const spanmap::map_stats during = m.stats();
    ASSERT_TRUE(during.growing);
    const auto old = during.old_buckets;
    ASSERT_GT(old.end - old.begin, std::size_t{1} << 20);
    EXPECT_GT(resident(old.begin, old.end), (old.end - old.begin) / 2) << "the old array is in use while growing";
    insert_until_evacuated(m, k);
    // Evacuation is over; the array is given back a piece per new key, tail
    // first, and what stats() calls retiring is what is still resident.
    spanmap::map_stats s = m.stats();
    ASSERT_GT(s.retiring_bytes, 0u) << "a 4.5 MiB array should retire a piece at a time";
    ASSERT_LE(s.retiring_bytes, old.end - old.begin);
    std::size_t inserts = 0;
    while (s.retiring_bytes != 0) {
        const std::size_t before = s.retiring_bytes;
        m.emplace(k, k), ++k, ++inserts;
        s = m.stats();
        ASSERT_LT(s.retiring_bytes, before) << "an insert of a new key gave back nothing";
        // Nothing past the part still retiring is resident (a page shared with
        // the part still in the array may be).
        EXPECT_LE(resident(old.begin, old.end), s.retiring_bytes + 2 * 8192);
    }
    EXPECT_GT(inserts, 1u) << "the whole array went back in one insert";
    EXPECT_EQ(resident(old.begin, old.end), 0u) << "the evacuated array stayed resident";
    // Nothing was lost on the way.
    for (std::uint64_t i = 0; i < k; ++i) {
        auto it = m.find(i);
        ASSERT_NE(it, m.end()) << i;
        EXPECT_EQ(it->second, i);
    }
}

// Only inserts of new keys give pieces back; lookups, updates and erases
// while an array retires see every key, and a map destroyed, cleared or
// grown again mid-retirement frees what is left (ASan and the arena's
// checks see a leak or a double free otherwise).
TEST(MapRelease, RetiringArrayOutlivesOtherOperations) {
    for (int ending = 0; ending < 3; ++ending) {
        spanmap::map<std::uint64_t, std::uint64_t> m;
        std::uint64_t k = 0;
        while (m.bucket_count() < (std::size_t{1} << 16)) m.emplace(k, k), ++k;
        insert_until_evacuated(m, k);
        const std::size_t retiring = m.stats().retiring_bytes;
        ASSERT_GT(retiring, 0u);
        for (std::uint64_t i = 0; i < k; i += 7) ASSERT_EQ(m.at(i), i);
        for (std::uint64_t i = 0; i < k; i += 5) m[i] = i + 1;  // existing keys
        for (std::uint64_t i = 1; i < k; i += 10) ASSERT_EQ(m.erase(i), 1u);
        EXPECT_EQ(m.stats().retiring_bytes, retiring) << "only an insert of a new key retires a piece";
        EXPECT_TRUE(m.check_invariants());
        for (std::uint64_t i = 0; i < k; ++i) {
            const auto it = m.find(i);
            if (i % 10 == 1) {
                ASSERT_EQ(it, m.end()) << i;
            } else {
                ASSERT_NE(it, m.end()) << i;
                ASSERT_EQ(it->second, i % 5 == 0 ? i + 1 : i) << i;
            }
        }
        if (ending == 1) {
            m.clear();
            EXPECT_EQ(m.stats().retiring_bytes, 0u);
            m.emplace(1, 1);
            EXPECT_EQ(m.at(1), 1u);
        } else if (ending == 2) {
            m.rehash(std::size_t{1} << 20);  // a growth starts while one array retires
            EXPECT_EQ(m.stats().retiring_bytes, 0u);
            EXPECT_TRUE(m.check_invariants());
            EXPECT_EQ(m.at(0), 1u);
        }
    }  // ending 0: destroyed mid-retirement
}

// Below detail::release_min_bytes the old array is freed as usual: the arena
// keeps it, still resident, for the next request of its size, which is what
// the next map to grow through that size asks for.
TEST(MapRelease, SmallOldArrayStaysForReuse) {
    using map_type = spanmap::map<std::uint64_t, std::uint64_t>;
    map_type m;
    std::uint64_t k = 0;
    // The growth from 2^9 to 2^10 buckets: the old array, 72 KiB of buckets
    // and its overflow tail, is large (pages of its own) and far below 4 MiB.
    while (m.bucket_count() < (std::size_t{1} << 10)) m.emplace(k, k), ++k;
    const spanmap::map_stats during = m.stats();
    ASSERT_TRUE(during.growing);
    const auto old = during.old_buckets;
    ASSERT_GT(old.end - old.begin, std::size_t{32} << 10);
    ASSERT_LT(old.end - old.begin, spanmap::detail::release_min_bytes);
    do {
        for (int i = 0; i < 64; ++i) m.emplace(k, k), ++k;
    } while (m.stats().growing);
    EXPECT_GT(resident(old.begin, old.end), (old.end - old.begin) / 2) << "a small old array was released";
    // A second map growing through the same sizes gets the array back.
    map_type m2;
    std::uint64_t k2 = 0;
    while (m2.bucket_count() < (std::size_t{1} << 9)) m2.emplace(k2, k2), ++k2;
    EXPECT_EQ(m2.stats().buckets.begin, old.begin) << "the second map's array of 2^9 buckets is not the first map's old one";
    for (std::uint64_t i = 0; i < k; ++i) ASSERT_EQ(m.at(i), i);
    for (std::uint64_t i = 0; i < k2; ++i) ASSERT_EQ(m2.at(i), i);
}

}  // namespace

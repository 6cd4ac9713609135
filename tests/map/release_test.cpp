// When a growth's evacuation ends, the map hands a big old bucket array back
// to the OS through the arena allocator (deallocate_release; from 32 MiB on a
// piece per insert, with shrink_release, so that no single insert pays for
// the whole array): its pages leave the resident set at once, or within an
// insert per 120 KiB of it, instead of after the allocator's decay period
// (600 s in this test's process, see CMakeLists.txt).

#include <spanmap/alloc.h>
#include <spanmap/map.h>

#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
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
// insert evacuates at most 1 + evacuations_per_write old buckets, so half the
// buckets left over that many, as inserts, cannot overshoot, and stats() (a
// walk of the map) is asked a few dozen times, not once per insert.
template <class Map, class Value = std::uint64_t (*)(std::uint64_t)>
void insert_until_evacuated(Map& m, std::uint64_t& k, Value value = [](std::uint64_t x) { return x; }) {
    for (spanmap::map_stats s = m.stats(); s.growing; s = m.stats()) {
        const std::size_t left = s.old_bucket_count - s.old_buckets_evacuated;
        const std::size_t n = std::max<std::size_t>(1, left / (2 * (1 + spanmap::detail::evacuations_per_write)));
        for (std::size_t i = 0; i < n; ++i) m.emplace(k, value(k)), ++k;
    }
}

// Below detail::release_min_bytes the old array is freed as usual: the arena
// keeps it, still resident, for the next request of its size, which is what
// the next map to grow through that size asks for. First in the file: it
// reads the arena's reuse order, which the frees of the tests after it would
// change when the binary runs whole (ctest runs each test in a process of
// its own).
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
    ASSERT_LT(old.end - old.begin, spanmap::detail::retire_min_bytes);
    EXPECT_GT(resident(old.begin, old.end), (old.end - old.begin) / 2) << "the old array is in use while growing";
    insert_until_evacuated(m, k);
    // Below detail::retire_min_bytes, in one go.
    EXPECT_EQ(m.stats().retiring_bytes, 0u);
    EXPECT_EQ(resident(old.begin, old.end), 0u) << "the evacuated array stayed resident";
    // Nothing was lost on the way.
    for (std::uint64_t i = 0; i < k; ++i) {
        auto it = m.find(i);
        ASSERT_NE(it, m.end()) << i;
        EXPECT_EQ(it->second, i);
    }
}

// Values of 128 bytes (the most a bucket holds in place): an old array of
// detail::retire_min_bytes comes after some 200k entries, not millions.
using wide = std::array<unsigned char, 128>;
using wide_map = spanmap::map<std::uint64_t, wide>;
wide wide_of(std::uint64_t k) {
    wide v{};
    std::memcpy(v.data(), &k, sizeof k);
    v.back() = static_cast<unsigned char>(k * 7);
    return v;
}

// Inserts until a growth from an array of at least retire_min_bytes is under
// way; returns the old array.
spanmap::map_stats::address_range grow_past_retire_size(wide_map& m, std::uint64_t& k) {
    m.emplace(k, wide_of(k)), ++k;
    const std::size_t bucket_bytes = m.stats().bucket_bytes;
    std::size_t target = 1;
    while ((target / 2) * bucket_bytes < spanmap::detail::retire_min_bytes) target *= 2;
    while (m.bucket_count() < target) m.emplace(k, wide_of(k)), ++k;
    return m.stats().old_buckets;
}

// From retire_min_bytes on, the old array goes back a piece per insert of a
// new key, from its tail, and what stats() calls retiring is what is still
// resident; no single insert gives back the whole array.
TEST(MapRelease, BigOldArrayRetiresAPiecePerInsert) {
    wide_map m;
    std::uint64_t k = 0;
    const auto old = grow_past_retire_size(m, k);
    ASSERT_GE(old.end - old.begin, spanmap::detail::retire_min_bytes);
    insert_until_evacuated(m, k, wide_of);
    spanmap::map_stats s = m.stats();
    ASSERT_GT(s.retiring_bytes, 0u) << "a big old array should retire a piece at a time";
    ASSERT_LE(s.retiring_bytes, old.end - old.begin);
    std::size_t inserts = 0;
    while (s.retiring_bytes != 0) {
        const std::size_t before = s.retiring_bytes;
        m.emplace(k, wide_of(k)), ++k, ++inserts;
        s = m.stats();
        ASSERT_LT(s.retiring_bytes, before) << "an insert of a new key gave back nothing";
        ASSERT_GE(before - s.retiring_bytes, s.retiring_bytes == 0 ? 1 : spanmap::detail::retire_piece_bytes / 2);
        // Nothing past the part still retiring is resident (the page it ends
        // in may be).
        ASSERT_LE(resident(old.begin, old.end), s.retiring_bytes + 8192) << "after " << inserts << " inserts";
    }
    EXPECT_GT(inserts, (old.end - old.begin) / spanmap::detail::retire_piece_bytes - 1);
    EXPECT_EQ(resident(old.begin, old.end), 0u) << "the evacuated array stayed resident";
    EXPECT_TRUE(m.check_invariants());
    for (std::uint64_t i = 0; i < k; ++i) {
        auto it = m.find(i);
        ASSERT_NE(it, m.end()) << i;
        ASSERT_EQ(it->second, wide_of(i)) << i;
    }
}

// Only inserts of new keys give pieces back; lookups, updates and erases
// while an array retires see every key, and a map destroyed, cleared or
// grown again mid-retirement frees what is left (ASan and the arena's
// checks see a leak or a double free otherwise).
TEST(MapRelease, RetiringArrayOutlivesOtherOperations) {
    for (int ending = 0; ending < 3; ++ending) {
        wide_map m;
        std::uint64_t k = 0;
        grow_past_retire_size(m, k);
        insert_until_evacuated(m, k, wide_of);
        const std::size_t retiring = m.stats().retiring_bytes;
        ASSERT_GT(retiring, 0u);
        for (std::uint64_t i = 0; i < k; i += 7) ASSERT_EQ(m.at(i), wide_of(i));
        for (std::uint64_t i = 0; i < k; i += 5) m[i] = wide_of(i + 1);  // existing keys
        for (std::uint64_t i = 1; i < k; i += 10) ASSERT_EQ(m.erase(i), 1u);
        EXPECT_EQ(m.stats().retiring_bytes, retiring) << "only an insert of a new key retires a piece";
        EXPECT_TRUE(m.check_invariants());
        for (std::uint64_t i = 0; i < k; ++i) {
            const auto it = m.find(i);
            if (i % 10 == 1) {
                ASSERT_EQ(it, m.end()) << i;
            } else {
                ASSERT_NE(it, m.end()) << i;
                ASSERT_EQ(it->second, wide_of(i % 5 == 0 ? i + 1 : i)) << i;
            }
        }
        if (ending == 1) {
            m.clear();
            EXPECT_EQ(m.stats().retiring_bytes, 0u);
            m.emplace(1, wide_of(1));
            EXPECT_EQ(m.at(1), wide_of(1));
        } else if (ending == 2) {
            m.rehash(m.bucket_count() * 2);  // a growth starts while one array retires
            EXPECT_EQ(m.stats().retiring_bytes, 0u);
            EXPECT_TRUE(m.check_invariants());
            EXPECT_EQ(m.at(0), wide_of(1));
        }
    }  // ending 0: destroyed mid-retirement
}

}  // namespace

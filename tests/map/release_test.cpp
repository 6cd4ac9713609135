// When a growth's evacuation ends, the map hands its old bucket array back
// through the arena allocator's deallocate_release, and the array's pages
// leave the resident set at once instead of after the allocator's decay
// period (600 s in this test's process, see CMakeLists.txt).

#include <spanmap/alloc.h>
#include <spanmap/map.h>

#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

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
    // Inserts evacuate the old array a bucket or two at a time; stats() walks
    // the map, so it is asked once per 256 of them.
    do {
        for (int i = 0; i < 256; ++i) m.emplace(k, k), ++k;
    } while (m.stats().growing);
    EXPECT_EQ(resident(old.begin, old.end), 0u) << "the evacuated array stayed resident";
    // Nothing was lost on the way.
    for (std::uint64_t i = 0; i < k; ++i) {
        auto it = m.find(i);
        ASSERT_NE(it, m.end()) << i;
        EXPECT_EQ(it->second, i);
    }
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

// Misuse that the map reports instead of corrupting memory silently. This
// binary is built with SPANMAP_MAP_GENERATIONS=1 (generation checks on, as in
// debug builds); the AddressSanitizer tests run only in ASan builds.

#include <spanmap/map.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace {

static_assert(SPANMAP_MAP_GENERATIONS, "this test is built with generation checks on");

using u64 = std::uint64_t;

void iterator_after_growth() {
    spanmap::map<int, int> m;
    for (int i = 0; i < 8; ++i) m[i] = i;
    auto it = m.find(3);
    for (int i = 8; i < 1000; ++i) m[i] = i;  // several growths: entries move
    std::printf("%d\n", it->second);
}

void iterator_after_clear() {
    spanmap::map<std::string, int> m{{"a", 1}, {"b", 2}};
    auto it = m.begin();
    m.clear();
    ++it;
}

TEST(MapGenerations, IteratorUsedAfterAGrowthStopsTheProcess) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(iterator_after_growth(), "iterator used after the map moved its entries");
    EXPECT_DEATH(iterator_after_clear(), "iterator used after the map moved its entries");
}

TEST(MapGenerations, IteratorsSurviveWhatMovesNothing) {
    spanmap::map<int, int> m;
    for (int i = 0; i < 100; ++i) m[i] = i;
    auto it = m.find(42);
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(m.contains(i));  // lookups
    m.erase(m.find(7));                                          // erase(iterator) moves nothing else
    m[42] = 4200;                                                // an existing key: no growth
    EXPECT_EQ(it->second, 4200);
    int visited = 0;
    for (auto i = m.begin(); i != m.end();) i = (i->first % 2) ? m.erase(i) : (++visited, std::next(i));
    EXPECT_EQ(visited, 50);
    EXPECT_EQ(it->first, 42);
}

#if defined(SPANMAP_MAP_ASAN)
void reference_across_growth() {
    spanmap::map<u64, u64> g;
    for (u64 k = 0; k < 6656; ++k) g[k] = k;  // 2^10 buckets at 6.5: the next new key grows
    auto& a = g[1];
    const u64* before = &a;
    auto& b = g[u64{1} << 20];  // starts the growth
    for (u64 k = (u64{1} << 20) + 1; &g.find(1)->second == before; ++k) g[k] = k;  // until a's entry moves
    a = 1;  // a dangles
    b = 2;
}

void reference_after_erase() {
    spanmap::map<int, std::uint64_t> m;
    for (int i = 0; i < 20; ++i) m[i] = 1;
    auto& r = m[5];
    m.erase(5);
    r = 7;
}

TEST(MapAsan, ReferenceHeldAcrossAGrowthIsReported) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(reference_across_growth(), "AddressSanitizer");
}

TEST(MapAsan, ReferenceToAnErasedEntryIsReported) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(reference_after_erase(), "AddressSanitizer");
}

TEST(MapAsan, LiveEntriesStayReachable) {
    // Poisoning must never cover a live slot: fill, grow, erase and refill,
    // then read every entry (a false report would stop this test).
    spanmap::map<std::uint16_t, std::uint16_t> small;  // 4-byte slots: two per ASan granule
    for (std::uint16_t k = 0; k < 5000; ++k) small[k] = k;
    for (std::uint16_t k = 0; k < 5000; k += 3) small.erase(k);
    for (std::uint16_t k = 0; k < 5000; ++k) small[k] = static_cast<std::uint16_t>(k + 1);
    u64 sum = 0;
    for (const auto& [k, v] : small) sum += v;
    EXPECT_EQ(sum, 5000u * 5001u / 2);
}
#endif

}  // namespace

// When the heap grows while it holds free pages that still have memory, it
// has as many of them released at once, whatever their age (Go's mheap.grow):
// a program whose heap keeps growing does not also keep its freed
// generations resident for the decay period. Run with a decay period far
// longer than the test (SPANMAP_CONF=decay_ms:600000, see CMakeLists.txt), so
// that only the growth can have released them.

#include "conf.h"
#include "heap.h"
#include "cache.h"
#include "test_util.h"

#include <spanmap/spanmap.h>

#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace {

using namespace spanmap::test;
using spanmap::detail::g;

// Resident bytes of [p, p + n), p page-aligned.
std::size_t resident(const void* p, std::size_t n) {
    const auto os_page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    std::vector<unsigned char> vec((n + os_page - 1) / os_page);
    if (::mincore(const_cast<void*>(p), n, vec.data()) != 0) return n;
    std::size_t r = 0;
    for (unsigned char v : vec) r += (v & 1) * os_page;
    return r;
}

TEST(GrowRelease, GrowthReleasesFreedPagesBeforeTheDecay) {
    spanmap_free(spanmap_malloc(1));  // the configuration is read at start-up
    ASSERT_GE(spanmap::detail::conf.decay_ms, 60000u) << "run with SPANMAP_CONF=decay_ms:600000";
    // 32 MiB, touched, then freed: free pages with memory. The pin after it
    // keeps the hole it leaves too small for the growth below.
    constexpr std::size_t old_bytes = std::size_t{32} << 20;
    void* old = spanmap_malloc(old_bytes);
    ASSERT_NE(old, nullptr);
    void* pin = spanmap_malloc(64 << 10);
    std::memset(old, 1, old_bytes);
    spanmap_free(old);
    ASSERT_EQ(resident(old, old_bytes), old_bytes) << "the freed pages keep their memory until released";
    // A small allocation's slow path starts the scavenger (over 1 MiB freed).
    for (int i = 0; i < 1000; ++i) spanmap_free(spanmap_malloc(40000));
    const std::size_t reserved_before = g.heap.pages_reserved();
    // Larger than any free run: the heap must grow.
    void* big = spanmap_malloc(std::size_t{96} << 20);
    ASSERT_NE(big, nullptr);
    EXPECT_GT(g.heap.pages_reserved(), reserved_before);
    // The scavenger thread does it; give it up to 10 s on a loaded machine
    // (the decay would take 600).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::size_t left = resident(old, old_bytes);
    while (left > old_bytes / 2 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        left = resident(old, old_bytes);
    }
    EXPECT_LE(left, old_bytes / 2) << "the freed block's pages stayed resident after the heap grew";
    spanmap_free(big);
    spanmap_free(pin);
}

// spanmap_free_release gives a large block's pages back at once, not to the
// large cache, and the heap knows them for released pages: they count as
// released, and come back zeroed without a memset.
TEST(GrowRelease, FreeReleaseReturnsALargeBlocksPagesAtOnce) {
    spanmap_free(spanmap_malloc(1));
    ASSERT_GE(spanmap::detail::conf.decay_ms, 60000u) << "run with SPANMAP_CONF=decay_ms:600000";
    ASSERT_FALSE(spanmap::detail::conf.madv_free) << "MADV_FREE leaves pages resident until the kernel wants them";
    constexpr std::size_t bytes = std::size_t{4} << 20;
    auto* p = static_cast<unsigned char*>(spanmap_malloc(bytes));
    ASSERT_NE(p, nullptr);
    std::memset(p, 0xab, bytes);
    ASSERT_EQ(resident(p, bytes), bytes);
    const std::size_t cached_before = g.large.spans();
    const std::size_t released_before = g.heap.pages_released();
    spanmap_free_release(p);
    EXPECT_EQ(resident(p, bytes), 0u);
    EXPECT_EQ(g.large.spans(), cached_before) << "the block went to the large cache";
    EXPECT_GE(g.heap.pages_released(), released_before + bytes / spanmap::detail::page_size);
    // The same pages again, zeroed: calloc trusts the released state.
    auto* q = static_cast<unsigned char*>(spanmap_calloc(1, bytes));
    ASSERT_NE(q, nullptr);
    std::size_t nonzero = 0;
    for (std::size_t i = 0; i < bytes; ++i) nonzero += q[i] != 0;
    EXPECT_EQ(nonzero, 0u);
    spanmap_free(q);
    spanmap_free_release(nullptr);
}

// A small object goes back as by free: its span's other objects are live.
TEST(GrowRelease, FreeReleaseOfASmallObjectIsAFree) {
    void* p = spanmap_malloc(100);
    ASSERT_NE(p, nullptr);
    spanmap_free_release(p);
    void* q = spanmap_malloc(100);  // the bin is a stack: the same object again
    EXPECT_EQ(q, p);
    spanmap_free(q);
}

// spanmap_shrink_release cuts a live large block in place: the pages past
// the new size leave the resident set at once and are free, released pages
// of the heap; the block keeps its address and its first bytes, and is freed
// as usual afterwards.
TEST(GrowRelease, ShrinkReleaseGivesBackALiveBlocksTail) {
    spanmap_free(spanmap_malloc(1));
    ASSERT_FALSE(spanmap::detail::conf.madv_free) << "MADV_FREE leaves pages resident until the kernel wants them";
    constexpr std::size_t bytes = std::size_t{1} << 20;
    constexpr std::size_t page = spanmap::detail::page_size;
    auto* p = static_cast<unsigned char*>(spanmap_malloc(bytes));
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(reinterpret_cast<std::uintptr_t>(p) % page, 0u) << "a large block starts on a heap page";
    ASSERT_EQ(spanmap_usable_size(p), bytes);
    std::memset(p, 0xab, bytes);
    const std::size_t released_before = g.heap.pages_released();
    // 3 pages and a bit: 4 pages stay, the rest goes.
    spanmap_shrink_release(p, 3 * page + 100);
    EXPECT_EQ(spanmap_usable_size(p), 4 * page);
    EXPECT_EQ(resident(p + 4 * page, bytes - 4 * page), 0u) << "the cut pages stayed resident";
    EXPECT_EQ(resident(p, 4 * page), 4 * page);
    EXPECT_GE(g.heap.pages_released(), released_before + (bytes - 4 * page) / page);
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < 4 * page; ++i) wrong += p[i] != 0xab;
    EXPECT_EQ(wrong, 0u);
    // Cutting to its own size, or to more, changes nothing.
    spanmap_shrink_release(p, 4 * page);
    EXPECT_EQ(spanmap_usable_size(p), 4 * page);
    spanmap_free(p);
    // A small object shares its pages with others: nothing happens to them.
    auto* small = static_cast<unsigned char*>(spanmap_malloc(4096));
    ASSERT_NE(small, nullptr);
    std::memset(small, 0x5a, 4096);
    spanmap_shrink_release(small, 16);
    EXPECT_EQ(spanmap_usable_size(small), 4096u);
    EXPECT_EQ(small[4095], 0x5a);
    spanmap_free(small);
    spanmap_shrink_release(nullptr, 0);  // as free(NULL): nothing
}

}  // namespace

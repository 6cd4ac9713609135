// Requests the machine cannot back fail at once with ENOMEM and leave nothing
// behind; a giant request that is accepted and freed leaves the heap's
// bookkeeping where it was.
#include "heap.h"

#include <spanmap/alloc.h>
#include <spanmap/spanmap.h>

#include <gtest/gtest.h>
#include <sys/sysinfo.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

namespace {

constexpr std::uint64_t GiB = std::uint64_t{1} << 30;

// The process's resident set, from /proc/self/status.
std::uint64_t rss_bytes() {
    std::ifstream in("/proc/self/status");
    std::string key;
    while (in >> key) {
        if (key == "VmRSS:") {
            std::uint64_t kb = 0;
            in >> kb;
            return kb << 10;
        }
        in.ignore(1 << 20, '\n');
    }
    ADD_FAILURE() << "no VmRSS in /proc/self/status";
    return 0;
}

int overcommit_policy() {
    std::ifstream in("/proc/sys/vm/overcommit_memory");
    int v = -1;
    in >> v;
    return v;
}

std::uint64_t ram_and_swap() {
    struct sysinfo si{};
    if (::sysinfo(&si) != 0) return 0;
    return (std::uint64_t{si.totalram} + si.totalswap) * (si.mem_unit != 0 ? si.mem_unit : 1);
}

TEST(Giant, TwoTebibytesFailAtOnceLeavingNothingResident) {
    if (overcommit_policy() == 1) GTEST_SKIP() << "overcommit_memory = 1: the kernel promises anything";
    void* warm = spanmap_malloc(64);  // the heap's start-up is not the request's cost
    const std::uint64_t before = rss_bytes();
    errno = 0;
    const auto t0 = std::chrono::steady_clock::now();
    void* p = spanmap_malloc(std::size_t{2} << 40);
    const int err = errno;
    const auto t1 = std::chrono::steady_clock::now();
    EXPECT_EQ(p, nullptr);
    EXPECT_EQ(err, ENOMEM);
    const std::uint64_t after = rss_bytes();
    EXPECT_LT(after, std::uint64_t{64} << 20);
    EXPECT_LT(after, before + (1 << 20)) << "the refusal left memory behind";
    std::printf("malloc(2 TiB) refused in %.1f us; RSS %llu -> %llu KiB\n",
                std::chrono::duration<double, std::micro>(t1 - t0).count(),
                static_cast<unsigned long long>(before >> 10), static_cast<unsigned long long>(after >> 10));
    spanmap_free(warm);
}

TEST(Giant, MoreThanRamAndSwapIsRefused) {
    const int policy = overcommit_policy();
    if (policy == 1) GTEST_SKIP() << "overcommit_memory = 1: the kernel promises anything";
    const std::uint64_t total = ram_and_swap();
    if (total == 0 || total >= 64 * GiB) GTEST_SKIP() << "this machine has 64 GiB of RAM and swap or more";
    errno = 0;
    void* p = spanmap_malloc(64 * GiB);
    EXPECT_EQ(p, nullptr);
    EXPECT_EQ(errno, ENOMEM);
    // Just above the kernel's bound too, where the address space is no issue.
    if (policy == 0) {
        errno = 0;
        EXPECT_EQ(spanmap_malloc(total + GiB), nullptr);
        EXPECT_EQ(errno, ENOMEM);
    }
}

TEST(Giant, AcceptedAndFreedLeavesTheBookkeepingBehind) {
#if defined(__SANITIZE_ADDRESS__)
    GTEST_SKIP() << "AddressSanitizer writes the shadow of every byte the heap poisons: an eighth of the block";
#elif defined(__SANITIZE_THREAD__)
    GTEST_SKIP() << "ThreadSanitizer keeps a shadow of every page-map entry the heap wrote, resident after the "
                    "entries go back";
#endif
    const std::uint64_t total = ram_and_swap();
    // As big as the kernel accepts with room to spare, never touched: its
    // pages cost nothing; the page map's entries for it would cost 13 bytes
    // per 8 KiB page.
    std::size_t bytes = static_cast<std::size_t>(total / 2) & ~(GiB - 1);
    if (bytes > 64 * GiB) bytes = 64 * GiB;
    if (bytes < 2 * GiB) GTEST_SKIP() << "too little memory for a giant request";
    void* warm = spanmap_malloc(64);
    const std::uint64_t before = rss_bytes();
    void* p = spanmap_malloc(bytes);
    ASSERT_NE(p, nullptr);
    const std::uint64_t during = rss_bytes();
    spanmap_free(p);
    const std::uint64_t after = rss_bytes();
    const std::uint64_t page_map = bytes / spanmap::detail::page_size * 13;
    std::printf("malloc(%zu GiB): RSS %llu KiB before, %llu during, %llu after free (page map %llu KiB)\n",
                bytes >> 30, static_cast<unsigned long long>(before >> 10), static_cast<unsigned long long>(during >> 10),
                static_cast<unsigned long long>(after >> 10), static_cast<unsigned long long>(page_map >> 10));
    // The page map names a large span at its first page only (heap.h): the
    // block's entries never cost memory at all.
    EXPECT_LT(during, before + page_map / 4) << "the live object's page map is resident";
    EXPECT_LT(after, before + page_map / 4) << "the freed object's page map stayed resident";
    char why[256];
    EXPECT_TRUE(spanmap::debug::check_invariants(why, sizeof why)) << why;
    spanmap_free(warm);
}

}  // namespace

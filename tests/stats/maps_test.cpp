// inspect_mappings(): every arena appears in /proc/self/maps (read here
// independently, with the standard library), naming is tried and its outcome
// reported truthfully, and the resident memory attributed to the arenas adds
// up — per arena, across arenas, and against smaps' own Rss.
#include "stats_test_util.h"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

namespace {

using namespace spanmap::test;

struct maps_line {
    std::uintptr_t start, end;
    std::string perms, name;
};

std::vector<maps_line> read_maps() {
    std::vector<maps_line> out;
    std::ifstream in("/proc/self/maps");
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream s(line);
        std::string range, perms, offset, dev, inode;
        s >> range >> perms >> offset >> dev >> inode;
        std::string name;
        std::getline(s >> std::ws, name);
        const auto dash = range.find('-');
        out.push_back({std::stoull(range.substr(0, dash), nullptr, 16), std::stoull(range.substr(dash + 1), nullptr, 16),
                       perms, name});
    }
    return out;
}

// Does this kernel name anonymous mappings? Asked directly, on a mapping of our own.
int kernel_naming_errno() {
    const std::size_t len = 4 * 4096;
    void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return -1;
    const int rc = prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, reinterpret_cast<unsigned long>(p), len,
                         reinterpret_cast<unsigned long>("spanmap test"));
    const int err = rc == 0 ? 0 : errno;
    munmap(p, len);
    return err;
}

// Residency of [base, base + len), asked here independently of the library.
std::uint64_t resident_bytes(std::uintptr_t base, std::size_t len) {
    const auto os_page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    std::vector<unsigned char> vec(len / os_page);
    if (mincore(reinterpret_cast<void*>(base), len, vec.data()) != 0) return 0;
    std::uint64_t n = 0;
    for (unsigned char v : vec) n += (v & 1) ? os_page : 0;
    return n;
}

std::unique_ptr<spanmap::mapping_report> inspect() {
    auto r = std::make_unique<spanmap::mapping_report>();
    *r = spanmap::inspect_mappings();
    return r;
}

TEST(stats_maps, EveryArenaAppearsInProcSelfMaps) {
    // Two arenas at least: a large object of more than one arena's size.
    void* small = spanmap::allocate(64, 8);
    void* huge = spanmap::allocate(80u << 20, 8);
    const auto rep = inspect();
    ASSERT_TRUE(rep->ok);
    const spanmap::mem_stats m = spanmap::read_mem_stats();
    ASSERT_GE(rep->narenas, 2u);
    EXPECT_EQ(rep->narenas, m.arenas);
    EXPECT_FALSE(rep->truncated);

    const std::vector<maps_line> maps = read_maps();
    for (std::size_t i = 0; i < rep->narenas; ++i) {
        const spanmap::arena_mapping& a = rep->arenas[i];
        SCOPED_TRACE("arena " + std::to_string(i));
        EXPECT_LE(a.end - a.base, kArena);
        EXPECT_EQ((a.end - a.base) % kPage, 0u);
        EXPECT_EQ(a.base % kArena, 0u);
        if (i > 0) {
            EXPECT_GT(a.base, rep->arenas[i - 1].base);
        }
        // The independent reading covers the arena without a gap.
        std::uintptr_t pos = a.base;
        for (const maps_line& l : maps) {
            if (l.end <= a.base || l.start >= a.end) continue;
            EXPECT_LE(l.start, pos) << "a gap in /proc/self/maps over the arena";
            if (l.end > pos) pos = l.end;
            EXPECT_EQ(l.perms, "rw-p");
        }
        EXPECT_GE(pos, a.end);
        EXPECT_TRUE(a.covered);
        ASSERT_GE(a.nlines, 1u);
        // The report's lines over the arena are /proc's lines.
        for (std::uint32_t k = a.first_line; k < a.first_line + a.nlines; ++k) {
            const spanmap::mapping_line& l = rep->lines[k];
            bool found = false;
            for (const maps_line& ml : maps)
                found |= ml.start == l.start && ml.end == l.end && ml.name == l.name && ml.perms == l.perms;
            EXPECT_TRUE(found) << std::hex << l.start << "-" << l.end << " " << l.name;
            if (rep->has_figures) {
                EXPECT_EQ(l.size, l.end - l.start);
            }
        }
    }
    // The heap's figures beside the mappings are the snapshot's.
    EXPECT_EQ(rep->heap_sys, m.heap_sys);
    EXPECT_EQ(rep->heap_inuse, m.heap_inuse);
    EXPECT_EQ(rep->heap_idle, m.heap_idle);
    EXPECT_EQ(rep->heap_released, m.heap_released);
    spanmap::deallocate(huge, 80u << 20, 8);
    spanmap::deallocate(small, 64, 8);
}

TEST(stats_maps, NamingIsTriedAndItsOutcomeReported) {
    void* p = spanmap::allocate(64, 8);
    const auto rep = inspect();
    ASSERT_TRUE(rep->ok);
    const int kernel = kernel_naming_errno();
    std::printf("naming: %s (errno %d); this kernel, asked directly: %s\n", spanmap::to_string(rep->naming),
                rep->name_errno, kernel == 0 ? "names mappings" : "refuses");
    ASSERT_GE(rep->narenas, 1u);
    if (kernel == 0) {
        EXPECT_EQ(rep->naming, spanmap::naming_outcome::named);
        EXPECT_EQ(rep->name_errno, 0);
    } else if (kernel == EINVAL) {
        EXPECT_EQ(rep->naming, spanmap::naming_outcome::unsupported);
        EXPECT_EQ(rep->name_errno, EINVAL);
    }
    for (std::size_t i = 0; i < rep->narenas && i < spanmap::max_report_arenas; ++i) {
        const spanmap::arena_mapping& a = rep->arenas[i];
        // What the heap recorded is what /proc shows; unnamed arenas are still found by address.
        EXPECT_EQ(a.named, rep->naming == spanmap::naming_outcome::named);
        EXPECT_EQ(a.name_seen, a.named);
        EXPECT_TRUE(a.covered);
        if (a.named) {
            for (std::uint32_t k = a.first_line; k < a.first_line + a.nlines; ++k)
                EXPECT_STREQ(rep->lines[k].name, "[anon:spanmap: heap]");
        }
    }
    EXPECT_STRNE(spanmap::to_string(rep->naming), "?");
    spanmap::deallocate(p, 64, 8);
}

TEST(stats_maps, ResidentMemoryAddsUp) {
    // Touch a large object page by page, and leave a freed one resident: one
    // too big for the large cache, so that its pages are idle at once.
    constexpr std::size_t kBytes = 1u << 20;
    constexpr std::size_t kDeadBytes = 6u << 20;
    auto* live = static_cast<unsigned char*>(spanmap::allocate(kBytes, 8));
    for (std::size_t i = 0; i < kBytes; i += 4096) live[i] = 1;
    auto* dead = static_cast<unsigned char*>(spanmap::allocate(kDeadBytes, 8));
    for (std::size_t i = 0; i < kDeadBytes; i += 4096) dead[i] = 1;
    spanmap::deallocate(dead, kDeadBytes, 8);

    // Khugepaged may change residency between two readings; one retry.
    for (int attempt = 0;; ++attempt) {
        const auto rep = inspect();
        ASSERT_TRUE(rep->ok);
        std::uint64_t rss = 0, in_use = 0, idle = 0, independent = 0, pages_in_use = 0;
        for (std::size_t i = 0; i < rep->narenas; ++i) {
            const spanmap::arena_mapping& a = rep->arenas[i];
            EXPECT_EQ(a.rss, a.rss_in_use + a.rss_idle);
            EXPECT_EQ(a.pages_in_use + a.pages_idle, (a.end - a.base) / kPage);
            EXPECT_LE(a.rss_in_use, a.pages_in_use * kPage);
            rss += a.rss;
            in_use += a.rss_in_use;
            idle += a.rss_idle;
            pages_in_use += a.pages_in_use;
            independent += resident_bytes(a.base, a.end - a.base);
        }
        EXPECT_EQ(rss, rep->heap_rss);
        EXPECT_EQ(in_use, rep->heap_rss_in_use);
        EXPECT_EQ(idle, rep->heap_rss_idle);
        EXPECT_EQ(pages_in_use * kPage, rep->heap_inuse);
        EXPECT_GE(rep->heap_rss_in_use, kBytes) << "the touched live object is resident and in use";
        EXPECT_GE(rep->heap_rss_idle, kDeadBytes) << "the freed object's pages stay resident until released";
        const bool exact_lines = rep->has_figures && rep->lines_size == rep->heap_sys;
        if (independent == rss && (!exact_lines || rep->lines_rss == rss)) {
            EXPECT_EQ(independent, rss);
            if (exact_lines) {
                EXPECT_EQ(rep->lines_rss, rep->heap_rss) << "smaps' Rss over the arenas";
            }
            break;
        }
        if (attempt == 1) {
            EXPECT_EQ(independent, rss);
            if (exact_lines) {
                EXPECT_EQ(rep->lines_rss, rep->heap_rss);
            }
            break;
        }
    }
    spanmap::deallocate(live, kBytes, 8);
}

TEST(stats_maps, NamesLinesAreTheArenasWhenNamed) {
    void* p = spanmap::allocate(64, 8);
    const auto rep = inspect();
    if (rep->naming != spanmap::naming_outcome::named) GTEST_SKIP() << "this kernel does not name mappings";
    // Named arenas are mappings of their own: the lines are exactly the arenas.
    EXPECT_EQ(rep->lines_size, rep->heap_sys);
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < rep->nlines; ++i) {
        sum += rep->lines[i].end - rep->lines[i].start;
        EXPECT_STREQ(rep->lines[i].name, "[anon:spanmap: heap]");
    }
    EXPECT_EQ(sum, rep->heap_sys);
    spanmap::deallocate(p, 64, 8);
}

}  // namespace

// inspect_mappings(): the heap's arenas as the kernel sees them — their lines
// in /proc/self/smaps (or /proc/self/maps) and their resident pages.
//
// /proc is read through proc.h (no stdio: it would allocate). Which lines
// belong to the heap is decided by address, so it works whether or not the
// arenas took their name.
//
// Residency comes from mincore(), one OS page at a time, because a line may
// hold several adjacent arenas (the kernel merges neighbouring mappings with
// the same name and flags) and smaps cannot split it; the heap's page bitmap
// then says whether each resident page is in a span or idle.
#include "collect.h"
#include "proc.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

namespace spanmap::detail {
namespace {

static_assert(sizeof(mapping_report) < 16 * 1024,
              "inspect_mappings() returns the report on the caller's stack, and print_stats() keeps one on its own");

// --- the heap's address ranges -------------------------------------------------

// Arenas merged into runs of adjacent ones; lines are matched against these.
struct heap_ranges {
    static constexpr std::size_t max = 64;
    std::uintptr_t start[max];
    std::uintptr_t end[max];
    std::size_t n = 0;
    bool truncated = false;

    bool overlaps(std::uintptr_t s, std::uintptr_t e) const {
        for (std::size_t i = 0; i < n; ++i)
            if (s < end[i] && start[i] < e) return true;
        return false;
    }
};

// The ranges, and how many arenas there are (read under the heap's lock).
std::size_t snapshot_ranges(heap_ranges& r) {
    struct sink {
        heap_ranges& ranges;
        std::size_t n;
    } seen{r, 0};
    introspect::for_each_arena(
        [](void* ctx, std::uintptr_t base, std::uint32_t reserved_pages) {
            auto& k = *static_cast<sink*>(ctx);
            heap_ranges& out = k.ranges;
            ++k.n;
            const std::uintptr_t end = base + std::uintptr_t{reserved_pages} * page_size;
            if (out.n > 0 && out.end[out.n - 1] == base) {
                out.end[out.n - 1] = end;
            } else if (out.n < heap_ranges::max) {
                out.start[out.n] = base;
                out.end[out.n] = end;
                ++out.n;
            } else {
                out.truncated = true;
            }
        },
        &seen);
    return seen.n;
}

void add_line(mapping_report& rep, const mapping_line& line) {
    rep.lines_size += line.size;
    rep.lines_rss += line.rss;
    rep.lines_private_dirty += line.private_dirty;
    rep.lines_anon_huge_pages += line.anon_huge_pages;
    if (rep.nlines < max_report_lines)
        rep.lines[rep.nlines] = line;
    else
        rep.truncated = true;
    ++rep.nlines;
}

// Reads the lines over the heap from smaps (with figures) or maps (without).
bool read_lines(const char* path, bool smaps, const heap_ranges& ranges, mapping_report& rep) {
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    line_reader in(fd);
    mapping_line cur{};
    bool in_heap = false;
    std::string_view s;
    while (in.next(s)) {
        mapping_line header;
        if (parse_maps_line(s, header)) {
            if (in_heap) add_line(rep, cur);
            in_heap = ranges.overlaps(header.start, header.end);
            cur = header;
            if (!smaps) cur.size = header.end - header.start;
        } else if (in_heap && smaps) {
            parse_smaps_field(s, cur);
        }
    }
    if (in_heap) add_line(rep, cur);
    ::close(fd);
    return true;
}

// --- residency -----------------------------------------------------------------

using arena_copy = introspect::arena_pages_copy;

bool page_free(const arena_copy& a, std::size_t pg) { return (a.free_bits[pg / 64] >> (pg % 64)) & 1; }

// Fills the arena's pages and rss figures; mincore works on OS pages, which
// may be smaller than the heap's 8 KiB page (two per page with 4 KiB) or
// larger (an OS page counts as in use when any heap page under it is).
void measure(const arena_copy& a, arena_mapping& m) {
    for (std::size_t pg = 0; pg < a.reserved_pages; ++pg) {
        if (page_free(a, pg))
            ++m.pages_idle;
        else
            ++m.pages_in_use;
    }
    const auto os_page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    unsigned char vec[4096];
    const std::size_t step = sizeof vec * os_page;
    const std::size_t reserved = std::size_t{a.reserved_pages} * page_size;
    for (std::size_t off = 0; off < reserved; off += step) {
        const std::size_t len = reserved - off < step ? reserved - off : step;
        if (::mincore(reinterpret_cast<void*>(a.base + off), len, vec) != 0) return;
        for (std::size_t i = 0; i < len / os_page; ++i) {
            if (!(vec[i] & 1)) continue;
            const std::size_t at = off + i * os_page;
            bool in_use = false;
            for (std::size_t pg = at / page_size; pg <= (at + os_page - 1) / page_size && !in_use; ++pg)
                in_use = !page_free(a, pg);
            m.rss += os_page;
            (in_use ? m.rss_in_use : m.rss_idle) += os_page;
        }
    }
}

constexpr std::string_view named_line = "[anon:spanmap: heap]";
static_assert(named_line.substr(6, sizeof introspect::arena_vma_name - 1) == std::string_view(introspect::arena_vma_name),
              "the name /proc/self/maps shows is the one the heap gives its arenas");

// Which listed lines lie over the arena, whether they cover it and show its name.
void match_lines(const mapping_report& rep, arena_mapping& m) {
    const std::size_t listed = rep.nlines < max_report_lines ? rep.nlines : max_report_lines;
    std::uintptr_t pos = m.base;  // covered up to here
    bool gap = false;
    bool all_named = true;
    for (std::size_t i = 0; i < listed; ++i) {
        const mapping_line& l = rep.lines[i];
        if (l.end <= m.base || l.start >= m.end) continue;
        if (m.nlines++ == 0) m.first_line = static_cast<std::uint32_t>(i);
        gap |= l.start > pos;
        if (l.end > pos) pos = l.end;
        all_named &= std::string_view(l.name) == named_line;
    }
    m.covered = !gap && pos >= m.end;
    m.name_seen = m.nlines > 0 && all_named;
}

}  // namespace
}  // namespace spanmap::detail

namespace spanmap {

using namespace spanmap::detail;

[[gnu::cold]] mapping_report inspect_mappings() noexcept {
    introspect::ensure_init();
    mapping_report rep{};
    heap_ranges ranges;
    rep.narenas = snapshot_ranges(ranges);
    rep.truncated = ranges.truncated;

    rep.has_figures = read_lines("/proc/self/smaps", true, ranges, rep);
    rep.ok = rep.has_figures || read_lines("/proc/self/maps", false, ranges, rep);

    // Every arena of the ranges, in address order: copy its bitmap under the
    // heap's lock, then ask the kernel about residency without it.
    std::size_t idx = 0;
    for (std::size_t r = 0; r < ranges.n; ++r) {
        for (std::uintptr_t base = ranges.start[r]; base < ranges.end[r]; base += introspect::arena_bytes, ++idx) {
            arena_copy copy;
            if (!introspect::copy_arena(base, copy)) continue;  // the ranges were read from the arena list: not reached
            arena_mapping m{};
            m.base = base;
            m.end = base + std::uintptr_t{copy.reserved_pages} * page_size;
            m.named = copy.named;
            measure(copy, m);
            match_lines(rep, m);
            rep.heap_inuse += m.pages_in_use * page_size;
            rep.heap_idle += m.pages_idle * page_size;
            rep.heap_rss += m.rss;
            rep.heap_rss_in_use += m.rss_in_use;
            rep.heap_rss_idle += m.rss_idle;
            if (idx < max_report_arenas)
                rep.arenas[idx] = m;
            else
                rep.truncated = true;
        }
    }
    const introspect::heap_totals t = introspect::read_heap_totals();
    rep.heap_sys = t.pages_reserved * page_size;
    rep.heap_released = t.pages_released * page_size;
    rep.name_errno = t.name_errno;
    rep.naming = rep.narenas == 0        ? naming_outcome::no_arenas
                 : rep.name_errno == 0   ? naming_outcome::named
                 : rep.name_errno == EINVAL ? naming_outcome::unsupported
                                            : naming_outcome::failed;
    return rep;
}

const char* to_string(naming_outcome n) noexcept {
    switch (n) {
        case naming_outcome::no_arenas: return "no arenas yet";
        case naming_outcome::named: return "named";
        case naming_outcome::unsupported: return "unsupported (EINVAL: kernel without CONFIG_ANON_VMA_NAME)";
        case naming_outcome::failed: return "failed";
    }
    return "?";
}

}  // namespace spanmap

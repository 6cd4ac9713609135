// tour: a spanmap::map grows on the arena, and everything that can be seen
// of it — the map's own statistics during and after evacuation, the old
// bucket array's memory handed out again, the allocator's statistics by size
// class, and the arena as the kernel sees it in /proc/self/maps.
//
// Run it: ./build/examples/tour (SPANMAP_CONF=stats_print:true also prints
// the full report at exit).
#include <spanmap/alloc.h>
#include <spanmap/stats.h>

#include <spanmap/map.h>

#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>

namespace {

void heading(const char* title) { std::printf("\n== %s\n", title); }

// One address as the heap sees it.
void print_location(const char* what, const void* p) {
    const spanmap::location l = spanmap::locate(p);
    std::printf("   %-28s %p: %s", what, p, spanmap::to_string(l.state));
    if (l.span_start != 0) {
        if (l.size_class != 0)
            std::printf(", class %u (%zu B objects), object %zu of span %#" PRIxPTR, l.size_class, l.object_size,
                        l.object_index, l.span_start);
        else
            std::printf(", large object of %zu pages at %#" PRIxPTR, l.pages, l.span_start);
    }
    std::printf("\n");
}

using tour_map = spanmap::map<std::uint64_t, std::uint64_t>;

void print_map_stats(const char* when, const spanmap::map_stats& s) {
    std::printf("   %-9s count %zu, B %u (%zu buckets of %zu B), load %.2f, overflow buckets %zu, longest chain %zu\n",
                when, s.count, unsigned{s.B}, s.bucket_count, s.bucket_bytes, s.load_factor, s.overflow_buckets,
                s.longest_chain);
    std::printf("             arrays %zu B, overflow %zu B; buckets [%#" PRIxPTR ", %#" PRIxPTR ")", s.bucket_array_bytes,
                s.overflow_bytes, s.buckets.begin, s.buckets.end);
    if (s.growing)
        std::printf("; growing from B %u: %zu of %zu old buckets evacuated, old array [%#" PRIxPTR ", %#" PRIxPTR ")",
                    unsigned{s.old_B}, s.old_buckets_evacuated, s.old_bucket_count, s.old_buckets.begin,
                    s.old_buckets.end);
    std::printf("\n");
}

// When the last old bucket is evacuated, the old array goes back to the
// allocator. Asking at once for a block of the same size shows where it went:
// a small array's object is on top of this thread's cache (last in, first
// out), a large array's pages are the lowest free run that fits (first fit).
void show_reuse(const spanmap::map_stats::address_range& old) {
    const auto* p = reinterpret_cast<const void*>(old.begin);
    const std::size_t bytes = old.end - old.begin;
    print_location("old array, just freed:", p);
    void* again = spanmap::allocate(bytes, alignof(std::uint64_t));
    const auto a = reinterpret_cast<std::uintptr_t>(again);
    print_location("allocate(same size):", again);
    std::printf("   %s\n", a == old.begin ? "-> the old array's address, handed out again"
                           : a >= old.begin && a < old.end ? "-> inside the old array's memory"
                                                           : "-> elsewhere (something else took the old memory first)");
    spanmap::deallocate(again, bytes, alignof(std::uint64_t));
}

void grow_a_map(tour_map& m, std::uint64_t n) {
    heading("1. A map grows (Go's classic buckets, incremental evacuation)");
    int growths = 0;
    bool shown_small = false, shown_large = false, shown_halfway = false;
    spanmap::map_stats::address_range old{};
    for (std::uint64_t k = 0; k < n; ++k) {
        const spanmap::map_stats before = m.stats();
        const bool was_growing = before.growing;
        m.try_emplace(k, k * k);
        const spanmap::map_stats s = m.stats();
        if (!was_growing && !s.growing && s.B != before.B) {
            // Up to eight old buckets: the write that starts the growth
            // evacuates them all (up to nine per write), and it is over at once.
            ++growths;
            std::printf("\n   insert #%" PRIu64 " grows B %u -> %u, evacuated within the same insert\n", k + 1,
                        unsigned{before.B}, unsigned{s.B});
            print_map_stats("done", s);
        } else if (!was_growing && s.growing) {
            ++growths;
            old = s.old_buckets;
            shown_halfway = false;
            std::printf("\n   insert #%" PRIu64 " starts growth %d: B %u -> %u\n", k + 1, growths,
                        unsigned{s.old_B}, unsigned{s.B});
            print_map_stats("start", s);
        } else if (s.growing && !shown_halfway && s.old_buckets_evacuated * 2 >= s.old_bucket_count) {
            shown_halfway = true;
            print_map_stats("halfway", s);
        } else if (was_growing && !s.growing) {
            print_map_stats("done", s);
            // Where the old array went: once for a small array (a size
            // class), once for a large one (pages of its own).
            const bool large = old.end - old.begin > 32768;
            if (!large && !shown_small && s.B >= 3) {
                shown_small = true;
                show_reuse(old);
            } else if (large && !shown_large) {
                shown_large = true;
                show_reuse(old);
            }
        }
    }
    bool all_there = true;
    for (std::uint64_t k = 0; k < n; ++k) all_there &= m.contains(k) && m.find(k)->second == k * k;
    std::printf("\n   %" PRIu64 " keys, %d growths; every key still there: %s\n", n, growths, all_there ? "yes" : "no");
    print_map_stats("final", m.stats());
}

// The arena as the kernel sees it: its lines in /proc/self/maps, their
// figures from /proc/self/smaps, and the resident pages split by whether the
// heap uses them.
void show_mappings() {
    heading("3. The arena in /proc/self/maps");
    auto rep = std::make_unique<spanmap::mapping_report>();
    *rep = spanmap::inspect_mappings();
    if (!rep->ok) {
        std::printf("   /proc/self/maps could not be read\n");
        return;
    }
    std::printf("   naming the arenas \"spanmap: heap\": %s\n", spanmap::to_string(rep->naming));
    for (std::size_t i = 0; i < rep->nlines && i < spanmap::max_report_lines; ++i) {
        const spanmap::mapping_line& l = rep->lines[i];
        std::printf("   %" PRIxPTR "-%" PRIxPTR " %s %s\n", l.start, l.end, l.perms,
                    l.name[0] != '\0' ? l.name : "(no name: found by address)");
        if (rep->has_figures)
            std::printf("      Size %" PRIu64 " kB, Rss %" PRIu64 " kB, Private_Dirty %" PRIu64
                        " kB, AnonHugePages %" PRIu64 " kB\n",
                        l.size >> 10, l.rss >> 10, l.private_dirty >> 10, l.anon_huge_pages >> 10);
    }
    std::printf("   heap: %" PRIu64 " KiB in use, %" PRIu64 " KiB idle, %" PRIu64 " KiB released\n",
                rep->heap_inuse >> 10, rep->heap_idle >> 10, rep->heap_released >> 10);
    std::printf("   resident: %" PRIu64 " KiB = %" PRIu64 " KiB of pages in use + %" PRIu64
                " KiB of idle pages (freed, not yet returned to the OS)\n",
                rep->heap_rss >> 10, rep->heap_rss_in_use >> 10, rep->heap_rss_idle >> 10);
}

}  // namespace

int main() {
    std::printf("spanmap tour: a map on the arena, and what the allocator and the kernel see\n");
    {
        tour_map m;
        grow_a_map(m, 60000);
        heading("2. The allocator, with the map alive");
        spanmap::print_stats(stdout, spanmap::stats_format::text);
        show_mappings();
    }
    heading("4. After the map is gone");
    const spanmap::mem_stats m = spanmap::read_mem_stats();
    std::printf("   alloc %" PRIu64 " B in %" PRIu64 " objects; heap_inuse %" PRIu64 " KiB, heap_idle %" PRIu64
                " KiB; %" PRIu64 " mallocs, %" PRIu64 " frees\n",
                m.alloc, m.heap_objects, m.heap_inuse >> 10, m.heap_idle >> 10, m.mallocs, m.frees);
    return 0;
}

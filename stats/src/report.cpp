// print_stats() / format_stats(): the report, as text whose lines add up
// (TCMalloc's stats page is the model) or as JSON.
//
// Everything goes through text_writer (writer.h), integers and strings only
// (percentages and MiB are computed in integers), written with write(2) — or
// copied into the caller's buffer. The figures come from
// one walk under every lock, so the summary adds up even while other threads
// run; only what sits in running threads' caches may blur.
#include "collect.h"
#include "writer.h"

#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>

namespace spanmap::detail {
namespace {

using writer = text_writer;

using ull = unsigned long long;
constexpr ull u(std::uint64_t v) { return v; }

// Everything the report shows, gathered before any of it is written.
struct report_data {
    counters k;
    heap_shape h;
    mem_stats m;
    class_stats classes[num_classes];
    static constexpr std::size_t max_caches = 16;
    cache_stats caches[max_caches];
    std::size_t ncaches;
    mapping_report maps;
};

void gather(report_data& d) {
    introspect::walk(d.k, d.h);
    build_mem_stats(d.k, d.h, d.m);
    build_class_stats(d.k, d.h, d.classes);
    d.ncaches = read_cache_stats(d.caches, report_data::max_caches);
    d.maps = inspect_mappings();
}

// "12.3" for a MiB figure, in integers.
struct mib {
    ull whole;
    ull tenth;
};
mib to_mib(std::uint64_t bytes) {
    const ull tenths = (u(bytes) * 10 + (1u << 19)) >> 20;
    return {tenths / 10, tenths % 10};
}

// Per mille of a / b, for "97.3%".
ull per_mille(std::uint64_t a, std::uint64_t b) { return b == 0 ? 0 : (u(a) * 1000 + u(b) / 2) / u(b); }

// --- text --------------------------------------------------------------------

void summary_line(writer& w, char sign, std::uint64_t bytes, const char* what) {
    const mib m = to_mib(bytes);
    w.printf("MALLOC: %c %15llu (%8llu.%llu MiB) %s\n", sign, u(bytes), m.whole, m.tenth, what);
}

void text_summary(writer& w, const report_data& d) {
    const mem_stats& m = d.m;
    char what[128];
    w.put("------------------------------------------------------------------------------\n"
          "spanmap: allocator statistics\n"
          "------------------------------------------------------------------------------\n");
    summary_line(w, ' ', m.alloc, "alloc: live objects, as their classes round them");
    summary_line(w, '+', m.cached_bytes, "cached_bytes: free objects in thread caches");
    summary_line(w, '+', m.span_free, "span_free: free objects in small spans (mcentral)");
    summary_line(w, '+', m.span_waste, "span_waste: span tails no object fits");
    w.put("MALLOC:   ------------\n");
    summary_line(w, '=', m.heap_inuse, "heap_inuse: pages held by spans");
    summary_line(w, '+', m.heap_idle, "heap_idle: free pages in the arenas");
    w.put("MALLOC:   ------------\n");
    std::snprintf(what, sizeof what, "heap_sys: reserved in %llu arena(s) of 64 MiB", u(m.arenas));
    summary_line(w, '=', m.heap_sys, what);
    std::snprintf(what, sizeof what, "mspan_sys: span records (%llu bytes in use)", u(m.mspan_inuse));
    summary_line(w, '+', m.mspan_sys, what);
    std::snprintf(what, sizeof what, "mcache_sys: thread caches (%llu live, %llu parked)", u(d.k.live_caches),
                  u(d.k.parked_caches));
    summary_line(w, '+', m.mcache_sys, what);
    summary_line(w, '+', m.other_sys, "other_sys: arena records, arena list, profiler tables");
    w.put("MALLOC:   ------------\n");
    summary_line(w, '=', m.sys, "sys: mapped from the OS");
    w.put("MALLOC:\n");
    summary_line(w, ' ', m.heap_released, "heap_released: idle pages returned to the OS");
    std::snprintf(what, sizeof what, "RSS of the arenas (mincore): %llu KiB in use, %llu KiB idle",
                  u(d.maps.heap_rss_in_use >> 10), u(d.maps.heap_rss_idle >> 10));
    summary_line(w, ' ', d.maps.heap_rss, what);
    w.put("MALLOC:\n");
    w.printf("MALLOC:   mallocs %llu, frees %llu, heap_objects %llu; large objects %llu (%llu bytes); "
             "cached objects %llu; total_alloc %llu\n",
             u(m.mallocs), u(m.frees), u(m.heap_objects), u(m.large_objects), u(m.large_bytes),
             u(m.cached_objects), u(m.total_alloc));
}

void text_classes(writer& w, const report_data& d) {
    w.put("\nsize classes (objects; util = in use / objects; classes never used are left out)\n");
    w.put("class    size pages objs/span    spans    objects     in use     cached       free    util"
          "      mallocs        frees\n");
    class_stats total{};
    for (unsigned c = 1; c < num_classes; ++c) {
        const class_stats& s = d.classes[c];
        if (s.spans == 0 && s.mallocs == 0) continue;
        const ull pm = per_mille(s.in_use, s.objects);
        w.printf("%5u %7u %5u %9u %8llu %10llu %10llu %10llu %10llu %4llu.%llu%% %12llu %12llu\n", c, s.size,
                 s.pages_per_span, s.objects_per_span, u(s.spans), u(s.objects), u(s.in_use), u(s.cached),
                 u(s.free), pm / 10, pm % 10, u(s.mallocs), u(s.frees));
        total.spans += s.spans;
        total.objects += s.objects;
        total.in_use += s.in_use;
        total.cached += s.cached;
        total.free += s.free;
        total.mallocs += s.mallocs;
        total.frees += s.frees;
    }
    const ull pm = per_mille(total.in_use, total.objects);
    w.printf("small %29s %8llu %10llu %10llu %10llu %10llu %4llu.%llu%% %12llu %12llu\n", "", u(total.spans),
             u(total.objects), u(total.in_use), u(total.cached), u(total.free), pm / 10, pm % 10, u(total.mallocs),
             u(total.frees));
    const class_stats& l = d.classes[0];
    w.printf("large %29s %8llu %10llu %10llu %10s %10s %7s %12llu %12llu\n", "", u(l.spans), u(l.objects),
             u(l.in_use), "-", "-", "-", u(l.mallocs), u(l.frees));
}

void text_caches(writer& w, const report_data& d) {
    w.printf("\nthread caches: %llu live, %llu parked; %llu objects, %llu bytes cached\n", u(d.k.live_caches),
             u(d.k.parked_caches), u(d.m.cached_objects), u(d.m.cached_bytes));
    const std::size_t listed = d.ncaches < report_data::max_caches ? d.ncaches : report_data::max_caches;
    for (std::size_t i = 0; i < listed; ++i) {
        const cache_stats& c = d.caches[i];
        w.printf("  %s %p: %llu objects, %llu bytes\n", c.current_thread ? "*" : " ", c.cache, u(c.objects),
                 u(c.bytes));
    }
    if (d.ncaches > listed) w.printf("  ... and %llu more\n", u(d.ncaches - listed));
    if (listed > 0) w.put("  (* the reporting thread's own)\n");
}

void text_mappings(writer& w, const report_data& d) {
    const mapping_report& r = d.maps;
    w.printf("\narenas: %llu; naming: %s", u(r.narenas), to_string(r.naming));
    if (r.name_errno != 0) w.printf(" (errno %d)", r.name_errno);
    w.put(r.ok ? "\n" : "; /proc/self/maps could not be read\n");
    const std::size_t arenas = r.narenas < max_report_arenas ? r.narenas : max_report_arenas;
    for (std::size_t i = 0; i < arenas; ++i) {
        const arena_mapping& a = r.arenas[i];
        w.printf("  %#llx-%#llx  pages: %llu in use, %llu idle; RSS %llu KiB (in use %llu KiB, idle %llu KiB); "
                 "%s, %s, %s\n",
                 u(a.base), u(a.end), u(a.pages_in_use), u(a.pages_idle), u(a.rss >> 10), u(a.rss_in_use >> 10),
                 u(a.rss_idle >> 10), a.named ? "named" : "not named", a.name_seen ? "name seen" : "name not seen",
                 a.covered ? "lines cover it" : "lines do not cover it");
    }
    w.printf("  lines over the heap (from /proc/self/%s): %llu\n", r.has_figures ? "smaps" : "maps", u(r.nlines));
    const std::size_t lines = r.nlines < max_report_lines ? r.nlines : max_report_lines;
    for (std::size_t i = 0; i < lines; ++i) {
        const mapping_line& l = r.lines[i];
        w.printf("    %llx-%llx %s %-22s Size %llu kB, Rss %llu kB, Private_Dirty %llu kB, AnonHugePages %llu kB\n",
                 u(l.start), u(l.end), l.perms, l.name, u(l.size >> 10), u(l.rss >> 10), u(l.private_dirty >> 10),
                 u(l.anon_huge_pages >> 10));
    }
    if (r.truncated) w.put("  (more arenas or lines than the report lists; totals cover them all)\n");
}

// --- JSON --------------------------------------------------------------------

void json_string(writer& w, const char* s) {
    w.put("\"");
    for (; *s != '\0'; ++s) {
        const auto ch = static_cast<unsigned char>(*s);
        if (ch == '"' || ch == '\\')
            w.printf("\\%c", ch);
        else if (ch < 0x20)
            w.printf("\\u%04x", ch);
        else
            w.printf("%c", ch);
    }
    w.put("\"");
}

void json_mem_stats(writer& w, const mem_stats& m) {
    w.put("  \"mem_stats\": {\n");
#define SPANMAP_JSON_FIELD(name) w.printf("    \"" #name "\": %llu,\n", u(m.name));
    SPANMAP_MEM_STATS_FIELDS(SPANMAP_JSON_FIELD)
#undef SPANMAP_JSON_FIELD
    w.put("    \"by_size\": [\n");
    for (unsigned c = 0; c < num_classes; ++c)
        w.printf("      {\"size\": %llu, \"mallocs\": %llu, \"frees\": %llu}%s\n", u(m.by_size[c].size),
                 u(m.by_size[c].mallocs), u(m.by_size[c].frees), c + 1 < num_classes ? "," : "");
    w.put("    ]\n  },\n");
}

void json_classes(writer& w, const report_data& d) {
    w.put("  \"classes\": [\n");
    for (unsigned c = 0; c < num_classes; ++c) {
        const class_stats& s = d.classes[c];
        w.printf("    {\"class\": %u, \"size\": %u, \"pages_per_span\": %u, \"objects_per_span\": %u, "
                 "\"spans\": %llu, \"objects\": %llu, \"in_use\": %llu, \"cached\": %llu, \"free\": %llu, "
                 "\"mallocs\": %llu, \"frees\": %llu}%s\n",
                 c, s.size, s.pages_per_span, s.objects_per_span, u(s.spans), u(s.objects), u(s.in_use),
                 u(s.cached), u(s.free), u(s.mallocs), u(s.frees), c + 1 < num_classes ? "," : "");
    }
    w.put("  ],\n");
}

void json_caches(writer& w, const report_data& d) {
    w.printf("  \"caches\": {\"live\": %llu, \"parked\": %llu, \"list\": [\n", u(d.k.live_caches),
             u(d.k.parked_caches));
    const std::size_t listed = d.ncaches < report_data::max_caches ? d.ncaches : report_data::max_caches;
    for (std::size_t i = 0; i < listed; ++i) {
        const cache_stats& c = d.caches[i];
        w.printf("    {\"cache\": \"%p\", \"current_thread\": %s, \"objects\": %llu, \"bytes\": %llu}%s\n", c.cache,
                 c.current_thread ? "true" : "false", u(c.objects), u(c.bytes), i + 1 < listed ? "," : "");
    }
    w.put("  ]},\n");
}

void json_mappings(writer& w, const report_data& d) {
    const mapping_report& r = d.maps;
    w.printf("  \"mappings\": {\"ok\": %s, \"has_figures\": %s, \"truncated\": %s, \"naming\": ",
             r.ok ? "true" : "false", r.has_figures ? "true" : "false", r.truncated ? "true" : "false");
    json_string(w, to_string(r.naming));
    w.printf(", \"name_errno\": %d, \"narenas\": %llu, \"nlines\": %llu,\n", r.name_errno, u(r.narenas),
             u(r.nlines));
    w.printf("    \"heap_sys\": %llu, \"heap_inuse\": %llu, \"heap_idle\": %llu, \"heap_released\": %llu, "
             "\"heap_rss\": %llu, \"heap_rss_in_use\": %llu, \"heap_rss_idle\": %llu,\n",
             u(r.heap_sys), u(r.heap_inuse), u(r.heap_idle), u(r.heap_released), u(r.heap_rss),
             u(r.heap_rss_in_use), u(r.heap_rss_idle));
    w.printf("    \"lines_size\": %llu, \"lines_rss\": %llu, \"lines_private_dirty\": %llu, "
             "\"lines_anon_huge_pages\": %llu,\n",
             u(r.lines_size), u(r.lines_rss), u(r.lines_private_dirty), u(r.lines_anon_huge_pages));
    w.put("    \"arenas\": [\n");
    const std::size_t arenas = r.narenas < max_report_arenas ? r.narenas : max_report_arenas;
    for (std::size_t i = 0; i < arenas; ++i) {
        const arena_mapping& a = r.arenas[i];
        w.printf("      {\"base\": \"%#llx\", \"end\": \"%#llx\", \"named\": %s, \"name_seen\": %s, \"covered\": %s, "
                 "\"first_line\": %u, \"nlines\": %u, \"pages_in_use\": %llu, \"pages_idle\": %llu, "
                 "\"rss\": %llu, \"rss_in_use\": %llu, \"rss_idle\": %llu}%s\n",
                 u(a.base), u(a.end), a.named ? "true" : "false", a.name_seen ? "true" : "false",
                 a.covered ? "true" : "false", a.first_line, a.nlines, u(a.pages_in_use), u(a.pages_idle), u(a.rss),
                 u(a.rss_in_use), u(a.rss_idle), i + 1 < arenas ? "," : "");
    }
    w.put("    ],\n    \"lines\": [\n");
    const std::size_t lines = r.nlines < max_report_lines ? r.nlines : max_report_lines;
    for (std::size_t i = 0; i < lines; ++i) {
        const mapping_line& l = r.lines[i];
        w.printf("      {\"start\": \"%#llx\", \"end\": \"%#llx\", \"perms\": ", u(l.start), u(l.end));
        json_string(w, l.perms);
        w.put(", \"name\": ");
        json_string(w, l.name);
        w.printf(", \"size\": %llu, \"rss\": %llu, \"private_dirty\": %llu, \"anon_huge_pages\": %llu}%s\n",
                 u(l.size), u(l.rss), u(l.private_dirty), u(l.anon_huge_pages), i + 1 < lines ? "," : "");
    }
    w.put("    ]\n  }\n");
}

[[gnu::cold]] void write_report(writer& w, stats_format format) {
    report_data d;
    gather(d);
    if (format == stats_format::json) {
        w.put("{\n");
        json_mem_stats(w, d.m);
        json_classes(w, d);
        json_caches(w, d);
        json_mappings(w, d);
        w.put("}\n");
        return;
    }
    text_summary(w, d);
    text_classes(w, d);
    text_caches(w, d);
    text_mappings(w, d);
}

}  // namespace
}  // namespace spanmap::detail

namespace spanmap {

using namespace spanmap::detail;

[[gnu::cold]] void print_stats(std::FILE* f, stats_format format) noexcept {
    if (f == nullptr) return;
    // What the program already wrote to f goes first; then straight to the
    // descriptor, so stdio never needs a buffer (which it would malloc).
    std::fflush(f);
    writer w(::fileno(f), f);
    write_report(w, format);
    w.finish();
}

[[gnu::cold]] std::size_t format_stats(char* buf, std::size_t len, stats_format format) noexcept {
    writer w(buf, len);
    write_report(w, format);
    return w.finish();
}

}  // namespace spanmap

// SPANMAP_CONF=stats_print:true: the report at exit. A destructor function
// rather than atexit(): atexit may allocate (glibc's first 32 handlers are
// static, later ones are not). It runs after the program's static
// destructors (fini arrays run last), so what they free is counted.
//
// A static library links only the objects something refers to, and nothing
// in the allocator refers up to the statistics: the anchor below is what
// libspanmap.a's users are told to keep (-Wl,-u,spanmap_stats_module, in the
// CMake target and spanmap-static.pc), so that the report is there whenever
// the allocator is.
extern "C" __attribute__((used)) void spanmap_stats_module() {}

namespace {
__attribute__((destructor)) void print_stats_at_exit() {
    // Reads SPANMAP_CONF if nothing ever allocated (and so nothing did yet).
    if (spanmap::introspect::stats_print_requested())
        spanmap::print_stats(stderr, spanmap::stats_format::text);
}
}  // namespace

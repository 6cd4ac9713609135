// SPANMAP_CONF: run-time options, in jemalloc's MALLOC_CONF convention —
// comma-separated key:value pairs, e.g. SPANMAP_CONF=stats_print:true.
//
// Read once, when the allocator initialises (init_slow), from the environment
// with secure_getenv (ignored in set-user-ID programs, as jemalloc does);
// neither reading nor parsing allocates. An unknown key or a bad value writes
// a warning naming it to stderr and is ignored; the rest still applies.
//
// Keys live in one table in conf.cpp: a new option is a field below and one
// line there.
#pragma once

#include <spanmap/profile.h>

#include <cstdint>
#include <string_view>

namespace spanmap::detail {

// Transparent huge pages for arenas: the system's setting, or madvise
// MADV_HUGEPAGE / MADV_NOHUGEPAGE on every arena.
enum class thp_mode : std::uint8_t { system, always, never };

struct conf_values {
    bool stats_print = false;  // print the statistics report to stderr at exit

    // --- giving memory back (scavenge.h) ---
    bool scavenger = true;            // the background thread that releases idle pages
    std::uint64_t decay_ms = 1000;    // how long a page stays free before it is released
    bool madv_free = false;           // release with MADV_FREE instead of MADV_DONTNEED
    thp_mode thp = thp_mode::system;  // thp:default|always|never

    // --- the heap profiler (alloc/profile) ---
    bool prof = false;                       // profile from initialisation on; dump at exit
    std::uint64_t prof_rate = default_profile_rate;  // mean bytes between samples (not 0)
    char prof_prefix[256] = "spanmap";       // the dump at exit: <prof_prefix>.<pid>.heap
};

// Written at initialisation, before init_state publishes it; read after.
extern constinit conf_values conf;

// Parses SPANMAP_CONF from the environment into conf (init_slow's call).
void read_conf() noexcept;
// Parses text into conf as if it were SPANMAP_CONF (tests, tools); returns
// the number of warnings written.
int parse_conf(const char* text) noexcept;

// Value parsers, shared by the table's setters.
// true|false (also 1|0, yes|no).
bool parse_bool(std::string_view v, bool& out) noexcept;
// A decimal count with an optional k, m or g (binary: 1k = 1024).
bool parse_size(std::string_view v, std::uint64_t& out) noexcept;

}  // namespace spanmap::detail

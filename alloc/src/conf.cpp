// SPANMAP_CONF parsing; see conf.h.
#include "conf.h"
#include "writer.h"

#include "cache.h"


#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace spanmap::detail {

constinit conf_values conf;

namespace {

// --- the table -----------------------------------------------------------------

template <bool conf_values::*Field>
bool set_bool(std::string_view v) noexcept {
    return parse_bool(v, conf.*Field);
}

template <std::uint64_t conf_values::*Field>
bool set_size(std::string_view v) noexcept {
    return parse_size(v, conf.*Field);
}

// A char array member: the text, NUL-terminated; too long is a bad value.
template <auto Field>
bool set_string(std::string_view v) noexcept {
    auto& out = conf.*Field;
    if (v.size() >= sizeof out) return false;
    std::memcpy(out, v.data(), v.size());
    out[v.size()] = '\0';
    return true;
}

// --- the heap profiler's keys (alloc/profile) ---
bool set_prof_rate(std::string_view v) noexcept {
    std::uint64_t rate = 0;
    if (!parse_size(v, rate) || rate == 0) return false;
    conf.prof_rate = rate;
    return true;
}
// --- end of the heap profiler's keys ---

// --- giving memory back (scavenge.h) ---
bool set_madvise(std::string_view v) noexcept {
    if (v != "dontneed" && v != "free") return false;
    conf.madv_free = v == "free";
    return true;
}
bool set_thp(std::string_view v) noexcept {
    if (v == "default") conf.thp = thp_mode::system;
    else if (v == "always") conf.thp = thp_mode::always;
    else if (v == "never") conf.thp = thp_mode::never;
    else return false;
    return true;
}
bool set_decay_ms(std::string_view v) noexcept {
    std::uint64_t ms = 0;
    if (!parse_size(v, ms) || ms > 3600 * 1000) return false;
    conf.decay_ms = ms;
    return true;
}
// --- end of the scavenger's keys ---

struct option {
    std::string_view key;
    bool (*set)(std::string_view value) noexcept;  // false: a bad value, conf untouched
};

// One line per key.
constexpr option options[] = {
    {"stats_print", set_bool<&conf_values::stats_print>},
    {"scavenger", set_bool<&conf_values::scavenger>},
    {"decay_ms", set_decay_ms},
    {"madvise", set_madvise},
    {"thp", set_thp},
    {"prof", set_bool<&conf_values::prof>},
    {"prof_rate", set_prof_rate},
    {"prof_prefix", set_string<&conf_values::prof_prefix>},
};

// --- warnings, without allocating --------------------------------------------------

// Quotes at most 64 bytes of what the user wrote; one line, one write.
[[gnu::cold]] void warn(std::string_view what, std::string_view text, std::string_view key = {}) noexcept {
    const int saved = errno;
    text_writer w(STDERR_FILENO);
    w << "spanmap: SPANMAP_CONF: " << what << " \"" << text.substr(0, 64) << (text.size() > 64 ? "...\"" : "\"");
    if (!key.empty()) w << " for " << key;
    w << " (ignored)\n";
    w.finish();
    errno = saved;
}

bool apply(std::string_view item) noexcept {
    const std::size_t colon = item.find(':');
    if (colon == std::string_view::npos) {
        warn("expected key:value, got", item);
        return false;
    }
    const std::string_view key = item.substr(0, colon);
    // Not substr(colon + 1): its range check throws, and the malloc
    // replacement carries no C++ runtime to throw with.
    std::string_view value = item;
    value.remove_prefix(colon + 1);
    for (const option& o : options) {
        if (o.key != key) continue;
        if (o.set(value)) return true;
        warn("bad value", value, key);
        return false;
    }
    warn("unknown key", key);
    return false;
}

}  // namespace

bool parse_bool(std::string_view v, bool& out) noexcept {
    if (v == "true" || v == "1" || v == "yes") {
        out = true;
        return true;
    }
    if (v == "false" || v == "0" || v == "no") {
        out = false;
        return true;
    }
    return false;
}

bool parse_size(std::string_view v, std::uint64_t& out) noexcept {
    if (v.empty()) return false;
    unsigned shift = 0;
    switch (v.back()) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        default: break;
    }
    if (shift != 0) v.remove_suffix(1);
    if (v.empty()) return false;
    std::uint64_t n = 0;
    for (const char c : v) {
        if (c < '0' || c > '9') return false;
        if (__builtin_mul_overflow(n, 10, &n) || __builtin_add_overflow(n, static_cast<std::uint64_t>(c - '0'), &n))
            return false;
    }
    if (shift != 0 && n > (~std::uint64_t{0} >> shift)) return false;
    out = n << shift;
    return true;
}

int parse_conf(const char* text) noexcept {
    if (text == nullptr) return 0;
    int warnings = 0;
    std::string_view rest(text);
    while (!rest.empty()) {
        const std::size_t comma = rest.find(',');
        const std::string_view item = rest.substr(0, comma);
        if (!item.empty() && !apply(item)) ++warnings;
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
    }
    return warnings;
}

void read_conf() noexcept { parse_conf(::secure_getenv("SPANMAP_CONF")); }

}  // namespace spanmap::detail

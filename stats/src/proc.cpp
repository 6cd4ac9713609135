// /proc line parsing; see proc.h.
#include "proc.h"

#include <cstdint>

namespace spanmap::detail {
namespace {

bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

bool take_hex(std::string_view s, std::size_t& i, std::uintptr_t& out) {
    const std::size_t from = i;
    std::uintptr_t v = 0;
    for (; i < s.size() && is_hex(s[i]); ++i) v = v * 16 + static_cast<std::uintptr_t>(s[i] <= '9' ? s[i] - '0' : s[i] - 'a' + 10);
    out = v;
    return i > from;
}

void skip_spaces(std::string_view s, std::size_t& i) {
    while (i < s.size() && s[i] == ' ') ++i;
}

void skip_field(std::string_view s, std::size_t& i) {
    while (i < s.size() && s[i] != ' ') ++i;
    skip_spaces(s, i);
}

}  // namespace

bool parse_maps_line(std::string_view s, mapping_line& out) noexcept {
    if (s.empty() || !is_hex(s[0])) return false;
    out = mapping_line{};
    std::size_t i = 0;
    if (!take_hex(s, i, out.start) || i >= s.size() || s[i] != '-') return false;
    ++i;
    if (!take_hex(s, i, out.end) || i >= s.size() || s[i] != ' ') return false;
    skip_spaces(s, i);
    for (std::size_t k = 0; k < 4 && i < s.size() && s[i] != ' '; ++k) out.perms[k] = s[i++];
    skip_spaces(s, i);
    skip_field(s, i);  // offset
    skip_field(s, i);  // device
    skip_field(s, i);  // inode; the name, which may hold spaces, is the rest
    std::size_t n = s.size() - i;
    while (n > 0 && s[i + n - 1] == ' ') --n;
    if (n > sizeof out.name - 1) n = sizeof out.name - 1;
    std::memcpy(out.name, s.data() + i, n);
    return true;
}

void parse_smaps_field(std::string_view s, mapping_line& line) noexcept {
    const std::size_t colon = s.find(':');
    if (colon == std::string_view::npos) return;
    const std::string_view key = s.substr(0, colon);
    std::uint64_t* slot = key == "Size"            ? &line.size
                          : key == "Rss"           ? &line.rss
                          : key == "Private_Dirty" ? &line.private_dirty
                          : key == "AnonHugePages" ? &line.anon_huge_pages
                                                   : nullptr;
    if (slot == nullptr) return;
    std::size_t i = colon + 1;
    skip_spaces(s, i);
    std::uint64_t kb = 0;
    for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) kb = kb * 10 + static_cast<std::uint64_t>(s[i] - '0');
    *slot = kb * 1024;
}

}  // namespace spanmap::detail

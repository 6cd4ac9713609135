// Reports: the text summary's lines add up and carry the snapshot's figures;
// the JSON parses and holds every field; format_stats() behaves like
// snprintf; print_stats() writes the same report through a descriptor or a
// FILE without one.
#include "stats_test_util.h"

#include <cctype>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace spanmap::test;

std::string format(spanmap::stats_format f) {
    const std::size_t n = spanmap::format_stats(nullptr, 0, f);
    std::string s(n + 1, '\0');
    EXPECT_EQ(spanmap::format_stats(s.data(), s.size(), f), n);
    s.resize(n);
    return s;
}

struct held {
    std::vector<void*> small;
    void* large;
    held() {
        for (int i = 0; i < 300; ++i) small.push_back(spanmap::allocate(static_cast<std::size_t>(16 + i * 37), 8));
        large = spanmap::allocate(300000, 8);
    }
    ~held() {
        for (std::size_t i = 0; i < small.size(); ++i) spanmap::deallocate(small[i], 16 + i * 37, 8);
        spanmap::deallocate(large, 300000, 8);
    }
};

// "MALLOC: + 123 (...) name: ..." -> sign, value, name.
struct summary_line {
    char sign;
    std::uint64_t value;
    std::string name;
};

std::vector<summary_line> summary(const std::string& text) {
    std::vector<summary_line> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("MALLOC: ", 0) != 0 || line.size() < 12) continue;
        const char sign = line[8];
        if (sign != ' ' && sign != '+' && sign != '=') continue;
        std::istringstream rest(line.substr(9));
        std::uint64_t value = 0;
        if (!(rest >> value)) continue;
        const auto close = line.find(") ");
        if (close == std::string::npos) continue;
        const std::string name = line.substr(close + 2, line.find(':', close) - close - 2);
        out.push_back({sign, value, name});
    }
    return out;
}

TEST(stats_report, TextSummaryLinesAddUp) {
    held h;
    const spanmap::mem_stats m = spanmap::recompute_mem_stats();
    const std::string text = format(spanmap::stats_format::text);
    const std::vector<summary_line> lines = summary(text);
    ASSERT_EQ(lines.size(), 13u) << text;

    // A run starts with an unsigned line, '+' adds to it, '=' must equal it.
    std::uint64_t sum = 0;
    int totals = 0;
    for (const summary_line& l : lines) {
        if (l.sign == ' ') sum = l.value;
        if (l.sign == '+') sum += l.value;
        if (l.sign == '=') {
            EXPECT_EQ(l.value, sum) << l.name << " is not the sum of the lines above it\n" << text;
            ++totals;
        }
    }
    EXPECT_EQ(totals, 3);  // heap_inuse, heap_sys, sys

    // Each line carries the snapshot's figure of the same name.
    const std::map<std::string, std::uint64_t> want = {
        {"alloc", m.alloc},           {"cached_bytes", m.cached_bytes}, {"span_free", m.span_free},
        {"span_waste", m.span_waste}, {"heap_inuse", m.heap_inuse},     {"heap_idle", m.heap_idle},
        {"heap_sys", m.heap_sys},     {"mspan_sys", m.mspan_sys},       {"mcache_sys", m.mcache_sys},
        {"other_sys", m.other_sys},   {"sys", m.sys},                   {"heap_released", m.heap_released},
    };
    std::size_t matched = 0;
    for (const summary_line& l : lines) {
        const auto it = want.find(l.name);
        if (it == want.end()) continue;
        ++matched;
        EXPECT_EQ(l.value, it->second) << l.name;
    }
    EXPECT_EQ(matched, want.size());
    EXPECT_NE(text.find("size classes"), std::string::npos);
    EXPECT_NE(text.find("thread caches:"), std::string::npos);
    EXPECT_NE(text.find("arenas: "), std::string::npos);
}

TEST(stats_report, TextClassTableListsUsedClasses) {
    held h;
    spanmap::class_stats rows[spanmap::num_size_classes];
    spanmap::read_class_stats(rows);
    const std::string text = format(spanmap::stats_format::text);
    for (unsigned c = 1; c < spanmap::num_size_classes; ++c) {
        if (rows[c].spans == 0 && rows[c].mallocs == 0) continue;
        char prefix[32];
        std::snprintf(prefix, sizeof prefix, "\n%5u %7u ", c, rows[c].size);
        EXPECT_NE(text.find(prefix), std::string::npos) << "class " << c;
    }
}

// --- a small JSON reader: enough to check the report is well formed -------------

struct json {
    enum kind_t { null, boolean, number, string, array, object } kind = null;
    double num = 0;
    std::uint64_t integer = 0;
    bool flag = false;
    std::string str;
    std::vector<json> items;
    std::vector<std::pair<std::string, json>> fields;

    const json* get(const std::string& key) const {
        for (const auto& [k, v] : fields)
            if (k == key) return &v;
        return nullptr;
    }
};

class json_reader {
public:
    explicit json_reader(const std::string& s) : s_(s) {}
    bool parse(json& out) {
        if (!value(out)) return false;
        ws();
        return i_ == s_.size();
    }

private:
    void ws() {
        while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    bool lit(const char* w) {
        const std::size_t n = std::strlen(w);
        if (s_.compare(i_, n, w) != 0) return false;
        i_ += n;
        return true;
    }
    bool str(std::string& out) {
        if (s_[i_] != '"') return false;
        for (++i_; i_ < s_.size(); ++i_) {
            const char c = s_[i_];
            if (c == '"') {
                ++i_;
                return true;
            }
            if (static_cast<unsigned char>(c) < 0x20) return false;
            if (c == '\\') {
                if (++i_ >= s_.size()) return false;
                const char e = s_[i_];
                if (e == 'u') {
                    if (i_ + 4 >= s_.size()) return false;
                    out += static_cast<char>(std::stoi(s_.substr(i_ + 1, 4), nullptr, 16));
                    i_ += 4;
                } else if (std::strchr("\"\\/bfnrt", e) != nullptr) {
                    out += e;
                } else {
                    return false;
                }
                continue;
            }
            out += c;
        }
        return false;
    }
    bool value(json& v) {
        ws();
        if (i_ >= s_.size()) return false;
        const char c = s_[i_];
        if (c == '{') {
            v.kind = json::object;
            ++i_;
            ws();
            if (s_[i_] == '}') return ++i_, true;
            for (;;) {
                ws();
                std::string key;
                if (!str(key)) return false;
                ws();
                if (s_[i_++] != ':') return false;
                json item;
                if (!value(item)) return false;
                v.fields.emplace_back(key, item);
                ws();
                if (s_[i_] == ',') {
                    ++i_;
                    continue;
                }
                if (s_[i_] == '}') return ++i_, true;
                return false;
            }
        }
        if (c == '[') {
            v.kind = json::array;
            ++i_;
            ws();
            if (s_[i_] == ']') return ++i_, true;
            for (;;) {
                json item;
                if (!value(item)) return false;
                v.items.push_back(item);
                ws();
                if (s_[i_] == ',') {
                    ++i_;
                    continue;
                }
                if (s_[i_] == ']') return ++i_, true;
                return false;
            }
        }
        if (c == '"') return v.kind = json::string, str(v.str);
        if (lit("true")) return v.kind = json::boolean, v.flag = true, true;
        if (lit("false")) return v.kind = json::boolean, true;
        if (lit("null")) return true;
        const std::size_t from = i_;
        while (i_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[i_])) || std::strchr("-+.eE", s_[i_])))
            ++i_;
        if (i_ == from) return false;
        v.kind = json::number;
        const std::string digits = s_.substr(from, i_ - from);
        v.num = std::stod(digits);
        if (digits.find_first_not_of("0123456789") == std::string::npos) v.integer = std::stoull(digits);
        return true;
    }

    const std::string& s_;
    std::size_t i_ = 0;
};

TEST(stats_report, JsonParsesAndHoldsEveryField) {
    held h;
    const spanmap::mem_stats m = spanmap::recompute_mem_stats();
    const std::string text = format(spanmap::stats_format::json);
    json doc;
    ASSERT_TRUE(json_reader(text).parse(doc)) << text;
    ASSERT_EQ(doc.kind, json::object);

    const json* ms = doc.get("mem_stats");
    ASSERT_NE(ms, nullptr);
    std::size_t n = 0;
#define SPANMAP_JSON_CHECK(name)                                               \
    {                                                                          \
        const json* f = ms->get(#name);                                        \
        ASSERT_NE(f, nullptr) << #name;                                        \
        EXPECT_EQ(f->kind, json::number);                                      \
        EXPECT_EQ(f->integer, m.name) << #name;                                \
        ++n;                                                                   \
    }
    SPANMAP_MEM_STATS_FIELDS(SPANMAP_JSON_CHECK)
#undef SPANMAP_JSON_CHECK
    EXPECT_EQ(ms->fields.size(), n + 1) << "mem_stats holds the listed fields and by_size, nothing else";
    const json* by_size = ms->get("by_size");
    ASSERT_NE(by_size, nullptr);
    ASSERT_EQ(by_size->items.size(), spanmap::num_size_classes);
    for (unsigned c = 0; c < spanmap::num_size_classes; ++c) {
        EXPECT_EQ(by_size->items[c].get("size")->integer, m.by_size[c].size);
        EXPECT_EQ(by_size->items[c].get("mallocs")->integer, m.by_size[c].mallocs);
        EXPECT_EQ(by_size->items[c].get("frees")->integer, m.by_size[c].frees);
    }

    const json* classes = doc.get("classes");
    ASSERT_NE(classes, nullptr);
    ASSERT_EQ(classes->items.size(), spanmap::num_size_classes);
    for (unsigned c = 1; c < spanmap::num_size_classes; ++c) {
        const json& row = classes->items[c];
        EXPECT_EQ(row.get("class")->integer, c);
        EXPECT_EQ(row.get("in_use")->integer + row.get("cached")->integer + row.get("free")->integer,
                  row.get("objects")->integer);
    }

    const json* caches = doc.get("caches");
    ASSERT_NE(caches, nullptr);
    ASSERT_NE(caches->get("list"), nullptr);
    EXPECT_EQ(caches->get("list")->items.size(), caches->get("live")->integer);

    const json* maps = doc.get("mappings");
    ASSERT_NE(maps, nullptr);
    EXPECT_EQ(maps->get("heap_sys")->integer, m.heap_sys);
    ASSERT_NE(maps->get("arenas"), nullptr);
    EXPECT_EQ(maps->get("arenas")->items.size(), m.arenas);
    ASSERT_NE(maps->get("lines"), nullptr);
    for (const json& line : maps->get("lines")->items) {
        ASSERT_EQ(line.get("name")->kind, json::string);
        ASSERT_EQ(line.get("start")->kind, json::string);
    }
}

TEST(stats_report, FormatStatsBehavesLikeSnprintf) {
    held h;
    const std::string full = format(spanmap::stats_format::text);
    ASSERT_GT(full.size(), 1000u);
    char small[100];
    std::memset(small, 'x', sizeof small);
    const std::size_t n = spanmap::format_stats(small, sizeof small, spanmap::stats_format::text);
    EXPECT_EQ(n, full.size());
    EXPECT_EQ(small[sizeof small - 1], '\0');
    EXPECT_EQ(std::string(small), full.substr(0, sizeof small - 1));
    char one[1] = {'x'};
    EXPECT_EQ(spanmap::format_stats(one, 1, spanmap::stats_format::text), full.size());
    EXPECT_EQ(one[0], '\0');
}

std::string slurp(std::FILE* f) {
    std::rewind(f);
    std::string s;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
    return s;
}

TEST(stats_report, PrintStatsWritesTheReport) {
    held h;
    // Through the file descriptor, after what the program already buffered.
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::tmpfile(), &std::fclose);
    ASSERT_NE(f, nullptr);
    std::fputs("before\n", f.get());
    spanmap::print_stats(f.get(), spanmap::stats_format::json);
    std::fputs("after\n", f.get());
    std::fflush(f.get());
    const std::string expect = format(spanmap::stats_format::json);
    EXPECT_EQ(slurp(f.get()), "before\n" + expect + "after\n");

    // A FILE with no descriptor gets fwrite.
    std::vector<char> mem(1 << 20);
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> mf(fmemopen(mem.data(), mem.size(), "w+"), &std::fclose);
    ASSERT_NE(mf, nullptr);
    spanmap::print_stats(mf.get(), spanmap::stats_format::text);
    std::fflush(mf.get());
    EXPECT_EQ(std::string(mem.data()), format(spanmap::stats_format::text));
    spanmap::print_stats(nullptr);  // nothing to write to: ignored
}

}  // namespace

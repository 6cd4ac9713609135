// The /proc reader and parsers on lines written here: named and unnamed
// mappings, names with spaces, names cut to fit, smaps fields, and lines
// longer than the reader's buffer.
#include "proc.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

namespace {

using spanmap::mapping_line;
using spanmap::detail::line_reader;
using spanmap::detail::parse_maps_line;
using spanmap::detail::parse_smaps_field;

TEST(stats_proc, NamedArenaLine) {
    mapping_line l;
    ASSERT_TRUE(parse_maps_line("7f3868000000-7f386c000000 rw-p 00000000 00:00 0                          "
                                "[anon:spanmap: heap]",
                                l));
    EXPECT_EQ(l.start, 0x7f3868000000u);
    EXPECT_EQ(l.end, 0x7f386c000000u);
    EXPECT_STREQ(l.perms, "rw-p");
    EXPECT_STREQ(l.name, "[anon:spanmap: heap]");
    EXPECT_EQ(l.rss, 0u);
}

TEST(stats_proc, UnnamedAndFileLines) {
    mapping_line l;
    ASSERT_TRUE(parse_maps_line("7f3868000000-7f386c000000 rw-p 00000000 00:00 0 ", l));
    EXPECT_STREQ(l.name, "");
    ASSERT_TRUE(parse_maps_line("55d4c8a00000-55d4c8a21000 r-xp 00002000 fd:01 1310738    /usr/bin/my prog (deleted)", l));
    EXPECT_STREQ(l.perms, "r-xp");
    EXPECT_STREQ(l.name, "/usr/bin/my prog (deleted)");
    ASSERT_TRUE(parse_maps_line("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]", l));
    EXPECT_EQ(l.start, 0xffffffffff600000u);
    EXPECT_STREQ(l.name, "[vsyscall]");
}

TEST(stats_proc, LongNamesAreCut) {
    const std::string name = "/" + std::string(200, 'x');
    mapping_line l;
    ASSERT_TRUE(parse_maps_line("1000-2000 r--p 00000000 00:00 0 " + name, l));
    EXPECT_EQ(std::string(l.name), name.substr(0, spanmap::max_line_name - 1));
}

TEST(stats_proc, OtherLinesAreNotHeaders) {
    mapping_line l;
    for (const char* s : {"", "Rss:                 123 kB", "VmFlags: rd wr mr mw me ac sd", "1000", "1000-",
                          "1000-2000", "zz-2000 rw-p 0 0 0"})
        EXPECT_FALSE(parse_maps_line(s, l)) << s;
}

TEST(stats_proc, SmapsFields) {
    mapping_line l{};
    parse_smaps_field("Size:              65536 kB", l);
    parse_smaps_field("Rss:                 292 kB", l);
    parse_smaps_field("Pss:                 292 kB", l);
    parse_smaps_field("Private_Dirty:       288 kB", l);
    parse_smaps_field("AnonHugePages:      2048 kB", l);
    parse_smaps_field("VmFlags: rd wr mr mw me ac sd", l);
    EXPECT_EQ(l.size, 65536u * 1024);
    EXPECT_EQ(l.rss, 292u * 1024);
    EXPECT_EQ(l.private_dirty, 288u * 1024);
    EXPECT_EQ(l.anon_huge_pages, 2048u * 1024);
}

std::vector<std::string> read_all(const std::string& content) {
    std::FILE* f = std::tmpfile();
    EXPECT_NE(f, nullptr);
    std::fwrite(content.data(), 1, content.size(), f);
    std::fflush(f);
    const int fd = fileno(f);
    EXPECT_EQ(lseek(fd, 0, SEEK_SET), 0);
    line_reader in(fd);
    std::vector<std::string> lines;
    std::string_view s;
    while (in.next(s)) lines.emplace_back(s);
    std::fclose(f);
    return lines;
}

TEST(stats_proc, ReaderSplitsLines) {
    EXPECT_EQ(read_all(""), std::vector<std::string>{});
    EXPECT_EQ(read_all("a\nbb\n\nccc"), (std::vector<std::string>{"a", "bb", "", "ccc"}));
    EXPECT_EQ(read_all("a\n"), (std::vector<std::string>{"a"}));
}

TEST(stats_proc, ReaderCutsLinesLongerThanItsBuffer) {
    // Many lines across several buffer refills, one of them far too long.
    std::string content;
    std::vector<std::string> want;
    for (int i = 0; i < 2000; ++i) {
        std::string line = "line " + std::to_string(i);
        if (i == 700) line += std::string(3 * line_reader::buffer_bytes, 'y');
        content += line + "\n";
        want.push_back(i == 700 ? line.substr(0, line_reader::buffer_bytes) : line);
    }
    content += std::string(2 * line_reader::buffer_bytes, 'z');  // and a long last line with no newline
    want.push_back(std::string(line_reader::buffer_bytes, 'z'));
    const std::vector<std::string> got = read_all(content);
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], want[i]) << "line " << i;
}

}  // namespace

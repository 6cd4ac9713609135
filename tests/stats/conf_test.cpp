// SPANMAP_CONF parsing: the jemalloc key:value,key:value syntax, values,
// warnings for unknown keys and bad values (which are ignored, the rest
// applying). The environment variable itself is tested end to end by ctest
// tests that run stats_conf_probe (tests/stats/CMakeLists.txt).
#include "conf.h"

#include <gtest/gtest.h>

#include <string>

namespace {

using spanmap::detail::conf;
using spanmap::detail::conf_values;
using spanmap::detail::parse_bool;
using spanmap::detail::parse_conf;
using spanmap::detail::parse_size;

class stats_conf : public ::testing::Test {
protected:
    // The at-exit report must not fire because a test turned it on.
    void TearDown() override { conf = conf_values{}; }

    // Parses text, returning the number of warnings and what went to stderr.
    static int parse(const char* text, std::string* err = nullptr) {
        ::testing::internal::CaptureStderr();
        const int n = parse_conf(text);
        const std::string out = ::testing::internal::GetCapturedStderr();
        if (err != nullptr) *err = out;
        return n;
    }
};

TEST_F(stats_conf, StatsPrintTakesTrueAndFalse) {
    EXPECT_EQ(parse("stats_print:true"), 0);
    EXPECT_TRUE(conf.stats_print);
    EXPECT_EQ(parse("stats_print:false"), 0);
    EXPECT_FALSE(conf.stats_print);
    EXPECT_EQ(parse("stats_print:1"), 0);
    EXPECT_TRUE(conf.stats_print);
}

TEST_F(stats_conf, EmptyAndMissingTextChangeNothing) {
    std::string err;
    EXPECT_EQ(parse("", &err), 0);
    EXPECT_EQ(parse(nullptr, &err), 0);
    EXPECT_EQ(parse(",,", &err), 0);
    EXPECT_EQ(err, "");
    EXPECT_FALSE(conf.stats_print);
}

TEST_F(stats_conf, UnknownKeyIsNamedAndIgnored) {
    std::string err;
    EXPECT_EQ(parse("bogus:1,stats_print:true", &err), 1);
    EXPECT_NE(err.find("unknown key \"bogus\""), std::string::npos) << err;
    EXPECT_NE(err.find("(ignored)"), std::string::npos) << err;
    EXPECT_TRUE(conf.stats_print) << "the keys after the bad one still apply";
}

TEST_F(stats_conf, BadValueIsNamedAndIgnored) {
    ASSERT_EQ(parse("stats_print:true"), 0);
    std::string err;
    EXPECT_EQ(parse("stats_print:maybe", &err), 1);
    EXPECT_NE(err.find("bad value \"maybe\" for stats_print"), std::string::npos) << err;
    EXPECT_TRUE(conf.stats_print) << "a bad value leaves the option as it was";
    EXPECT_EQ(parse("stats_print:", &err), 1);
    EXPECT_TRUE(conf.stats_print);
}

TEST_F(stats_conf, ItemsWithoutAColonAreReported) {
    std::string err;
    EXPECT_EQ(parse("stats_print,stats_print:true,:x", &err), 2);
    EXPECT_NE(err.find("expected key:value, got \"stats_print\""), std::string::npos) << err;
    EXPECT_NE(err.find("unknown key \"\""), std::string::npos) << err;
    EXPECT_TRUE(conf.stats_print);
}

TEST_F(stats_conf, LongTextIsQuotedShort) {
    const std::string key(500, 'k');
    std::string err;
    EXPECT_EQ(parse((key + ":1").c_str(), &err), 1);
    EXPECT_LT(err.size(), 200u);
    EXPECT_NE(err.find("...\""), std::string::npos) << err;
}

TEST(stats_conf_values, Booleans) {
    bool b = false;
    for (const char* yes : {"true", "1", "yes"}) {
        b = false;
        EXPECT_TRUE(parse_bool(yes, b)) << yes;
        EXPECT_TRUE(b) << yes;
    }
    for (const char* no : {"false", "0", "no"}) {
        b = true;
        EXPECT_TRUE(parse_bool(no, b)) << no;
        EXPECT_FALSE(b) << no;
    }
    for (const char* bad : {"", "TRUE", "2", "truee", " true"}) {
        b = true;
        EXPECT_FALSE(parse_bool(bad, b)) << bad;
        EXPECT_TRUE(b) << "untouched on failure";
    }
}

TEST(stats_conf_values, Sizes) {
    std::uint64_t v = 7;
    EXPECT_TRUE(parse_size("0", v));
    EXPECT_EQ(v, 0u);
    EXPECT_TRUE(parse_size("512", v));
    EXPECT_EQ(v, 512u);
    EXPECT_TRUE(parse_size("4k", v));
    EXPECT_EQ(v, 4096u);
    EXPECT_TRUE(parse_size("3M", v));
    EXPECT_EQ(v, 3u << 20);
    EXPECT_TRUE(parse_size("2g", v));
    EXPECT_EQ(v, std::uint64_t{2} << 30);
    EXPECT_TRUE(parse_size("18446744073709551615", v));
    EXPECT_EQ(v, ~std::uint64_t{0});
    v = 7;
    for (const char* bad : {"", "k", "-1", "1.5", "12x", "18446744073709551616", "17179869184g"}) {
        EXPECT_FALSE(parse_size(bad, v)) << bad;
        EXPECT_EQ(v, 7u) << "untouched on failure";
    }
}

}  // namespace

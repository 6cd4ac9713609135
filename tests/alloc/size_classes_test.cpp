// The checked-in size-class table against Go's (tests/data/go_sizeclasses.csv,
// printed by go1.22's mksizeclasses), its lookup tables against a plain scan,
// and the generator against the checked-in file.

#include "internal.h"
#include "sizeclasses.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

namespace {

namespace sc = spanmap::sc;

constexpr std::uint64_t kPage = std::uint64_t{1} << sc::page_shift;

struct go_row {
    int cls;
    std::uint64_t bytes_obj, bytes_span, objects, tail_waste;
    std::string max_waste_pct;  // kept as text: compared with our own "%.2f"
};

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<go_row> read_go_table() {
    std::ifstream in(SPANMAP_TEST_DATA_DIR "/go_sizeclasses.csv");
    std::vector<go_row> rows;
    std::string line;
    if (!std::getline(in, line)) return rows;
    EXPECT_EQ(line, "class,bytes_obj,bytes_span,objects,tail_waste,max_waste_pct");
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        std::istringstream fields(line);
        go_row r{};
        char c1, c2, c3, c4, c5;
        fields >> r.cls >> c1 >> r.bytes_obj >> c2 >> r.bytes_span >> c3 >> r.objects >> c4 >> r.tail_waste >> c5 >>
            r.max_waste_pct;
        EXPECT_TRUE(fields && c1 == ',' && c2 == ',' && c3 == ',' && c4 == ',' && c5 == ',') << "bad line: " << line;
        rows.push_back(r);
    }
    return rows;
}

// The class the allocator's lookup tables give for a small size (Go's
// size_to_class8 / size_to_class128 split at smallSizeMax - 8).
int lookup_class(std::uint64_t size) {
    if (size <= sc::small_size_max - 8) {
        const std::uint64_t i = (size + sc::small_size_div - 1) / sc::small_size_div;
        EXPECT_LT(i, std::size(sc::size_to_class8));
        return sc::size_to_class8[i];
    }
    const std::uint64_t i = (size - sc::small_size_max + sc::large_size_div - 1) / sc::large_size_div;
    EXPECT_LT(i, std::size(sc::size_to_class128));
    return sc::size_to_class128[i];
}

TEST(SizeClasses, Constants) {
    EXPECT_EQ(sc::page_shift, 13);
    EXPECT_EQ(sc::num_classes, 68);
    EXPECT_EQ(sc::max_small_size, 32768);
    EXPECT_EQ(sc::class_size[0], 0u) << "class 0 stands for large objects";
    EXPECT_EQ(sc::class_pages[0], 0u);
    EXPECT_EQ(sc::class_size[sc::num_classes - 1], std::uint32_t(sc::max_small_size));
}

TEST(SizeClasses, MatchGoTable) {
    const std::vector<go_row> go = read_go_table();
    ASSERT_EQ(go.size(), 67u) << "cannot read " SPANMAP_TEST_DATA_DIR "/go_sizeclasses.csv";

    std::uint64_t prev_size = 0;
    for (int c = 1; c < sc::num_classes; ++c) {
        SCOPED_TRACE(::testing::Message() << "class " << c);
        const go_row& want = go[c - 1];
        ASSERT_EQ(want.cls, c);

        const std::uint64_t size = sc::class_size[c];
        const std::uint64_t span = sc::class_pages[c] * kPage;
        const std::uint64_t objects = span / size;
        const std::uint64_t tail = span % size;
        // Go's max waste: every object holds the smallest request its class
        // serves (one byte above the previous class), plus the span's tail.
        const double max_waste = double((size - prev_size - 1) * objects + tail) / double(span);
        char pct[32];
        std::snprintf(pct, sizeof pct, "%.2f", 100 * max_waste);

        EXPECT_EQ(size, want.bytes_obj);
        EXPECT_EQ(span, want.bytes_span);
        EXPECT_EQ(objects, want.objects);
        EXPECT_EQ(tail, want.tail_waste);
        EXPECT_EQ(pct, want.max_waste_pct);
        EXPECT_GT(size, prev_size) << "classes must grow strictly";
        prev_size = size;
    }
}

TEST(SizeClasses, LookupGivesSmallestClassThatFits) {
    for (std::uint64_t size = 1; size <= std::uint64_t(sc::max_small_size); ++size) {
        const int c = lookup_class(size);
        ASSERT_GE(c, 1) << "size " << size;
        ASSERT_LT(c, sc::num_classes) << "size " << size;
        ASSERT_GE(sc::class_size[c], size) << "size " << size << " does not fit class " << c;
        ASSERT_LT(sc::class_size[c - 1], size) << "size " << size << " fits the smaller class " << c - 1;
    }
}

// The free path turns an offset in a span into an object index by a multiply
// and a shift; Go requires it to be exact for every offset in the span.
TEST(SizeClasses, DivMagicIsExactOverTheWholeSpan) {
    for (int c = 1; c < sc::num_classes; ++c) {
        const std::uint64_t size = sc::class_size[c];
        const std::uint64_t span = sc::class_pages[c] * kPage;
        EXPECT_EQ(sc::class_div_mul[c], std::uint32_t(~std::uint32_t{0} / size + 1)) << "class " << c;
        for (std::uint64_t off = 0; off <= span; ++off)
            ASSERT_EQ((off * sc::class_div_mul[c]) >> 32, off / size) << "class " << c << " offset " << off;
    }
}

// The object-start test is a multiply and a rotate (start_index32): the
// object's index where an object starts, and past every span's objects
// anywhere else. It must agree with the division at every offset a span of
// the class has (the checked path's offsets), and at every offset free's
// fast path computes from a page's word.
TEST(SizeClasses, ObjectStartIndexMatchesTheDivisionOverTheWholeSpan) {
    namespace d = spanmap::detail;
    for (int c = 1; c < sc::num_classes; ++c) {
        const std::uint64_t size = sc::class_size[c];
        const d::class_span_shape& shape = d::class_span_shapes[c];
        ASSERT_EQ(size >> shape.start_shift << shape.start_shift, size) << "class " << c;
        ASSERT_EQ((size >> shape.start_shift) % 2, 1u) << "class " << c;
        ASSERT_EQ(static_cast<std::uint32_t>((size >> shape.start_shift) * shape.start_inv), 1u) << "class " << c;
        const auto index32 = [&](std::uint32_t off) { return d::start_index32(off, shape.start_inv, shape.start_shift); };
        // A non-start must give more than this: past the most objects any
        // span holds.
        const std::uint32_t beyond = 0xffffffffu / static_cast<std::uint32_t>(size);
        ASSERT_GE(beyond, d::max_objects_per_span);
        const std::uint64_t span = sc::class_pages[c] * kPage;
        for (std::uint64_t off = 0; off <= span; ++off) {
            const std::uint32_t i = index32(static_cast<std::uint32_t>(off));
            if (off % size == 0)
                ASSERT_EQ(i, off / size) << "class " << c << " offset " << off;
            else
                ASSERT_GT(i, beyond) << "class " << c << " offset " << off;
        }
        // free's fast path: the offsets it computes from a page's
        // free_check word — every offset of the span, for spans at every
        // page of the word's 2^18 bytes (the last ones wrapping past it),
        // and, with the sampled bit flipped, the same offsets moved past
        // every object a span of the class hands out.
        const std::uint64_t nelems = shape.nelems;
        for (std::uint64_t base = 0x7f0000000000; base < 0x7f0000000000 + (std::uint64_t{1} << 18); base += kPage) {
            const std::uint32_t word = d::free_check_word(base, nelems);
            const std::uint32_t sampled = word ^ d::free_check_sampled;
            for (std::uint64_t off = 0; off < span; ++off) {
                ASSERT_EQ(d::free_check_offset(base + off, word), off);
                const std::uint32_t i = index32(d::free_check_offset(base + off, word));
                ASSERT_EQ(i < d::free_check_handed(word), off % size == 0 && off / size < nelems) << "class " << c << " offset " << off;
                ASSERT_GE(index32(d::free_check_offset(base + off, sampled)), d::free_check_handed(sampled))
                    << "class " << c << " sampled offset " << off;
            }
        }
    }
    // And across the whole 32-bit range for the classes with an odd factor,
    // where a wrong inverse would show first.
    for (int c = 1; c < sc::num_classes; ++c) {
        const std::uint64_t size = sc::class_size[c];
        if ((size & (size - 1)) == 0) continue;
        const d::class_span_shape& shape = d::class_span_shapes[c];
        const std::uint64_t beyond = 0xffffffffu / size;
        for (std::uint64_t k = 1; k < beyond; k = k * 3 + 1)
            for (const std::uint64_t off : {k * size - 1, k * size, k * size + 1, k * size + 8})
                ASSERT_EQ(d::start_index32(static_cast<std::uint32_t>(off), shape.start_inv, shape.start_shift) <= beyond,
                          off % size == 0)
                    << "size " << size << " offset " << off;
    }
}

TEST(SizeClasses, GeneratorReproducesCheckedInHeader) {
    const std::string out =
        ::testing::TempDir() + "sizeclasses." + std::to_string(::getpid()) + ".h";
    const std::string cmd = std::string("\"") + SPANMAP_MKSIZECLASSES + "\" \"" + out + "\"";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;

    const std::string generated = read_file(out);
    const std::string checked_in = read_file(SPANMAP_SIZECLASSES_H);
    std::remove(out.c_str());
    ASSERT_FALSE(checked_in.empty()) << "cannot read " SPANMAP_SIZECLASSES_H;
    // Byte for byte: the header says "DO NOT EDIT", and this is what makes it true.
    EXPECT_TRUE(generated == checked_in)
        << "alloc/src/sizeclasses.h differs from the generator's output; rebuild the "
           "`sizeclasses` target (generated " << generated.size() << " bytes, checked in "
        << checked_in.size() << " bytes)";
}

}  // namespace

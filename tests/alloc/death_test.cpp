// Pointers the heap did not hand out, pointers into the middle of objects and
// double frees must stop the process with a message naming the pointer —
// never silent corruption.
//
// How the address is matched: death tests run "threadsafe", i.e. the child
// re-executes this binary, and with ASLR its heap lies elsewhere than the
// parent's, so the parent cannot know the address in advance. The child
// therefore announces the pointer it is about to pass (printed with "%p") on
// stderr just before the fatal call, and the matcher checks that the
// allocator's own message, after the announcement, names that same address
// together with words saying what is wrong.

#include "fastpath.h"
#include "internal.h"
#include "test_util.h"

#include <gmock/gmock.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using namespace spanmap::test;

constexpr char kMarker[] = "spanmap-test: about to pass ";

// The exact wording is the allocator's to choose; any of these phrases
// (compared case-insensitively) says what happened.
const std::vector<std::string> kBadPointer = {
    "double free", "double-free", "freed twice", "already free", "invalid",        "foreign",
    "not allocated", "not owned",  "unknown",     "bad pointer",  "middle of",      "interior",
    "not its start", "not the start"};
const std::vector<std::string> kBadSize = {"size", "class", "mismatch"};
const std::vector<std::string> kBadRange = {"beyond the end"};

void announce(const void* p) { std::fprintf(stderr, "%s%p\n", kMarker, p); }

bool is_hex_digit(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

std::string lowercase(std::string s) {
    for (char& c : s)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return s;
}

std::string join(const std::vector<std::string>& phrases) {
    std::string all;
    for (const std::string& p : phrases) all += (all.empty() ? "\"" : ", \"") + p + "\"";
    return all;
}

// `arg` is the dead child's stderr. (No std::regex: GCC 12 warns inside it
// under -fsanitize=address, and warnings are errors.)
MATCHER_P(NamesAnnouncedAddressAnd, phrases,
          "names the announced address and says one of " + join(phrases) + " (any case)") {
    const std::string& err = arg;
    const std::size_t at = err.find(kMarker);
    if (at == std::string::npos) {
        *result_listener << "the child never announced its pointer";
        return false;
    }
    const std::size_t begin = at + std::strlen(kMarker);
    const std::size_t eol = err.find('\n', begin);
    const std::string address = err.substr(begin, eol - begin);
    const std::string message = eol == std::string::npos ? std::string() : err.substr(eol + 1);

    // The address as a whole token: 0x1230 must not pass for 0x123.
    bool named = false;
    for (std::size_t pos = message.find(address); pos != std::string::npos && !named;
         pos = message.find(address, pos + 1)) {
        const std::size_t end = pos + address.size();
        named = end == message.size() || !is_hex_digit(message[end]);
    }
    const std::string lower = lowercase(message);
    bool worded = false;
    for (const std::string& p : phrases) worded = worded || lower.find(p) != std::string::npos;
    if (!named) *result_listener << "the message does not name " << address;
    if (!worded) *result_listener << (named ? "" : "; ") << "the message says none of the phrases";
    return named && worded;
}

// Statement runs in the child after announcing `ptr`.
#define EXPECT_DIES_NAMING(ptr, statement, phrases) \
    EXPECT_DEATH(                                  \
        {                                          \
            announce(ptr);                         \
            statement;                             \
        },                                         \
        NamesAnnouncedAddressAnd(phrases))

class AllocDeathTest : public ::testing::Test {
protected:
    void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

char static_buffer[256];

// While a span holds a live heap-profile sample, free's fast path sends all
// its frees to the checked path (the sampled bit of its pages' free_check
// words); an address that is no object's start is still stopped there, at
// every place in the span.
TEST_F(AllocDeathTest, MisplacedFreeInASpanWithASampleStops) {
    namespace d = spanmap::detail;
    for (const std::size_t size : {16, 48, 256, 4096}) {
        char* p = static_cast<char*>(spanmap_malloc(size));
        ASSERT_NE(p, nullptr);
        d::mspan* s = d::span_of(addr(p));
        ASSERT_NE(s, nullptr);
        // What the profiler's sampler writes when it samples an object of s.
        d::flip_free_check_sampled(s);
        for (const std::size_t off : {std::size_t{1}, std::size_t{8}, size / 2}) {
            char* bad = p + off;
            EXPECT_DIES_NAMING(bad, spanmap_free(bad), kBadPointer) << size << " + " << off;
        }
        d::flip_free_check_sampled(s);
        spanmap_free(p);
    }
}

TEST_F(AllocDeathTest, FreeOfStackAddress) {
    int local = 0;
    void* bad = &local;
    EXPECT_DIES_NAMING(bad, spanmap_free(bad), kBadPointer);
}

TEST_F(AllocDeathTest, FreeOfStaticAddress) {
    void* bad = static_buffer + 16;
    EXPECT_DIES_NAMING(bad, spanmap_free(bad), kBadPointer);
}

TEST_F(AllocDeathTest, FreeOfLibcMallocPointer) {
    void* bad = std::malloc(64);
    ASSERT_NE(bad, nullptr);
    EXPECT_DIES_NAMING(bad, spanmap_free(bad), kBadPointer);
    std::free(bad);
}

TEST_F(AllocDeathTest, FreeOfLibcLargeMallocPointer) {
    // Large enough for glibc to mmap it on its own.
    void* bad = std::malloc(1 << 20);
    ASSERT_NE(bad, nullptr);
    EXPECT_DIES_NAMING(bad, spanmap_free(bad), kBadPointer);
    std::free(bad);
}

TEST_F(AllocDeathTest, DeleteOfOperatorNewPointerThroughSpanmap) {
    int* bad = new int(5);
    EXPECT_DIES_NAMING(bad, spanmap::deallocate(bad), kBadPointer);
    delete bad;
}

TEST_F(AllocDeathTest, ReallocOfForeignPointer) {
    int local = 0;
    void* bad = &local;
    EXPECT_DIES_NAMING(bad, (void)spanmap_realloc(bad, 100), kBadPointer);
}

TEST_F(AllocDeathTest, FreeOfInteriorPointerOfSmallObject) {
    auto* p = static_cast<char*>(spanmap_malloc(64));
    for (std::size_t off : {16u, 1u, 63u}) {
        void* bad = p + off;
        EXPECT_DIES_NAMING(bad, spanmap_free(bad), kBadPointer) << "offset " << off;
    }
    spanmap_free(p);
}

TEST_F(AllocDeathTest, FreeOfInteriorPointerOfLargeObject) {
    auto* p = static_cast<char*>(spanmap_malloc(100000));
    for (std::size_t off : {16u, 8192u, 65536u}) {
        void* bad = p + off;
        EXPECT_DIES_NAMING(bad, spanmap_free(bad), kBadPointer) << "offset " << off;
    }
    spanmap_free(p);
}

// The bytes after a span's last whole object (8 of them for the 24-byte class).
TEST_F(AllocDeathTest, FreeOfPointerIntoSpanTail) {
    void* p = spanmap::allocate(24, 8);
    const std::uintptr_t span_base = addr(p) & ~(kPage - 1);  // the 24-byte class has one-page spans
    void* bad = reinterpret_cast<void*>(span_base + kPage / 24 * 24);
    EXPECT_DIES_NAMING(bad, spanmap_free(bad), kBadPointer);
    spanmap::deallocate(p, 24, 8);
}

// A page of a reserved arena that no span holds (arenas are 64 MiB, aligned;
// this process has used little more than the bottom of its first one).
TEST_F(AllocDeathTest, FreeOfUnusedHeapPage) {
    void* p = spanmap_malloc(64);
    const std::uintptr_t arena_base = addr(p) & ~((std::uintptr_t{64} << 20) - 1);
    void* bad = reinterpret_cast<void*>(arena_base + (std::uintptr_t{60} << 20));
    EXPECT_DIES_NAMING(bad, spanmap_free(bad), kBadPointer);
    spanmap_free(p);
}

TEST_F(AllocDeathTest, DoubleFree) {
    void* p = spanmap_malloc(64);
    spanmap_free(p);
    EXPECT_DIES_NAMING(p, spanmap_free(p), kBadPointer);
}

TEST_F(AllocDeathTest, DoubleFreeAfterCacheFlush) {
    void* p = spanmap_malloc(64);
    spanmap_free(p);
    spanmap_thread_cache_flush();
    EXPECT_DIES_NAMING(p, spanmap_free(p), kBadPointer);
}

TEST_F(AllocDeathTest, DoubleFreeWithAnotherFreeInBetween) {
    void* p = spanmap_malloc(64);
    void* q = spanmap_malloc(64);
    spanmap_free(p);
    spanmap_free(q);
    EXPECT_DIES_NAMING(p, spanmap_free(p), kBadPointer);
}

// Three spans' worth of 1 KiB objects, all freed and flushed: mcentral keeps
// at most an empty span or so and gives the rest back to the heap, so the
// second free meets an object of a span that may no longer exist.
// free's fast path compares one byte of the free mark (fastpath.h,
// has_mark_tag). A live object whose first word shares that byte with its
// mark, and differs elsewhere, is freed all the same (by the checked path,
// which compares the whole word), and freeing it twice is still caught.
TEST_F(AllocDeathTest, LiveObjectSharingTheMarksTestedByteIsFreedAndItsDoubleFreeCaught) {
    namespace d = spanmap::detail;
    for (const std::size_t size : {16, 256, 4096}) {
        void* p = spanmap_malloc(size);
        ASSERT_NE(p, nullptr);
        const std::uintptr_t mark = d::free_mark(addr(p));
        const std::uintptr_t near = mark ^ 1;
        std::memcpy(p, &near, sizeof near);
        ASSERT_TRUE(d::has_mark_tag(p, mark)) << size;
        spanmap_free(p);
        // Freed into the bin it came from: the next object of the class.
        void* q = spanmap_malloc(size);
        EXPECT_EQ(q, p) << size;
        spanmap_free(q);
        EXPECT_DIES_NAMING(q, spanmap_free(q), kBadPointer);
    }
}

// The tested byte is never one a live object's first word commonly has in
// that place (0x00, 0xff, ASCII): the mark's top byte is 0x80-0xbf.
TEST(FreeMark, TopByteIsBetween0x80And0xbf) {
    void* p = spanmap_malloc(16);  // the keys are drawn at initialisation
    spanmap_free(p);
    for (std::uintptr_t a = 0x10000; a < 0x10000 + 16 * 100000; a += 16) {
        const std::uintptr_t mark = spanmap::detail::free_mark(a);
        ASSERT_EQ(mark >> 62, 2u) << std::hex << a;
    }
}

TEST_F(AllocDeathTest, DoubleFreeAfterItsSpanWentBackToTheHeap) {
    constexpr std::size_t kPerSpan = 8;  // 1024-byte class, one page
    std::vector<void*> blocks;
    for (std::size_t i = 0; i < 3 * kPerSpan; ++i) blocks.push_back(spanmap_malloc(1024));
    for (void* p : blocks) spanmap_free(p);
    spanmap_thread_cache_flush();
    std::sort(blocks.begin(), blocks.end());
    for (std::size_t i = 0; i < blocks.size(); i += kPerSpan) {
        void* p = blocks[i];
        EXPECT_DIES_NAMING(p, spanmap_free(p), kBadPointer) << "block " << i;
    }
}

// 32 KiB objects are a span each: freed and flushed, all but mcentral's
// spare wait whole in the heap's empty-span cache (heap.h), their page map
// and bitmaps intact. A second free, a realloc or a usable_size of one is
// still caught.
TEST_F(AllocDeathTest, UseOfAnObjectWhoseSpanIsCachedIsCaught) {
    std::vector<void*> blocks;
    for (int i = 0; i < 64; ++i) blocks.push_back(spanmap_malloc(32768));
    for (void* p : blocks) spanmap_free(p);
    spanmap_thread_cache_flush();
    ASSERT_GE(spanmap::debug::read_heap_info().cached_spans, 32u);
    for (const std::size_t i : {0, 31, 63}) {
        void* p = blocks[i];
        EXPECT_DIES_NAMING(p, spanmap_free(p), kBadPointer) << "block " << i;
        EXPECT_DIES_NAMING(p, (void)spanmap_realloc(p, 100), kBadPointer) << "block " << i;
        EXPECT_DIES_NAMING(p, (void)spanmap_usable_size(p), kBadPointer) << "block " << i;
    }
}

TEST_F(AllocDeathTest, FreeAfterFreeReleaseOfLargeObject) {
    void* p = spanmap_malloc(200000);
    spanmap_free_release(p);
    EXPECT_DIES_NAMING(p, spanmap_free(p), kBadPointer);
    EXPECT_DIES_NAMING(p, spanmap_free_release(p), kBadPointer);
}

// spanmap_shrink_release checks its block as free does, and the size against
// the block's usable size; the pages it cut off are free, and a pointer into
// them is no block.
TEST_F(AllocDeathTest, ShrinkReleaseOfFreedOrForeignBlock) {
    void* p = spanmap_malloc(200000);
    spanmap_free(p);
    EXPECT_DIES_NAMING(p, spanmap_shrink_release(p, 8192), kBadPointer);
    int local = 0;
    void* bad = &local;
    EXPECT_DIES_NAMING(bad, spanmap_shrink_release(bad, 8), kBadPointer);
}

TEST_F(AllocDeathTest, ShrinkReleasePastTheEndOfTheBlock) {
    auto* p = static_cast<char*>(spanmap_malloc(200000));
    const std::size_t usable = spanmap_usable_size(p);
    EXPECT_DIES_NAMING(p, spanmap_shrink_release(p, usable + 1), kBadRange);
    spanmap_shrink_release(p, usable);  // the whole block: nothing to cut
    spanmap_shrink_release(p, 100000);
    EXPECT_DIES_NAMING(p, spanmap_shrink_release(p, 100000 + 8192), kBadRange) << "the size before the cut";
    void* cut_off = p + 13 * 8192;  // a page past the new end
    EXPECT_DIES_NAMING(cut_off, spanmap_free(cut_off), kBadPointer);
    spanmap_free(p);
}

TEST_F(AllocDeathTest, SizedFreeReleaseWithTooLargeASize) {
    void* p = spanmap_malloc(200000);
    EXPECT_DIES_NAMING(p, spanmap::deallocate_release(p, 400000), kBadSize);
    spanmap_free(p);
}

TEST_F(AllocDeathTest, DoubleFreeOfLargeObject) {
    void* p = spanmap_malloc(100000);
    spanmap_free(p);
    EXPECT_DIES_NAMING(p, spanmap_free(p), kBadPointer);
}

// A freed large object waits whole in the large cache, still in the page map:
// it is recognized there as free by every call that checks its pointer.
TEST_F(AllocDeathTest, ReallocAndUsableSizeOfAParkedLargeObject) {
    void* p = spanmap_malloc(100000);
    spanmap_free(p);
    ASSERT_EQ(spanmap::debug::read_heap_info().large_cached_objects, 1u);
    EXPECT_DIES_NAMING(p, (void)spanmap_realloc(p, 200000), kBadPointer);
    EXPECT_DIES_NAMING(p, (void)spanmap_usable_size(p), kBadPointer);
    EXPECT_DIES_NAMING(p, spanmap_free_sized(p, 100000), kBadPointer);
}

TEST_F(AllocDeathTest, DoubleFreeOfHugeObject) {
    void* p = spanmap_malloc(std::size_t{100} << 20);
    spanmap_free(p);
    EXPECT_DIES_NAMING(p, spanmap_free(p), kBadPointer);
}

// Past its first page a large block has no page-map entry of its own: a
// pointer anywhere inside it is still named as one into a large object, for
// every call that checks it — across an arena's end in a block of 150 MiB,
// and in a block that grew in place over pages that were free.
TEST_F(AllocDeathTest, PointerIntoALargeBlockIsNamedAsOne) {
    const std::vector<std::string> kInterior = {"middle of a large object"};
    for (const std::size_t size : {std::size_t{100000}, std::size_t{1} << 20, std::size_t{150} << 20}) {
        auto* p = static_cast<char*>(spanmap_malloc(size));
        ASSERT_NE(p, nullptr);
        for (const std::size_t off : {std::size_t{8192}, size / 2 + 24, size - 16}) {
            void* bad = p + off;
            EXPECT_DIES_NAMING(bad, spanmap_free(bad), kInterior) << size << " bytes, offset " << off;
            EXPECT_DIES_NAMING(bad, (void)spanmap_realloc(bad, 10), kInterior) << size << " bytes, offset " << off;
        }
        spanmap_free(p);
    }
    auto* q = static_cast<char*>(spanmap_malloc(100000));
    auto* grown = static_cast<char*>(spanmap_realloc(q, 400000));
    ASSERT_NE(grown, nullptr);
    void* bad = grown + 300000;
    EXPECT_DIES_NAMING(bad, spanmap_free(bad), kInterior);
    spanmap_free(grown);
}

TEST_F(AllocDeathTest, DoubleFreeThroughSizedAndCxxApis) {
    void* p = spanmap_malloc(200);
    spanmap_free_sized(p, 200);
    EXPECT_DIES_NAMING(p, spanmap_free_sized(p, 200), kBadPointer);

    void* q = spanmap::allocate(24, 8);
    spanmap::deallocate(q, 24, 8);
    EXPECT_DIES_NAMING(q, spanmap::deallocate(q, 24, 8), kBadPointer);
}

TEST_F(AllocDeathTest, SizedFreeWithSizeOfAnotherClass) {
    void* p = spanmap_malloc(100);  // the 112-byte class
    EXPECT_DIES_NAMING(p, spanmap_free_sized(p, 2000), kBadSize);
    void* q = spanmap_malloc(100000);  // 13 pages
    EXPECT_DIES_NAMING(q, spanmap_free_sized(q, 300000), kBadSize);
    spanmap_free(p);
    spanmap_free(q);
}

// Objects that a thread cache took from mcentral but never handed out sit
// next to the one malloc returned: freeing one of them must stop the
// process, whether it is still in the cache or went back to its span.
TEST_F(AllocDeathTest, FreeOfNeighbourNeverHandedOut) {
    auto* p = static_cast<char*>(spanmap_malloc(16));
    for (std::ptrdiff_t off : {16, -16}) {
        void* bad = p + off;
        EXPECT_DIES_NAMING(bad, spanmap_free(bad), kBadPointer) << "offset " << off;
    }
    auto* q = static_cast<char*>(spanmap_malloc(8));  // the 8-byte class
    void* bad8 = q + 8;
    EXPECT_DIES_NAMING(bad8, spanmap_free(bad8), kBadPointer);
    spanmap_free(p);
    spanmap_free(q);
}

TEST_F(AllocDeathTest, FreeOfNeighbourNeverHandedOutAfterAFlush) {
    auto* p = static_cast<char*>(spanmap_malloc(16));
    spanmap_thread_cache_flush();
    for (std::ptrdiff_t off : {16, -16}) {
        void* bad = p + off;
        EXPECT_DIES_NAMING(bad, spanmap_free(bad), kBadPointer) << "offset " << off;
    }
    spanmap_free(p);
}

// The top of a fresh span was never handed out at all: the last 3 KiB object
// of the span that the first one came from.
TEST_F(AllocDeathTest, FreeOfObjectNeverHandedOutOfItsSpan) {
    constexpr std::size_t kSize = 3072;  // 8 objects in a 3-page span, batches of 5
    void* p = spanmap_malloc(kSize);
    const spanmap::detail::mspan* s = spanmap::detail::span_of(addr(p));
    ASSERT_NE(s, nullptr);
    ASSERT_EQ(s->elem_size, kSize);
    // A refill takes 5 of its 8 objects: the last one is still in the span.
    ASSERT_EQ(s->nelems, 8u);
    void* bad = reinterpret_cast<void*>(s->base + std::uintptr_t{s->nelems - 1} * kSize);
    EXPECT_DIES_NAMING(bad, spanmap_free(bad), kBadPointer);
    spanmap_free(p);
}

// A freed 1 MiB block whose pages a small span took over at once (the
// scavenger's start allocates: that is how it happened): the second free
// lands on that span's first object, which sits unused in a cache.
TEST_F(AllocDeathTest, DoubleFreeOfLargeObjectWhosePagesWereReused) {
    void* p = spanmap_malloc(std::size_t{1} << 20);
    spanmap_free(p);
    void* small = spanmap_malloc(320);
    EXPECT_DIES_NAMING(p, spanmap_free(p), kBadPointer);
    spanmap_free(small);
}

TEST_F(AllocDeathTest, ReallocOfFreedPointer) {
    for (std::size_t size : {16u, 64u, 100000u}) {
        void* p = spanmap_malloc(size);
        spanmap_free(p);
        EXPECT_DIES_NAMING(p, (void)spanmap_realloc(p, size), kBadPointer) << size << " bytes";
    }
}

TEST_F(AllocDeathTest, UsableSizeOfFreedPointer) {
    for (std::size_t size : {16u, 64u, 100000u}) {
        void* p = spanmap_malloc(size);
        spanmap_free(p);
        EXPECT_DIES_NAMING(p, (void)spanmap_usable_size(p), kBadPointer) << size << " bytes";
    }
}

// Random addresses near live and free objects: each is either a live
// object's start, and is then freed like any other, or stops the process
// with a message naming it. The model is the set of live starts: the sizes
// are of classes no other test here uses, so every live object of theirs is
// this test's. Each death runs in a forked child ("fast" style), so that it
// meets the very heap the parent's model describes.
TEST_F(AllocDeathTest, FreeOfRandomAddressesNearObjects) {
    GTEST_FLAG_SET(death_test_style, "fast");
    for (const std::size_t size : {48u, 96u, 176u, 512u}) {
        std::uint64_t rng = 0x9e3779b97f4a7c15ULL ^ size;
        auto next = [&rng](std::uint64_t bound) {
            rng = mix(rng + 0x9e3779b97f4a7c15ULL);
            return rng % bound;
        };
        std::vector<char*> all;  // every object allocated, live or not
        std::vector<char*> live;
        for (int i = 0; i < 200; ++i) all.push_back(static_cast<char*>(spanmap_malloc(size)));
        for (char* p : all)
            if (next(3) != 0) live.push_back(p);
            else spanmap_free(p);
        if (next(2) == 0) spanmap_thread_cache_flush();

        int deaths = 0;
        for (int step = 0; step < 200 && deaths < 16; ++step) {
            // Half the time near the newest objects, whose neighbours are
            // likeliest to be in the cache, never handed out.
            char* base = next(2) == 0 ? all[next(all.size())] : all[all.size() - 1 - next(8)];
            // Up to two objects either side, 8-byte steps: starts and interiors
            // of live, free and never-allocated objects alike.
            // Object starts half the time (most 8-byte steps are interiors).
            const auto step8 = static_cast<std::ptrdiff_t>(size / 8);
            char* target = next(2) == 0 ? base + (static_cast<std::ptrdiff_t>(next(5)) - 2) * static_cast<std::ptrdiff_t>(size)
                                        : base + (static_cast<std::ptrdiff_t>(next(4 * size / 8 + 1)) - 2 * step8) * 8;
            const auto it = std::find(live.begin(), live.end(), target);
            if (it != live.end()) {
                spanmap_free(target);
                live.erase(it);
                continue;
            }
            void* bad = target;
            EXPECT_DIES_NAMING(bad, spanmap_free(bad), kBadPointer) << size << " bytes, step " << step;
            ++deaths;
        }
        for (char* p : live) spanmap_free(p);
        EXPECT_TRUE(invariants_hold());
    }
}

#if defined(__SANITIZE_ADDRESS__)
// Under AddressSanitizer the arena's free memory is poisoned, so a use after
// free is reported where it happens, as for malloc's own blocks.
TEST_F(AllocDeathTest, UseAfterFreeIsSeenByAddressSanitizer) {
    auto* small = static_cast<char*>(spanmap_malloc(64));
    spanmap_free(small);
    EXPECT_DEATH(small[16] = 1, "use-after-poison");
    auto* large = static_cast<char*>(spanmap_malloc(100000));
    spanmap_free(large);
    EXPECT_DEATH(large[50000] = 1, "use-after-poison");
    // What malloc hands out again is writable.
    auto* again = static_cast<char*>(spanmap_malloc(64));
    std::memset(again, 1, 64);
    spanmap_free(again);
}
#endif

}  // namespace

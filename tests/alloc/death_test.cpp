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

TEST_F(AllocDeathTest, DoubleFreeOfLargeObject) {
    void* p = spanmap_malloc(100000);
    spanmap_free(p);
    EXPECT_DIES_NAMING(p, spanmap_free(p), kBadPointer);
}

TEST_F(AllocDeathTest, DoubleFreeOfHugeObject) {
    void* p = spanmap_malloc(std::size_t{100} << 20);
    spanmap_free(p);
    EXPECT_DIES_NAMING(p, spanmap_free(p), kBadPointer);
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

}  // namespace

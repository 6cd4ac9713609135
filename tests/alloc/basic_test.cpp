// Single-threaded contracts of the C and C++ APIs: usable sizes and alignment
// of every small size, large and aligned objects, failures, zeroing, realloc,
// reuse, errno, sized frees and spanmap::allocator<T> in standard containers.

#include "test_util.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <list>
#include <map>
#include <new>
#include <set>
#include <string>
#include <vector>

namespace {

using namespace spanmap::test;

constexpr std::size_t kSizeMax = std::numeric_limits<std::size_t>::max();
constexpr std::size_t MiB = std::size_t{1} << 20;

using Basic = HeapTest;

// Writes every byte the allocator says is usable, so a block that is shorter
// than its usable size (or overlaps a neighbour's header) is caught, and reads
// the ends back. memset keeps the 32768-size sweep cheap.
void touch_usable(void* p, std::size_t usable, unsigned char v) {
    std::memset(p, v, usable);
    auto* b = static_cast<unsigned char*>(p);
    ASSERT_EQ(b[0], v);
    ASSERT_EQ(b[usable - 1], v);
}

TEST_F(Basic, MallocEverySmallSize) {
    // Live neighbours: a block written past its end would clobber the previous
    // size's block, which is checked when it is freed. Sanitizers check the
    // accesses themselves; there the pattern covers only each block's head.
    const auto pattern_len = [](std::size_t n) { return kSanitized ? std::min<std::size_t>(n, 256) : n; };
    void* prev = nullptr;
    std::size_t prev_n = 0;
    for (std::size_t n = 1; n <= kMaxSmall; ++n) {
        void* p = spanmap_malloc(n);
        ASSERT_NE(p, nullptr) << n;
        const std::size_t usable = spanmap_usable_size(p);
        ASSERT_EQ(usable, expected_malloc_usable(n)) << "malloc(" << n << ")";
        ASSERT_EQ(spanmap_good_size(n), usable) << n;
        ASSERT_EQ(spanmap::usable_size(p), usable) << n;
        ASSERT_EQ(addr(p) % (n > 8 ? 16 : 8), 0u) << "malloc(" << n << ") = " << p;
        touch_usable(p, usable, static_cast<unsigned char>(n));
        if (prev != nullptr) {
            ASSERT_EQ(check_pattern(prev, pattern_len(prev_n), prev_n), -1) << "block of " << prev_n << " clobbered";
            spanmap_free(prev);
        }
        fill_pattern(p, pattern_len(n), n);
        prev = p;
        prev_n = n;
    }
    ASSERT_EQ(check_pattern(prev, pattern_len(prev_n), prev_n), -1);
    spanmap_free(prev);
}

TEST_F(Basic, AllocateEverySmallSize) {
    for (std::size_t n = 1; n <= kMaxSmall; ++n) {
        // Alignment 8: any class, including 24 bytes for 17..24.
        void* p = spanmap::allocate(n, 8);
        const std::size_t usable = spanmap::usable_size(p);
        ASSERT_EQ(usable, expected_allocate8_usable(n)) << "allocate(" << n << ", 8)";
        ASSERT_EQ(spanmap::good_size(n, 8), usable) << n;
        ASSERT_EQ(addr(p) % 8, 0u);
        touch_usable(p, usable, 0x5a);
        spanmap::deallocate(p, n, 8);

        // The default (16) behaves like malloc above 8 bytes and must still be
        // 16-byte aligned below.
        void* q = spanmap::allocate(n);
        const std::size_t q_usable = spanmap::usable_size(q);
        ASSERT_EQ(addr(q) % 16, 0u) << "allocate(" << n << ") = " << q;
        ASSERT_EQ(spanmap::good_size(n), q_usable) << n;
        if (n > 8) {
            ASSERT_EQ(q_usable, expected_malloc_usable(n)) << "allocate(" << n << ")";
        }
        ASSERT_GE(q_usable, n);
        touch_usable(q, q_usable, 0xa5);
        spanmap::deallocate(q, n);
    }
}

// allocate has a fast path for alignments up to 16 and a slow one above:
// every size and alignment on either side of that bound gets the block
// good_size promises, aligned. An alignment that is not a power of two
// throws, small size or large.
TEST_F(Basic, AllocateAtEveryAlignmentUpTo32GetsTheClassGoodSizeNames) {
    for (std::size_t align = 1; align <= 32; align *= 2) {
        for (std::size_t n = 0; n <= 1100; ++n) {
            void* p = spanmap::allocate(n, align);
            ASSERT_EQ(addr(p) % align, 0u) << n << " at " << align;
            ASSERT_EQ(spanmap::usable_size(p), spanmap::good_size(n, align)) << n << " at " << align;
            touch_usable(p, spanmap::usable_size(p), 0x3c);
            spanmap::deallocate(p, n, align);
        }
    }
    for (const std::size_t align : {0, 3, 12, 24}) {
        EXPECT_THROW((void)spanmap::allocate(64, align), std::bad_alloc) << align;
        EXPECT_THROW((void)spanmap::allocate(2000, align), std::bad_alloc) << align;
    }
}

TEST_F(Basic, TwentyFourByteClassOnlyForSmallAlignment) {
    for (std::size_t n = 17; n <= 24; ++n) {
        EXPECT_EQ(spanmap_good_size(n), 32u) << n;
        EXPECT_EQ(spanmap::good_size(n), 32u) << n;
        EXPECT_EQ(spanmap::good_size(n, 8), 24u) << n;
        EXPECT_EQ(spanmap::good_size(n, 4), 24u) << n;
        EXPECT_EQ(spanmap::good_size(n, 1), 24u) << n;
    }
}

TEST_F(Basic, LargeObjects) {
    const std::size_t sizes[] = {kMaxSmall + 1, 40000,       64 * 1024,  MiB,
                                 3 * MiB + 1,   100 * MiB,   200 * MiB};
    const spanmap::debug::heap_info before = spanmap::debug::read_heap_info();
    std::vector<void*> live;
    for (std::size_t n : sizes) {
        void* p = spanmap_malloc(n);
        ASSERT_NE(p, nullptr) << n;
        const std::size_t usable = spanmap_usable_size(p);
        EXPECT_EQ(usable, round_up(n, kPage)) << n;
        EXPECT_EQ(spanmap_good_size(n), usable) << n;
        EXPECT_EQ(addr(p) % 16, 0u);
        // One byte per OS page, tagged with the page index: proves every page
        // is mapped and distinct without the cost of filling 300 MiB.
        auto* b = static_cast<unsigned char*>(p);
        for (std::size_t off = 0; off < usable; off += 4096) b[off] = static_cast<unsigned char>(off >> 12);
        b[usable - 1] = 0xee;
        live.push_back(p);
    }
    EXPECT_EQ(spanmap::debug::read_heap_info().large_objects, before.large_objects + std::size(sizes));
    // 200 MiB does not fit a 64 MiB arena: the heap must have reserved more.
    EXPECT_GE(spanmap::debug::read_heap_info().arenas, 4u);
    for (std::size_t i = 0; i < live.size(); ++i) {
        const auto* b = static_cast<const unsigned char*>(live[i]);
        const std::size_t usable = spanmap_usable_size(live[i]);
        for (std::size_t off = 0; off < usable - 1; off += 4096)
            ASSERT_EQ(b[off], static_cast<unsigned char>(off >> 12)) << "size " << sizes[i] << " offset " << off;
        ASSERT_EQ(b[usable - 1], 0xee);
        spanmap_free(live[i]);
    }
    EXPECT_EQ(spanmap::debug::read_heap_info().large_objects, before.large_objects);
}

TEST_F(Basic, AlignedAllocationSweep) {
    const std::size_t sizes[] = {0, 1, 24, 100, 5000, 40000, MiB + 3};
    unsigned turn = 0;
    for (std::size_t align = 1; align <= 4 * MiB; align *= 2) {
        for (std::size_t n : sizes) {
            SCOPED_TRACE(::testing::Message() << "align " << align << " size " << n);
            void* p = spanmap_aligned_alloc(align, n);
            ASSERT_NE(p, nullptr);
            EXPECT_EQ(addr(p) % align, 0u) << p;
            EXPECT_GE(spanmap_usable_size(p), n);
            fill_pattern(p, n, align + n);

            void* q = spanmap::allocate(n, align);
            EXPECT_EQ(addr(q) % align, 0u) << q;
            const std::size_t q_usable = spanmap::usable_size(q);
            EXPECT_GE(q_usable, n);
            EXPECT_EQ(spanmap::good_size(n, align), q_usable);
            std::memset(q, 0x77, q_usable);
            EXPECT_NE(p, q);

            EXPECT_EQ(check_pattern(p, n, align + n), -1) << "clobbered by the next aligned block";
            // Both ways to give an aligned block back to the C API.
            if (++turn % 2 == 0)
                spanmap_free_aligned_sized(p, align, n);
            else
                spanmap_free(p);
            spanmap::deallocate(q, n, align);
        }
    }
}

TEST_F(Basic, AlignmentMustBeAPowerOfTwo) {
    for (std::size_t align : {std::size_t{0}, std::size_t{3}, std::size_t{24}, std::size_t{48},
                              std::size_t{4097}, kSizeMax}) {
        errno = 0;
        EXPECT_EQ(spanmap_aligned_alloc(align, 64), nullptr) << align;
        EXPECT_EQ(errno, EINVAL) << align;
    }
}

TEST_F(Basic, MallocZeroIsUniqueAndUsable) {
    std::set<void*> seen;
    std::vector<void*> blocks;
    for (int i = 0; i < 100; ++i) {
        void* p = spanmap_malloc(0);
        ASSERT_NE(p, nullptr);
        EXPECT_TRUE(seen.insert(p).second) << "malloc(0) returned " << p << " twice";
        EXPECT_EQ(spanmap_usable_size(p), spanmap_good_size(0));
        blocks.push_back(p);
        void* q = spanmap::allocate(0);
        ASSERT_NE(q, nullptr);
        EXPECT_TRUE(seen.insert(q).second) << "allocate(0) returned " << q << " twice";
        blocks.push_back(q);
    }
    for (void* p : blocks) spanmap_free(p);
}

TEST_F(Basic, ImpossibleRequestsFailWithEnomem) {
    const std::size_t sizes[] = {kSizeMax, kSizeMax - 1, kSizeMax - kPage, kSizeMax / 2, kSizeMax / 2 + 1,
                                 std::size_t{1} << 50};
    for (std::size_t n : sizes) {
        errno = 0;
        EXPECT_EQ(spanmap_malloc(n), nullptr) << n;
        EXPECT_EQ(errno, ENOMEM) << n;
        errno = 0;
        EXPECT_EQ(spanmap_aligned_alloc(64, n), nullptr) << n;
        EXPECT_EQ(errno, ENOMEM) << n;
        errno = 0;
        EXPECT_EQ(spanmap_calloc(1, n), nullptr) << n;
        EXPECT_EQ(errno, ENOMEM) << n;
        EXPECT_THROW((void)spanmap::allocate(n), std::bad_alloc) << n;
        EXPECT_THROW((void)spanmap::allocate(n, 4096), std::bad_alloc) << n;
        EXPECT_THROW((void)spanmap::allocate_zeroed(n), std::bad_alloc) << n;
    }
    // A valid power of two that no address space can honour.
    errno = 0;
    EXPECT_EQ(spanmap_aligned_alloc(std::size_t{1} << 62, 16), nullptr);
    EXPECT_EQ(errno, ENOMEM);
}

TEST_F(Basic, CallocOverflowFailsWithEnomem) {
    const std::pair<std::size_t, std::size_t> cases[] = {
        {kSizeMax, 2}, {2, kSizeMax}, {kSizeMax / 2 + 1, 2}, {std::size_t{1} << 32, std::size_t{1} << 32},
        {kSizeMax / 16 + 1, 16}};
    for (auto [count, size] : cases) {
        errno = 0;
        EXPECT_EQ(spanmap_calloc(count, size), nullptr) << count << " x " << size;
        EXPECT_EQ(errno, ENOMEM) << count << " x " << size;
    }
    // A product of zero does not overflow.
    for (auto [count, size] : {std::pair{kSizeMax, std::size_t{0}}, std::pair{std::size_t{0}, kSizeMax}}) {
        void* p = spanmap_calloc(count, size);
        EXPECT_NE(p, nullptr) << count << " x " << size;
        spanmap_free(p);
    }
}

TEST_F(Basic, AllocatorOverflowThrowsBadArrayNewLength) {
    spanmap::allocator<std::uint64_t> a;
    EXPECT_THROW((void)a.allocate(kSizeMax / 4), std::bad_array_new_length);
    EXPECT_THROW((void)a.allocate(kSizeMax), std::bad_array_new_length);
    EXPECT_THROW((void)a.allocate_zeroed(kSizeMax / 4), std::bad_array_new_length);
    // No overflow, just too big: the plain failure.
    try {
        (void)a.allocate(kSizeMax / 16);
        ADD_FAILURE() << "allocate(SIZE_MAX / 16) of 8-byte elements succeeded";
    } catch (const std::bad_array_new_length&) {
        ADD_FAILURE() << "no overflow here: expected plain std::bad_alloc";
    } catch (const std::bad_alloc&) {
    }
}

// Sizes that cover every class boundary region plus large objects; each is a
// whole class (or page) size so the reused block is fully requested again.
std::vector<std::size_t> class_and_large_sizes() {
    std::vector<std::size_t> sizes;
    for (int c = 1; c < sc::num_classes; ++c) sizes.push_back(sc::class_size[c]);
    sizes.push_back(5 * kPage);
    sizes.push_back(40 * kPage);
    return sizes;
}

TEST_F(Basic, CallocZeroesReusedMemory) {
    for (std::size_t n : class_and_large_sizes()) {
        if (n == 24) continue;  // malloc never hands out the 24-byte class
        void* p = spanmap_malloc(n);
        ASSERT_NE(p, nullptr);
        std::memset(p, 0xab, spanmap_usable_size(p));
        spanmap_free(p);
        void* q = spanmap_calloc(1, n);
        ASSERT_NE(q, nullptr);
        EXPECT_EQ(first_nonzero(q, n), -1) << "calloc(1, " << n << ") at " << q << (q == p ? " (reused)" : "");
        std::memset(q, 0xcd, n);
        spanmap_free(q);

        // Same class through count * size, and through the C++ API.
        void* r = spanmap_calloc(n / 8, 8);
        EXPECT_EQ(first_nonzero(r, n / 8 * 8), -1) << "calloc(" << n / 8 << ", 8)";
        std::memset(r, 0xef, n / 8 * 8);
        spanmap_free(r);
        void* z = spanmap::allocate_zeroed(n);
        EXPECT_EQ(first_nonzero(z, n), -1) << "allocate_zeroed(" << n << ")";
        spanmap::deallocate(z, n);
    }
    // The 24-byte class is reached by a sized C++ request aligned to 8.
    void* p = spanmap::allocate(24, 8);
    std::memset(p, 0xab, 24);
    spanmap::deallocate(p, 24, 8);
    void* z = spanmap::allocate_zeroed(24, 8);
    EXPECT_EQ(first_nonzero(z, 24), -1);
    spanmap::deallocate(z, 24, 8);
}

TEST_F(Basic, CallocOfOddProductIsZeroed) {
    void* p = spanmap_malloc(96);
    std::memset(p, 0xab, 96);
    spanmap_free(p);
    void* q = spanmap_calloc(7, 13);  // 91 bytes: the 96-byte class again
    EXPECT_EQ(first_nonzero(q, 91), -1);
    spanmap_free(q);
}

TEST_F(Basic, ReallocKeepsContents) {
    // small -> small (grow, shrink) -> large -> large (grow, shrink) -> small.
    const std::size_t steps[] = {100, 200, 50, 100000, 3 * MiB, 200000, 40000, 1000, 33000, 17, 8};
    void* p = spanmap_malloc(steps[0]);
    fill_pattern(p, steps[0], 7);
    std::size_t have = steps[0];
    for (std::size_t i = 1; i < std::size(steps); ++i) {
        const std::size_t n = steps[i];
        void* q = spanmap_realloc(p, n);
        ASSERT_NE(q, nullptr) << have << " -> " << n;
        EXPECT_GE(spanmap_usable_size(q), n);
        EXPECT_EQ(check_pattern(q, std::min(have, n), 7), -1) << "realloc " << have << " -> " << n;
        fill_pattern(q, n, 7);
        p = q;
        have = n;
    }
    spanmap_free(p);
}

TEST_F(Basic, ReallocEdgeCases) {
    void* p = spanmap_realloc(nullptr, 64);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(spanmap_usable_size(p), 64u);
    fill_pattern(p, 64, 1);

    // realloc(p, 0) frees p and returns NULL, as glibc does (spanmap.h);
    // that p really went back shows in the thread cache handing it out again.
    EXPECT_EQ(spanmap_realloc(p, 0), nullptr);
    void* again = spanmap_malloc(64);
    EXPECT_EQ(again, p) << "realloc(p, 0) should have freed p";
    spanmap_free(again);

    // realloc(NULL, 0) is malloc(0): a unique block.
    void* z = spanmap_realloc(nullptr, 0);
    EXPECT_NE(z, nullptr);
    spanmap_free(z);

    // A failed realloc leaves the block alone.
    void* b = spanmap_malloc(300);
    fill_pattern(b, 300, 2);
    errno = 0;
    EXPECT_EQ(spanmap_realloc(b, kSizeMax / 2), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    EXPECT_EQ(check_pattern(b, 300, 2), -1);
    EXPECT_EQ(spanmap_usable_size(b), 320u);
    spanmap_free(b);
}

TEST_F(Basic, FreedBlockIsReusedFirst) {
    for (std::size_t n : class_and_large_sizes()) {
        if (n > kMaxSmall) continue;
        void* p = spanmap_malloc(n);
        spanmap_free(p);
        void* q = spanmap_malloc(n);
        EXPECT_EQ(q, p) << "size " << n << ": the thread cache should hand back the block just freed";
        spanmap_free(q);
    }
}

TEST_F(Basic, FreedSetIsReused) {
    for (std::size_t n : {std::size_t{8}, std::size_t{48}, std::size_t{256}, std::size_t{1408}, std::size_t{4096},
                          std::size_t{12288}, std::size_t{32768}}) {
        const std::size_t count = n <= 4096 ? 16 : 4;
        std::set<void*> freed;
        for (std::size_t i = 0; i < count; ++i) freed.insert(spanmap_malloc(n));
        ASSERT_EQ(freed.size(), count);
        for (void* p : freed) spanmap_free(p);
        std::set<void*> again;
        for (std::size_t i = 0; i < count; ++i) again.insert(spanmap_malloc(n));
        EXPECT_EQ(again, freed) << "size " << n;
        for (void* p : again) spanmap_free(p);
    }
}

TEST_F(Basic, FreeKeepsErrno) {
    std::vector<void*> blocks;
    for (std::size_t n : class_and_large_sizes()) blocks.push_back(spanmap_malloc(n));
    blocks.push_back(spanmap_malloc(100 * MiB));
    for (void* p : blocks) {
        const std::size_t usable = spanmap_usable_size(p);
        errno = 4242;
        spanmap_free(p);
        ASSERT_EQ(errno, 4242) << "errno changed by freeing a block of " << usable << " bytes";
    }
    errno = 4243;
    spanmap_free(nullptr);
    EXPECT_EQ(errno, 4243);

    // Enough frees of one class to overflow the thread cache into mcentral,
    // and a flush, must not touch errno either.
    std::vector<void*> many;
    for (int i = 0; i < 20000; ++i) many.push_back(spanmap_malloc(64));
    errno = 4244;
    for (void* p : many) spanmap_free(p);
    spanmap_thread_cache_flush();
    EXPECT_EQ(errno, 4244);

    void* p = spanmap_malloc(200);
    errno = 4245;
    spanmap_free_sized(p, 200);
    EXPECT_EQ(errno, 4245);
}

TEST_F(Basic, SizedFrees) {
    std::vector<std::size_t> sizes;
    for (std::size_t n = 1; n <= kMaxSmall; n += 37) sizes.push_back(n);
    for (std::size_t n : {std::size_t{40000}, std::size_t{65536}, 3 * MiB + 1}) sizes.push_back(n);
    // A sized free really frees: the block is the next one handed out for the
    // same request — a small one from the top of this thread's bin, a large
    // one as the lowest free run that fits, which it was a moment ago.
    for (std::size_t n : sizes) {
        SCOPED_TRACE(n);
        // The requested size, and anything up to the usable size, is accepted.
        void* p = spanmap_malloc(n);
        spanmap_free_sized(p, n);
        void* q = spanmap_malloc(n);
        EXPECT_EQ(q, p);
        spanmap_free_sized(q, spanmap_usable_size(q));
        EXPECT_EQ(spanmap_malloc(n), q);
        spanmap_free(q);
        void* r = spanmap::allocate(n, 8);
        spanmap::deallocate(r, n, 8);
        EXPECT_EQ(spanmap::allocate(n, 8), r);
        spanmap::deallocate(r);
        void* d = spanmap::allocate(n);
        spanmap::deallocate(d, n);
        EXPECT_EQ(spanmap::allocate(n), d);
        spanmap::deallocate(d);
        void* t = spanmap::allocate(n, 256);
        spanmap::deallocate(t, n, 256);
        void* t2 = spanmap::allocate(n, 256);
        EXPECT_EQ(t2, t);
        spanmap::deallocate(t2);
        void* u = spanmap_aligned_alloc(4096, n);
        spanmap_free_aligned_sized(u, 4096, n);
        void* u2 = spanmap_aligned_alloc(4096, n);
        EXPECT_EQ(u2, u);
        spanmap_free(u2);
    }
}

TEST_F(Basic, ThreadCacheFlushEmptiesTheCache) {
    std::vector<void*> blocks;
    for (int i = 0; i < 100; ++i) blocks.push_back(spanmap_malloc(64));
    for (void* p : blocks) spanmap_free(p);
    const auto before = spanmap::debug::read_heap_info();
    EXPECT_GT(before.cached_objects, 0u);
    EXPECT_GT(before.cached_bytes, 0u);
    spanmap_thread_cache_flush();
    const auto after = spanmap::debug::read_heap_info();
    // The only thread in this process has no cached objects left.
    EXPECT_EQ(after.cached_objects, 0u);
    EXPECT_EQ(after.cached_bytes, 0u);
    EXPECT_GE(after.live_caches, 1u);
}

TEST_F(Basic, HeapInfoAccountsForLargeObjects) {
    const auto before = spanmap::debug::read_heap_info();
    void* p = spanmap_malloc(10 * kPage);
    const auto during = spanmap::debug::read_heap_info();
    EXPECT_EQ(during.large_objects, before.large_objects + 1);
    EXPECT_EQ(during.pages_in_use, before.pages_in_use + 10);
    // Pages move between "free" and "in use"; the heap may have reserved more.
    EXPECT_GE(during.pages_in_use + during.pages_free, before.pages_in_use + before.pages_free);
    spanmap_free(p);
    // Freed, it waits whole in the large cache for the next request of its
    // size: still pages in use for the heap, but no longer a live object.
    const auto after = spanmap::debug::read_heap_info();
    EXPECT_EQ(after.large_objects, before.large_objects);
    EXPECT_EQ(after.large_cached_objects, before.large_cached_objects + 1);
    EXPECT_EQ(after.large_cached_bytes, before.large_cached_bytes + 10 * kPage);
    EXPECT_EQ(after.pages_in_use, before.pages_in_use + 10);
    EXPECT_LE(after.pages_in_use + after.pages_free, after.arenas * (64 * MiB / kPage));
    // The next request of that size takes it back; a release returns it.
    EXPECT_EQ(spanmap_malloc(10 * kPage - 100), p);
    spanmap_free(p);
    spanmap::release_free_memory();
    const auto released = spanmap::debug::read_heap_info();
    EXPECT_EQ(released.large_cached_objects, 0u);
    EXPECT_EQ(released.large_cached_bytes, 0u);
    EXPECT_EQ(released.pages_in_use, before.pages_in_use - before.large_cached_bytes / kPage);
}

TEST_F(Basic, GoodSizeMatchesUsableSize) {
    std::vector<std::size_t> sizes;
    for (std::size_t n = 0; n <= 40000; n += 7) sizes.push_back(n);
    for (std::size_t n : {MiB - 1, MiB, MiB + 1, 7 * MiB + 5}) sizes.push_back(n);
    for (std::size_t n : sizes) {
        void* p = spanmap_malloc(n);
        ASSERT_EQ(spanmap_good_size(n), spanmap_usable_size(p)) << n;
        spanmap_free(p);
        for (std::size_t align : {std::size_t{1}, std::size_t{8}, std::size_t{16}, std::size_t{64},
                                  std::size_t{8192}, std::size_t{65536}}) {
            void* q = spanmap::allocate(n, align);
            ASSERT_EQ(spanmap::good_size(n, align), spanmap::usable_size(q)) << n << " align " << align;
            spanmap::deallocate(q, n, align);
        }
    }
}

// --- spanmap::allocator<T> in standard containers ---------------------------

template <class T>
using svec = std::vector<T, spanmap::allocator<T>>;
using sstring = std::basic_string<char, std::char_traits<char>, spanmap::allocator<char>>;

TEST_F(Basic, AllocatorWithVector) {
    svec<std::uint64_t> v;
    for (std::uint64_t i = 0; i < 200000; ++i) v.push_back(i * i);
    std::uint64_t sum = 0;
    for (std::uint64_t i = 0; i < v.size(); ++i) {
        ASSERT_EQ(v[i], i * i);
        sum += v[i];
    }
    EXPECT_EQ(sum, 2666646666700000ULL);
    EXPECT_GE(spanmap::usable_size(v.data()), v.capacity() * sizeof(std::uint64_t));
    v.shrink_to_fit();
    EXPECT_EQ(v.back(), 199999ULL * 199999ULL);
}

TEST_F(Basic, AllocatorWithListAndMapOfStrings) {
    std::list<sstring, spanmap::allocator<sstring>> l;
    std::map<sstring, sstring, std::less<>, spanmap::allocator<std::pair<const sstring, sstring>>> m;
    for (int i = 0; i < 5000; ++i) {
        // Long enough to leave the small-string buffer and live in spanmap.
        sstring key("key-with-a-long-prefix-to-defeat-sso-");
        key += std::to_string(i).c_str();
        sstring value(static_cast<std::size_t>(i % 300), static_cast<char>('a' + i % 26));
        l.push_back(key);
        m.emplace(key, value);
    }
    EXPECT_EQ(m.size(), 5000u);
    int i = 0;
    for (const sstring& key : l) {
        auto it = m.find(key);
        ASSERT_NE(it, m.end()) << key.c_str();
        EXPECT_EQ(it->second.size(), static_cast<std::size_t>(i % 300));
        if (!it->second.empty()) {
            EXPECT_EQ(it->second.front(), 'a' + i % 26);
        }
        ++i;
    }
    bool drop = false;
    for (auto it = m.begin(); it != m.end(); drop = !drop) it = drop ? m.erase(it) : std::next(it);
    l.clear();
    EXPECT_EQ(m.size(), 2500u);
}

struct alignas(64) cache_line {
    std::uint64_t words[8];
};

TEST_F(Basic, AllocatorHonoursOverAlignedTypes) {
    svec<cache_line> v;
    for (std::uint64_t i = 0; i < 3000; ++i) {
        v.push_back(cache_line{{i, i + 1, i + 2, i + 3, i + 4, i + 5, i + 6, i + 7}});
        ASSERT_EQ(addr(v.data()) % 64, 0u) << "capacity " << v.capacity();
    }
    for (std::uint64_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i].words[7], i + 7);

    spanmap::allocator<cache_line> a;
    for (std::size_t n = 1; n < 600; n += 13) {
        cache_line* p = a.allocate(n);
        EXPECT_EQ(addr(p) % 64, 0u) << n;
        std::memset(static_cast<void*>(p), 0x3c, n * sizeof(cache_line));
        a.deallocate(p, n);
        // The same block dirtied just now comes back zeroed, still aligned
        // (allocate_zeroed is the allocator's, for containers that want it).
        cache_line* z = a.allocate_zeroed(n);
        EXPECT_EQ(addr(z) % 64, 0u) << n;
        EXPECT_EQ(first_nonzero(z, n * sizeof(cache_line)), -1) << "allocate_zeroed(" << n << ")";
        a.deallocate(z, n);
    }
    // Rebinding yields an equal allocator: memory from one frees through the other.
    spanmap::allocator<char> c(a);
    EXPECT_TRUE(c == a);
}

}  // namespace

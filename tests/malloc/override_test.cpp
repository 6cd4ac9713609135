// The malloc replacement, linked ahead of the C library: glibc's entry points
// and the C++ operators land in spanmap, with glibc's semantics where they
// differ from the C standard's.
#include <spanmap/spanmap.h>

#include <gtest/gtest.h>

#include <dlfcn.h>
#include <malloc.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

namespace {

bool aligned(const void* p, std::size_t a) { return reinterpret_cast<std::uintptr_t>(p) % a == 0; }

// Keeps the compiler from folding a malloc/free pair away.
void* volatile sink;

TEST(Override, MallocIsSpanmap) {
    // glibc rounds 17 bytes to 24 usable; spanmap serves it from the 32-byte class.
    void* p = std::malloc(17);
    EXPECT_EQ(malloc_usable_size(p), 32u);
    EXPECT_EQ(spanmap_usable_size(p), 32u);
    std::free(p);
    using fn = void* (*)(std::size_t);
    auto libc_malloc = reinterpret_cast<fn>(dlsym(RTLD_DEFAULT, "__libc_malloc"));
    ASSERT_NE(libc_malloc, nullptr);
    void* q = libc_malloc(17);
    EXPECT_EQ(spanmap_usable_size(q), 32u);
    std::free(q);
}

TEST(Override, CLibraryInternalsAllocateHere) {
    char* s = strdup("strdup calls malloc from inside the C library");
    EXPECT_EQ(spanmap_usable_size(s), spanmap_good_size(std::strlen(s) + 1));
    std::free(s);
}

TEST(Override, FreeKeepsErrno) {
    void* p = std::malloc(100);
    void* big = std::malloc(1 << 20);
    errno = 1234;
    std::free(p);
    std::free(big);
    std::free(nullptr);
    EXPECT_EQ(errno, 1234);
}

TEST(Override, PosixMemalign) {
    void* p = nullptr;
    EXPECT_EQ(posix_memalign(&p, 3, 10), EINVAL);
    EXPECT_EQ(posix_memalign(&p, 4, 10), EINVAL);  // not a multiple of sizeof(void*)
    errno = 0;
    EXPECT_EQ(posix_memalign(&p, 64, std::size_t{1} << 62), ENOMEM);
    EXPECT_EQ(errno, 0);
    for (std::size_t a : {8, 16, 64, 4096, 1 << 16, 1 << 21}) {
        ASSERT_EQ(posix_memalign(&p, a, 100), 0);
        EXPECT_TRUE(aligned(p, a)) << a;
        std::free(p);
    }
}

TEST(Override, PageAlignedForms) {
    void* v = valloc(10);
    EXPECT_TRUE(aligned(v, 4096));
    std::free(v);
    void* z = pvalloc(0);  // glibc: one page
    ASSERT_NE(z, nullptr);
    EXPECT_TRUE(aligned(z, 4096));
    EXPECT_GE(malloc_usable_size(z), 4096u);
    std::free(z);
    void* r = pvalloc(5000);  // rounded up to whole pages
    EXPECT_GE(malloc_usable_size(r), 8192u);
    std::free(r);
}

TEST(Override, MemalignRoundsAlignmentUp) {
    void* p = memalign(24, 10);
    EXPECT_TRUE(aligned(p, 32));
    std::free(p);
    errno = 0;
    EXPECT_EQ(aligned_alloc(3, 10), nullptr);
    EXPECT_EQ(errno, EINVAL);
    void* q = aligned_alloc(256, 256);
    EXPECT_TRUE(aligned(q, 256));
    std::free(q);
}

TEST(Override, ReallocZeroFreesAndReturnsNull) {
    void* p = std::malloc(48);
    errno = 0;
    EXPECT_EQ(std::realloc(p, 0), nullptr);
    EXPECT_EQ(errno, 0);
    void* q = std::malloc(48);  // p went back to this thread's cache
    EXPECT_EQ(q, p);
    std::free(q);
}

TEST(Override, OverflowsFailWithEnomem) {
    // volatile: the compiler would reject the constant overflows outright.
    volatile std::size_t half = SIZE_MAX / 2;
    volatile std::size_t huge = SIZE_MAX - 4096;
    errno = 0;
    EXPECT_EQ(std::calloc(half, 3), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    errno = 0;
    EXPECT_EQ(reallocarray(nullptr, half, 3), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    errno = 0;
    EXPECT_EQ(std::malloc(huge), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    auto* a = static_cast<int*>(reallocarray(nullptr, 10, sizeof(int)));
    for (int i = 0; i < 10; ++i) a[i] = i;
    a = static_cast<int*>(reallocarray(a, 1000, sizeof(int)));
    for (int i = 0; i < 10; ++i) EXPECT_EQ(a[i], i);
    std::free(a);
}

TEST(Override, CallocZeroesReusedMemory) {
    auto* p = static_cast<unsigned char*>(std::malloc(300));
    std::memset(p, 0xee, 300);
    std::free(p);
    auto* q = static_cast<unsigned char*>(std::calloc(3, 100));
    EXPECT_EQ(q, p);
    for (int i = 0; i < 300; ++i) ASSERT_EQ(q[i], 0) << i;
    std::free(q);
}

int handler_calls = 0;
void counting_handler() {
    if (++handler_calls == 3) std::set_new_handler(nullptr);
}

TEST(Override, ThrowingNewLoopsOverTheNewHandler) {
    handler_calls = 0;
    std::set_new_handler(counting_handler);
    EXPECT_THROW(sink = ::operator new(std::size_t{1} << 62), std::bad_alloc);
    EXPECT_EQ(handler_calls, 3);
    EXPECT_EQ(::operator new(std::size_t{1} << 62, std::nothrow), nullptr);
    EXPECT_EQ(::operator new[](std::size_t{1} << 62, std::align_val_t{64}, std::nothrow), nullptr);
}

TEST(Override, AllTwentyOperatorForms) {
    const auto a64 = std::align_val_t{64};
    const auto a2m = std::align_val_t{std::size_t{1} << 21};
    void* p[8] = {
        ::operator new(24),
        ::operator new[](24),
        ::operator new(24, std::nothrow),
        ::operator new[](24, std::nothrow),
        ::operator new(24, a64),
        ::operator new[](24, a2m),
        ::operator new(24, a64, std::nothrow),
        ::operator new[](24, a2m, std::nothrow),
    };
    for (int i = 0; i < 8; ++i) EXPECT_EQ(spanmap_usable_size(p[i]) >= 24, true) << i;
    for (int i = 4; i < 8; ++i) EXPECT_TRUE(aligned(p[i], i % 2 == 0 ? 64 : std::size_t{1} << 21)) << i;
    ::operator delete(p[0]);
    ::operator delete[](p[1], 24);
    ::operator delete(p[2], std::nothrow);
    ::operator delete[](p[3], std::nothrow);
    ::operator delete(p[4], 24, a64);
    ::operator delete[](p[5], a2m);
    ::operator delete(p[6], a64, std::nothrow);
    ::operator delete[](p[7], a2m, std::nothrow);
    void* q[4] = {::operator new(40), ::operator new[](40), ::operator new(40, a64), ::operator new[](40, a64)};
    ::operator delete(q[0], 40);
    ::operator delete[](q[1]);
    ::operator delete(q[2], a64);
    ::operator delete[](q[3], 40, a64);
    // Every block went back: the next allocations of those classes reuse them.
    void* again = ::operator new(40);
    EXPECT_TRUE(again == q[0] || again == q[1]);
    ::operator delete(again);
}

TEST(Override, ContainersRunOnIt) {
    std::vector<std::string> v;
    for (int i = 0; i < 10000; ++i) v.push_back(std::string(static_cast<std::size_t>(i % 100), 'x'));
    EXPECT_EQ(spanmap_usable_size(v.data()) >= v.capacity() * sizeof(std::string), true);
    EXPECT_EQ(v[9999].size(), 99u);
}

TEST(Override, Mallinfo2AddsUp) {
    void* big = std::malloc(1 << 20);
    const struct mallinfo2 mi = mallinfo2();
    EXPECT_GE(mi.uordblks, std::size_t{1} << 20);
    EXPECT_EQ(mi.arena, mi.uordblks + mi.fordblks);
    EXPECT_GE(mi.hblks, 1u);
    std::free(big);
    EXPECT_GE(malloc_trim(0), 0);
}

TEST(OverrideDeathTest, ForeignPointerIsReported) {
    // "fast" forks without re-executing, so the child's stack address is the
    // one the message must name.
    GTEST_FLAG_SET(death_test_style, "fast");
    int on_stack = 0;
    char expected[64];
    std::snprintf(expected, sizeof expected, "%p", static_cast<void*>(&on_stack));
    EXPECT_DEATH(std::free(&on_stack), std::string(expected) + ".*not allocated by spanmap");
}

TEST(OverrideDeathTest, SizedDeleteLargerThanTheBlockIsReported) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    void* p = ::operator new(16);
    EXPECT_DEATH(::operator delete(p, 4096), "larger than the block");
    ::operator delete(p, 16);
}

// The misuse that once slipped through the preload library's own free, which
// inlines the fast path: each must stop the process with the message format
// "spanmap: <call> 0x…: <what is wrong>". 6784 bytes is a size class nothing
// else in this process uses, so the neighbours of its one object are either in
// this thread's cache (marked free) or were never handed out at all.
constexpr std::size_t kLoneClass = 6784;

std::string address_of(const void* p) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%p", p);
    return buf;
}

TEST(OverrideDeathTest, FreeOfANeighbourNeverHandedOutIsReported) {
    GTEST_FLAG_SET(death_test_style, "fast");
    char* p = static_cast<char*>(std::malloc(kLoneClass));
    ASSERT_NE(p, nullptr);
    EXPECT_DEATH(std::free(p + kLoneClass), "spanmap: free " + address_of(p + kLoneClass) + ": ");
    EXPECT_DEATH(std::free(p + 2 * kLoneClass), "spanmap: free " + address_of(p + 2 * kLoneClass) + ": ");
    // After a flush the neighbours are back in their span's free set.
    spanmap_thread_cache_flush();
    EXPECT_DEATH(std::free(p + kLoneClass), "spanmap: free " + address_of(p + kLoneClass) + ": ");
    std::free(p);
}

TEST(OverrideDeathTest, DoubleFreeOfAMegabyteIsReported) {
    GTEST_FLAG_SET(death_test_style, "fast");
    EXPECT_DEATH(
        {
            void* p = std::malloc(std::size_t{1} << 20);
            sink = p;
            std::free(p);
            std::free(p);
        },
        "spanmap: free 0x[0-9a-f]+: .*(double free|invalid pointer|not allocated)");
}

TEST(OverrideDeathTest, ReallocAndUsableSizeOfAFreedPointerAreReported) {
    GTEST_FLAG_SET(death_test_style, "fast");
    void* p = std::malloc(kLoneClass);
    ASSERT_NE(p, nullptr);
    std::free(p);
    EXPECT_DEATH(sink = std::realloc(p, kLoneClass - 8), "spanmap: realloc " + address_of(p) + ": .*double free");
    EXPECT_DEATH(sink = reinterpret_cast<void*>(malloc_usable_size(p)), "spanmap: .* " + address_of(p) + ": .*double free");
    // What the test freed is taken again, so the heap is as it was.
    EXPECT_EQ(std::malloc(kLoneClass), p);
    std::free(p);
}

}  // namespace

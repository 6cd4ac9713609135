// Diagnostics never allocate: this binary interposes the C library's malloc
// family with counting wrappers (the executable's definitions win over
// libc's), then calls every statistics entry point and checks that neither
// spanmap's heap nor the C library's saw an allocation. Sanitizer builds
// bring their own malloc, so this test is left out there.
#include "stats_test_util.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void __libc_free(void*);
}

namespace {
std::atomic<long> libc_calls{0};
}

extern "C" {
void* malloc(std::size_t n) {
    libc_calls.fetch_add(1, std::memory_order_relaxed);
    return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t m) {
    libc_calls.fetch_add(1, std::memory_order_relaxed);
    return __libc_calloc(n, m);
}
void* realloc(void* p, std::size_t n) {
    libc_calls.fetch_add(1, std::memory_order_relaxed);
    return __libc_realloc(p, n);
}
void free(void* p) {
    if (p != nullptr) libc_calls.fetch_add(1, std::memory_order_relaxed);
    __libc_free(p);
}
}

namespace {

using namespace spanmap::test;

TEST(stats_no_alloc, StatisticsAllocateNothing) {
    // Heap state worth reporting, and a stream with no buffer yet (stdio
    // makes one with malloc at the first write through it).
    std::vector<void*> held;
    for (int i = 0; i < 200; ++i) held.push_back(spanmap::allocate(static_cast<std::size_t>(8 + i * 53), 8));
    void* big = spanmap::allocate(100000, 8);
    std::FILE* devnull = std::fopen("/dev/null", "w");
    ASSERT_NE(devnull, nullptr);
    auto rep = std::make_unique<spanmap::mapping_report>();
    static char text[1 << 20];
    spanmap::class_stats rows[spanmap::num_size_classes];
    spanmap::cache_stats caches[4];
    spanmap_mem_stats c{};

    // Nothing below may allocate, from either heap.
    const spanmap::mem_stats before = spanmap::read_mem_stats();
    const long libc_before = libc_calls.load();
    const spanmap::mem_stats fast = spanmap::read_mem_stats();
    const spanmap::mem_stats slow = spanmap::recompute_mem_stats();
    spanmap_read_mem_stats(&c);
    spanmap::read_class_stats(rows);
    spanmap::read_cache_stats(caches, 4);
    *rep = spanmap::inspect_mappings();
    const spanmap::location l = spanmap::locate(big);
    const std::size_t n_text = spanmap::format_stats(text, sizeof text, spanmap::stats_format::text);
    const std::size_t n_json = spanmap::format_stats(text, sizeof text, spanmap::stats_format::json);
    spanmap::print_stats(devnull, spanmap::stats_format::text);
    spanmap::print_stats(devnull, spanmap::stats_format::json);
    const long libc_after = libc_calls.load();
    const spanmap::mem_stats after = spanmap::read_mem_stats();

    EXPECT_EQ(libc_after - libc_before, 0) << "the C library's malloc was called";
    EXPECT_EQ(after.mallocs, before.mallocs) << "spanmap's heap was allocated from";
    EXPECT_EQ(after.frees, before.frees);
    EXPECT_EQ(after.sys, before.sys) << "nothing new was mapped for the allocator";
    // And the calls did their work.
    EXPECT_EQ(fast.mallocs, slow.mallocs);
    EXPECT_EQ(c.alloc, fast.alloc);
    EXPECT_TRUE(rep->ok);
    EXPECT_EQ(l.state, spanmap::object_state::allocated);
    EXPECT_GT(n_text, 1000u);
    EXPECT_GT(n_json, 1000u);
    EXPECT_GE(libc_before, 1) << "the interposed malloc is really in use";

    std::fclose(devnull);
    spanmap::deallocate(big, 100000, 8);
    for (std::size_t i = 0; i < held.size(); ++i) spanmap::deallocate(held[i], 8 + i * 53, 8);
}

}  // namespace

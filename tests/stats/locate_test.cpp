// locate(): a pointer from every size class and large objects are found with
// their arena, span, class and object; interior pointers, span tails, idle
// pages, foreign pointers; and an object's life: allocated, cached, free.
#include "stats_test_util.h"

#include <cstdlib>
#include <vector>

namespace {

using namespace spanmap::test;
using spanmap::location;
using spanmap::object_state;

std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

void expect_object(const location& l, const void* p, unsigned c, const char* what) {
    SCOPED_TRACE(what);
    const std::uintptr_t a = addr(p);
    EXPECT_EQ(l.state, object_state::allocated) << spanmap::to_string(l.state);
    EXPECT_EQ(l.arena, a & ~(kArena - 1));
    EXPECT_EQ(l.size_class, c);
    EXPECT_EQ(l.object_size, sc::class_size[c]);
    EXPECT_EQ(l.pages, sc::class_pages[c]);
    EXPECT_EQ(l.span_end - l.span_start, sc::class_pages[c] * kPage);
    EXPECT_EQ(l.span_start % kPage, 0u);
    EXPECT_LE(l.span_start, a);
    EXPECT_LT(a, l.span_end);
    EXPECT_EQ(l.object_start, a);
    EXPECT_EQ(l.object_index, (a - l.span_start) / sc::class_size[c]);
    EXPECT_LT(l.object_index, objects_per_span(c));
    EXPECT_FALSE(l.interior);
}

TEST(stats_locate, EverySizeClass) {
    for (unsigned c = 1; c < spanmap::num_size_classes; ++c) {
        const std::size_t size = sc::class_size[c];
        void* p = spanmap::allocate(size, 8);
        SCOPED_TRACE("class " + std::to_string(c));
        expect_object(spanmap::locate(p), p, c, "start");

        // Every byte of the object leads back to it.
        for (const std::size_t off : {std::size_t{1}, size / 2, size - 1}) {
            const location in = spanmap::locate(static_cast<char*>(p) + off);
            EXPECT_EQ(in.state, object_state::allocated);
            EXPECT_EQ(in.object_start, addr(p));
            EXPECT_TRUE(in.interior);
        }
        spanmap::deallocate(p, size, 8);
        // Just freed: in this thread's cache.
        EXPECT_EQ(spanmap::locate(p).state, object_state::cached);
    }
}

TEST(stats_locate, LargeObjects) {
    for (const std::size_t n : {std::size_t{32769}, std::size_t{100000}, std::size_t{3} << 20}) {
        void* p = spanmap::allocate(n, 8);
        const std::size_t bytes = (n + kPage - 1) / kPage * kPage;
        SCOPED_TRACE("size " + std::to_string(n));
        const location l = spanmap::locate(p);
        EXPECT_EQ(l.state, object_state::allocated);
        EXPECT_EQ(l.size_class, 0u);
        EXPECT_EQ(l.span_start, addr(p));
        EXPECT_EQ(l.span_end, addr(p) + bytes);
        EXPECT_EQ(l.pages, bytes / kPage);
        EXPECT_EQ(l.object_size, bytes);
        EXPECT_EQ(l.object_start, addr(p));
        EXPECT_EQ(l.object_index, 0u);
        EXPECT_EQ(l.arena, addr(p) & ~(kArena - 1));
        const location last = spanmap::locate(static_cast<char*>(p) + bytes - 1);
        EXPECT_EQ(last.state, object_state::allocated);
        EXPECT_EQ(last.object_start, addr(p));
        EXPECT_TRUE(last.interior);
        spanmap::deallocate(p, n, 8);
        // Freed, it waits whole in the large cache; released, its pages go
        // back to the heap: no span there now.
        EXPECT_EQ(spanmap::locate(p).state, object_state::cached);
        spanmap::release_free_memory();
        const location gone = spanmap::locate(p);
        EXPECT_EQ(gone.state, object_state::idle_page);
        EXPECT_EQ(gone.span_start, 0u);
    }
}

// An object's life: out, cached, back in its span. Another object of the
// same span stays out so the span is not handed back to the heap.
TEST(stats_locate, AllocatedThenCachedThenFree) {
    spanmap_thread_cache_flush();
    std::vector<void*> v;
    for (int i = 0; i < 20; ++i) v.push_back(spanmap::allocate(640, 8));
    // Two objects of one span (the cache refilled from several).
    void* p = nullptr;
    void* neighbour = nullptr;
    for (std::size_t i = 0; i < v.size() && neighbour == nullptr; ++i)
        for (std::size_t j = i + 1; j < v.size() && neighbour == nullptr; ++j)
            if (spanmap::locate(v[i]).span_start == spanmap::locate(v[j]).span_start) {
                p = v[i];
                neighbour = v[j];
            }
    ASSERT_NE(neighbour, nullptr);
    EXPECT_EQ(spanmap::locate(p).state, object_state::allocated);
    for (void* q : v)
        if (q != neighbour) spanmap::deallocate(q, 640, 8);
    EXPECT_EQ(spanmap::locate(p).state, object_state::cached);
    spanmap_thread_cache_flush();
    const location l = spanmap::locate(p);
    EXPECT_EQ(l.state, object_state::free);
    EXPECT_EQ(l.object_start, addr(p));
    EXPECT_EQ(l.size_class, class_of(640));
    EXPECT_EQ(spanmap::locate(neighbour).state, object_state::allocated);
    spanmap::deallocate(neighbour, 640, 8);
}

// 48-byte objects leave 32 bytes at the end of their page: no object there.
TEST(stats_locate, SpanTail) {
    const unsigned c = class_of(48);
    ASSERT_EQ(kPage % 48, 32u);
    void* p = spanmap::allocate(48, 8);
    const location l = spanmap::locate(p);
    const location tail = spanmap::locate(reinterpret_cast<void*>(l.span_end - 1));
    EXPECT_EQ(tail.state, object_state::span_tail);
    EXPECT_EQ(tail.size_class, c);
    EXPECT_EQ(tail.span_start, l.span_start);
    EXPECT_EQ(tail.object_index, objects_per_span(c));
    const location last = spanmap::locate(reinterpret_cast<void*>(l.span_end - 33));
    EXPECT_NE(last.state, object_state::span_tail);
    EXPECT_EQ(last.object_index, objects_per_span(c) - 1);
    spanmap::deallocate(p, 48, 8);
}

TEST(stats_locate, PointersTheHeapDoesNotOwn) {
    int on_stack = 0;
    static int in_data = 0;
    void* from_libc = std::malloc(64);  // the C library's heap in this test, not spanmap's
    const void* foreign[] = {&on_stack, &in_data, from_libc, nullptr, reinterpret_cast<const void*>(~std::uintptr_t{0})};
    for (const void* p : foreign) {
        const location l = spanmap::locate(p);
        EXPECT_EQ(l.state, object_state::not_in_heap) << p;
        EXPECT_EQ(l.arena, 0u);
        EXPECT_EQ(l.span_start, 0u);
    }
    std::free(from_libc);
}

// First fit fills the arena from the bottom; the last page of its first
// reservation step (4 MiB) is idle in a process that has allocated little,
// and the arena's unreserved top is not the heap's.
TEST(stats_locate, IdlePageInsideAnArena) {
    void* p = spanmap::allocate(100, 8);
    const location l = spanmap::locate(p);
    const spanmap::mem_stats m = spanmap::read_mem_stats();
    ASSERT_EQ(m.arenas, 1u);
    ASSERT_LT(m.heap_sys, kArena);
    EXPECT_EQ(spanmap::locate(reinterpret_cast<const void*>(l.arena + kArena - 1)).state, object_state::not_in_heap);
    const auto* top = reinterpret_cast<const void*>(l.arena + m.heap_sys - 1);
    const location idle = spanmap::locate(top);
    EXPECT_EQ(idle.state, object_state::idle_page);
    EXPECT_EQ(idle.arena, l.arena);
    EXPECT_EQ(idle.span_start, 0u);
    spanmap::deallocate(p, 100, 8);
}

TEST(stats_locate, StatesHaveNames) {
    for (const object_state s : {object_state::not_in_heap, object_state::idle_page, object_state::span_tail,
                                 object_state::allocated, object_state::cached, object_state::free})
        EXPECT_STRNE(spanmap::to_string(s), "?");
}

}  // namespace

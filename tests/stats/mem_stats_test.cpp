// mem_stats: every field checked by name (an unknown field fails, as in Go's
// TestMemStats), the identities, a reference model of what a workload must
// change, and the counters against the walk — single-threaded, after threads
// are joined, with a live thread holding a cache, and for a thread whose
// cache is already gone.
#include "stats_test_util.h"

#include <pthread.h>

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace spanmap::test;
using spanmap::mem_stats;

struct block {
    void* p;
    std::size_t size;
};

// Objects of every class and a few large ones; frees every other one.
std::vector<block> mixed_workload(std::size_t per_class) {
    std::vector<block> all;
    for (unsigned c = 1; c < spanmap::num_size_classes; ++c)
        for (std::size_t i = 0; i < per_class; ++i) all.push_back({spanmap::allocate(sc::class_size[c], 8), sc::class_size[c]});
    for (std::size_t n : {40000u, 100000u, 1u << 20})
        all.push_back({spanmap::allocate(n, 8), n});
    std::vector<block> kept;
    for (std::size_t i = 0; i < all.size(); ++i) {
        if (i % 2 == 0)
            spanmap::deallocate(all[i].p, all[i].size, 8);
        else
            kept.push_back(all[i]);
    }
    return kept;
}

void release(std::vector<block>& blocks) {
    for (const block& b : blocks) spanmap::deallocate(b.p, b.size, 8);
    blocks.clear();
}

// Go's TestMemStats: a check per field, found by name; a field the test does
// not know fails it, so a new field cannot go untested.
TEST(stats_mem, EveryFieldIsKnownAndPlausible) {
    std::vector<block> kept = mixed_workload(3);
    void* big = spanmap::allocate(200000, 8);
    const mem_stats m = spanmap::read_mem_stats();
    expect_identities(m, "snapshot");

    constexpr std::uint64_t heap_arena_bytes = (sizeof(spanmap::detail::heap_arena) + 4095) & ~std::uint64_t{4095};
    constexpr std::uint64_t arena_list_bytes = spanmap::detail::max_arenas * sizeof(void*);
    constexpr std::uint64_t mcache_bytes = (sizeof(spanmap::detail::mcache) + 4095) & ~std::uint64_t{4095};
    const auto nz = [](std::uint64_t v) { EXPECT_NE(v, 0u); };
    const std::vector<std::pair<std::string, std::function<void(std::uint64_t)>>> checks = {
        {"alloc", [&](std::uint64_t v) { EXPECT_GE(v, 200000u); }},
        {"total_alloc", [&](std::uint64_t v) { EXPECT_GT(v, m.alloc); }},
        {"sys", [&](std::uint64_t v) { EXPECT_GT(v, m.heap_sys); }},
        {"mallocs", [&](std::uint64_t v) { EXPECT_GE(v, 67u * 3 + 4); }},
        {"frees", [&](std::uint64_t v) { EXPECT_GE(v, 67u * 3 / 2); }},
        {"heap_alloc", [&](std::uint64_t v) { EXPECT_EQ(v, m.alloc); }},
        {"heap_sys", [&](std::uint64_t v) { EXPECT_EQ(v % kPage, 0u); EXPECT_LE(v, m.arenas * kArena); EXPECT_GT(v, (m.arenas - 1) * kArena); }},
        {"heap_idle", [&](std::uint64_t v) { EXPECT_LT(v, m.heap_sys); }},
        {"heap_inuse", [&](std::uint64_t v) { EXPECT_GE(v, m.alloc); }},
        {"heap_released", [&](std::uint64_t v) { EXPECT_LE(v, m.heap_idle); }},
        {"heap_objects", [&](std::uint64_t v) { EXPECT_EQ(v, m.mallocs - m.frees); }},
        {"mspan_inuse", [&](std::uint64_t v) { EXPECT_EQ(v % sizeof(spanmap::detail::mspan), 0u); nz(v); }},
        {"mspan_sys", [&](std::uint64_t v) { EXPECT_EQ(v % (256u << 10), 0u); EXPECT_GE(v, m.mspan_inuse); }},
        {"mcache_inuse", [&](std::uint64_t v) { EXPECT_EQ(v % sizeof(spanmap::detail::mcache), 0u); nz(v); }},
        {"mcache_sys", [&](std::uint64_t v) { EXPECT_EQ(v % mcache_bytes, 0u); EXPECT_GE(v, m.mcache_inuse); }},
        // The arena records and the list of arenas; the heap profiler's
        // tables would come on top, but this process never profiles.
        // The arena records, the list of arenas and the arena index's leaves.
        {"other_sys", [&](std::uint64_t v) {
             const std::uint64_t leaves = v - m.arenas * heap_arena_bytes - arena_list_bytes;
             EXPECT_EQ(leaves % sizeof(spanmap::detail::arena_leaf), 0u);
             EXPECT_GE(leaves, sizeof(spanmap::detail::arena_leaf));
             EXPECT_LE(leaves, m.arenas * sizeof(spanmap::detail::arena_leaf));
         }},
        {"large_objects", [&](std::uint64_t v) { EXPECT_GE(v, 3u); }},
        {"large_bytes", [&](std::uint64_t v) { EXPECT_GE(v, 200000u + 100000u); EXPECT_EQ(v % kPage, 0u); }},
        {"cached_objects", [&](std::uint64_t v) { EXPECT_LE(v * 8, m.cached_bytes); }},
        {"cached_bytes", [&](std::uint64_t v) {
             EXPECT_LE(v, spanmap::detail::max_cached_bytes() + spanmap::detail::max_transfer_bytes());
         }},
        {"span_free", [&](std::uint64_t v) { EXPECT_LT(v, m.heap_inuse); }},
        {"span_waste", [&](std::uint64_t v) { EXPECT_LT(v, m.small_spans * kPage); }},
        {"small_spans", [&](std::uint64_t v) { EXPECT_GE(v, 67u); }},
        {"arenas", [&](std::uint64_t v) { EXPECT_GE(v, 1u); }},
    };
    const auto check = [&](const char* name, std::uint64_t value) {
        for (const auto& [known, fn] : checks) {
            if (known != name) continue;
            SCOPED_TRACE(name);
            fn(value);
            return;
        }
        ADD_FAILURE() << "mem_stats has a field the test does not know: " << name;
    };
#define SPANMAP_CHECK_FIELD(name) check(#name, m.name);
    SPANMAP_MEM_STATS_FIELDS(SPANMAP_CHECK_FIELD)
#undef SPANMAP_CHECK_FIELD
    EXPECT_EQ(m.by_size[0].size, 0u);
    for (unsigned c = 1; c < spanmap::num_size_classes; ++c) EXPECT_GE(m.by_size[c].mallocs, 3u) << "class " << c;

    spanmap::deallocate(big, 200000, 8);
    release(kept);
}

// What a known sequence of operations must change, field by field.
TEST(stats_mem, DeltasFollowAReferenceModel) {
    struct model {
        std::uint64_t mallocs[spanmap::num_size_classes] = {};
        std::uint64_t frees[spanmap::num_size_classes] = {};
        std::uint64_t total_alloc = 0;
        std::int64_t alloc = 0;
        std::int64_t large_bytes = 0;
    } want;
    const mem_stats before = spanmap::read_mem_stats();

    std::vector<block> live;
    for (unsigned c = 1; c < spanmap::num_size_classes; ++c) {
        const std::size_t n = c % 5 + 1;  // 1..5 objects a class, half of them freed below
        for (std::size_t i = 0; i < n; ++i) {
            // Any request size rounds to its class: ask for a little less.
            const std::size_t ask = sc::class_size[c] - (i % 3 == 0 ? 0 : 1);
            live.push_back({spanmap::allocate(ask, 8), ask});
            ++want.mallocs[c];
            want.total_alloc += sc::class_size[c];
            want.alloc += sc::class_size[c];
        }
    }
    for (std::size_t i = 0; i < live.size(); i += 2) {
        spanmap::deallocate(live[i].p, live[i].size, 8);
        const unsigned c = class_of(live[i].size);
        ++want.frees[c];
        want.alloc -= sc::class_size[c];
    }
    // Large objects count whole pages, and realloc changes them in place when it can.
    void* big = spanmap_malloc(40000);  // 5 pages
    ++want.mallocs[0];
    want.total_alloc += 5 * kPage;
    want.alloc += 5 * kPage;
    want.large_bytes += 5 * kPage;
    void* grown = spanmap_realloc(big, 90000);  // 11 pages
    if (grown == big) {
        want.total_alloc += 6 * kPage;
    } else {
        ++want.mallocs[0];
        ++want.frees[0];
        want.total_alloc += 11 * kPage;
    }
    want.alloc += 6 * kPage;
    want.large_bytes += 6 * kPage;
    void* shrunk = spanmap_realloc(grown, 50000);  // 7 pages, in place
    ASSERT_EQ(shrunk, grown);
    want.alloc -= 4 * kPage;
    want.large_bytes -= 4 * kPage;

    const mem_stats after = spanmap::read_mem_stats();
    expect_identities(after, "after");
    std::uint64_t mallocs = 0, frees = 0;
    for (unsigned c = 0; c < spanmap::num_size_classes; ++c) {
        EXPECT_EQ(after.by_size[c].mallocs - before.by_size[c].mallocs, want.mallocs[c]) << "class " << c;
        EXPECT_EQ(after.by_size[c].frees - before.by_size[c].frees, want.frees[c]) << "class " << c;
        mallocs += want.mallocs[c];
        frees += want.frees[c];
    }
    EXPECT_EQ(after.mallocs - before.mallocs, mallocs);
    EXPECT_EQ(after.frees - before.frees, frees);
    EXPECT_EQ(after.heap_objects - before.heap_objects, mallocs - frees);
    EXPECT_EQ(after.total_alloc - before.total_alloc, want.total_alloc);
    EXPECT_EQ(static_cast<std::int64_t>(after.alloc - before.alloc), want.alloc);
    EXPECT_EQ(static_cast<std::int64_t>(after.large_bytes - before.large_bytes), want.large_bytes);
    EXPECT_EQ(after.large_objects - before.large_objects, 1u);

    spanmap_free(shrunk);
    for (std::size_t i = 1; i < live.size(); i += 2) spanmap::deallocate(live[i].p, live[i].size, 8);
    const mem_stats end = spanmap::read_mem_stats();
    EXPECT_EQ(end.alloc, before.alloc);
    EXPECT_EQ(end.heap_objects, before.heap_objects);
    EXPECT_EQ(end.large_bytes, before.large_bytes);
}

TEST(stats_mem, CountersAgreeWithTheWalk) {
    expect_fast_equals_slow("at start");
    std::vector<block> kept = mixed_workload(scaled(40, 10));
    expect_fast_equals_slow("after the workload");
    spanmap_thread_cache_flush();
    expect_fast_equals_slow("after flushing the cache");
    std::vector<block> more = mixed_workload(scaled(7, 3));
    release(kept);
    expect_fast_equals_slow("after freeing the first half");
    release(more);
    spanmap_thread_cache_flush();
    const mem_stats m = spanmap::read_mem_stats();
    expect_fast_equals_slow("after freeing everything");
    // What is cached now: large objects the large cache keeps for reuse.
    EXPECT_EQ(m.cached_objects, spanmap::debug::read_heap_info().large_cached_objects);
    spanmap::release_free_memory();
    EXPECT_EQ(spanmap::read_mem_stats().cached_objects, 0u);
    expect_fast_equals_slow("after a release");
}

TEST(stats_mem, CountersAgreeWithTheWalkAfterThreadsJoin) {
    const mem_stats before = spanmap::read_mem_stats();
    constexpr int kThreads = 4;
    const std::size_t per_thread = scaled(3000, 500);
    // Each thread frees half of what its neighbour made: those objects enter
    // the freeing thread's cache, not the allocating one's.
    std::vector<std::vector<block>> made(kThreads);
    std::vector<std::vector<block>> kept(kThreads);
    std::mutex mu;
    std::condition_variable cv;
    int ready = 0;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            std::vector<block> mine;
            for (std::size_t i = 0; i < per_thread; ++i) {
                const std::size_t n = 8 + (i * 7919 + static_cast<std::size_t>(t) * 104729) % 3000;
                mine.push_back({spanmap::allocate(n, 8), n});
            }
            {
                std::unique_lock lk(mu);
                made[t] = mine;
                ++ready;
                cv.notify_all();
                cv.wait(lk, [&] { return ready == kThreads; });
            }
            const std::vector<block>& theirs = made[(t + 1) % kThreads];
            for (std::size_t i = 0; i < theirs.size(); ++i)
                if (i % 2 == 0) spanmap::deallocate(theirs[i].p, theirs[i].size, 8);
            for (std::size_t i = 1; i < theirs.size(); i += 2) kept[t].push_back(theirs[i]);
        });
    }
    for (std::thread& t : threads) t.join();

    expect_fast_equals_slow("after join");
    const mem_stats after = spanmap::read_mem_stats();
    std::uint64_t live = 0;
    for (const auto& k : kept) live += k.size();
    EXPECT_EQ(after.heap_objects - before.heap_objects, live);
    EXPECT_EQ(after.mallocs - before.mallocs, kThreads * per_thread);
    for (auto& k : kept) release(k);
    expect_fast_equals_slow("after freeing the rest");
}

// A thread that is alive but quiet: its cache's objects count as cached,
// and when it exits they go back to their spans.
TEST(stats_mem, QuietLiveThreadsCacheIsCounted) {
    spanmap_thread_cache_flush();
    std::mutex mu;
    std::condition_variable cv;
    int phase = 0;
    std::thread worker([&] {
        std::vector<void*> v;
        for (int i = 0; i < 100; ++i) v.push_back(spanmap::allocate(64, 8));
        for (void* p : v) spanmap::deallocate(p, 64, 8);
        std::unique_lock lk(mu);
        phase = 1;
        cv.notify_all();
        cv.wait(lk, [&] { return phase == 2; });
    });
    {
        std::unique_lock lk(mu);
        cv.wait(lk, [&] { return phase == 1; });
        const mem_stats m = spanmap::read_mem_stats();
        EXPECT_GE(m.cached_objects, 100u);
        EXPECT_GE(m.cached_bytes, 6400u);
        expect_fast_equals_slow("worker alive, quiet");
        // The worker's cache is listed (this thread may have none yet).
        spanmap::cache_stats caches[8];
        const std::size_t n = spanmap::read_cache_stats(caches, 8);
        EXPECT_GE(n, 1u);
        std::uint64_t objects = 0;
        int mine = 0, workers = 0;
        for (std::size_t i = 0; i < n && i < 8; ++i) {
            objects += caches[i].objects;
            if (caches[i].current_thread) {
                ++mine;
                EXPECT_EQ(caches[i].objects, 0u) << "this thread's cache was flushed";
            } else if (caches[i].objects >= 100) {
                ++workers;
                EXPECT_EQ(caches[i].bytes, caches[i].objects * 64);
            }
        }
        EXPECT_LE(mine, 1);
        EXPECT_EQ(workers, 1);
        EXPECT_EQ(objects, m.cached_objects);
        phase = 2;
        cv.notify_all();
    }
    worker.join();
    const mem_stats m = spanmap::read_mem_stats();
    EXPECT_EQ(m.cached_objects, 0u);
    expect_fast_equals_slow("worker joined");
}

// Allocations after a thread's cache is handed back (a later thread-specific
// destructor) go straight to mcentral and count in the retired totals.
std::vector<void*> g_late_blocks;
void late_destructor(void*) {
    for (int i = 0; i < 10; ++i) g_late_blocks.push_back(spanmap::allocate(48, 8));
    for (int i = 0; i < 4; ++i) {
        spanmap::deallocate(g_late_blocks.back(), 48, 8);
        g_late_blocks.pop_back();
    }
}

TEST(stats_mem, ThreadsWithoutACacheAreCounted) {
    g_late_blocks.reserve(16);  // no glibc allocation inside the destructor
    void* warm = spanmap::allocate(8, 8);  // the allocator's key exists first, so its destructor runs first
    pthread_key_t key;
    ASSERT_EQ(pthread_key_create(&key, late_destructor), 0);
    const mem_stats before = spanmap::read_mem_stats();
    std::thread t([&] {
        spanmap::deallocate(spanmap::allocate(48, 8), 48, 8);  // a cache for this thread
        pthread_setspecific(key, &key);
    });
    t.join();
    const mem_stats after = spanmap::read_mem_stats();
    const unsigned c = class_of(48);
    EXPECT_EQ(after.by_size[c].mallocs - before.by_size[c].mallocs, 11u);
    EXPECT_EQ(after.by_size[c].frees - before.by_size[c].frees, 5u);
    EXPECT_EQ(after.heap_objects - before.heap_objects, 6u);
    expect_fast_equals_slow("after the late allocations");
    for (void* p : g_late_blocks) spanmap::deallocate(p, 48, 8);
    g_late_blocks.clear();
    spanmap::deallocate(warm, 8, 8);
    pthread_key_delete(key);
}

TEST(stats_mem, CApiMatchesCpp) {
    void* p = spanmap_malloc(1000);
    spanmap_mem_stats c{};
    spanmap_read_mem_stats(&c);
    const mem_stats cpp = spanmap::read_mem_stats();
    expect_same_stats(c, cpp, "C and C++");
    spanmap_read_mem_stats(nullptr);  // ignored
    spanmap_free(p);
}

// --- per-class table and thread caches ------------------------------------------

TEST(stats_classes, RowsAddUpAndFollowTheTable) {
    std::vector<block> kept = mixed_workload(5);
    spanmap::class_stats rows[spanmap::num_size_classes];
    spanmap::read_class_stats(rows);
    const mem_stats m = spanmap::recompute_mem_stats();
    std::uint64_t cached = 0, spans = 0, in_use_bytes = 0;
    for (unsigned c = 1; c < spanmap::num_size_classes; ++c) {
        const spanmap::class_stats& r = rows[c];
        SCOPED_TRACE("class " + std::to_string(c));
        EXPECT_EQ(r.size, sc::class_size[c]);
        EXPECT_EQ(r.pages_per_span, sc::class_pages[c]);
        EXPECT_EQ(r.objects_per_span, objects_per_span(c));
        EXPECT_EQ(r.objects, r.spans * r.objects_per_span);
        EXPECT_EQ(r.in_use + r.cached + r.free, r.objects);
        EXPECT_EQ(r.in_use, r.mallocs - r.frees);
        EXPECT_EQ(r.mallocs, m.by_size[c].mallocs);
        EXPECT_GE(r.spans, 1u);
        EXPECT_GE(r.utilisation(), 0.0);
        EXPECT_LE(r.utilisation(), 1.0);
        cached += r.cached;
        spans += r.spans;
        in_use_bytes += r.in_use * r.size;
    }
    // Row 0's cached objects are the large cache's parked spans.
    EXPECT_EQ(cached + rows[0].cached, m.cached_objects);
    EXPECT_EQ(spans, m.small_spans);
    EXPECT_EQ(in_use_bytes + m.large_bytes, m.alloc);
    EXPECT_EQ(rows[0].in_use, m.large_objects);
    EXPECT_EQ(rows[0].spans, m.large_objects + rows[0].cached);
    EXPECT_EQ(rows[0].in_use + rows[0].cached, rows[0].objects);
    EXPECT_EQ(rows[0].mallocs, m.by_size[0].mallocs);
    release(kept);
}

TEST(stats_classes, AllocatingMovesObjectsIntoUse) {
    const unsigned c = class_of(416);
    spanmap::class_stats before[spanmap::num_size_classes];
    spanmap::read_class_stats(before);
    std::vector<void*> v;
    for (int i = 0; i < 50; ++i) v.push_back(spanmap::allocate(416, 8));
    spanmap::class_stats after[spanmap::num_size_classes];
    spanmap::read_class_stats(after);
    EXPECT_EQ(after[c].in_use - before[c].in_use, 50u);
    EXPECT_EQ(after[c].mallocs - before[c].mallocs, 50u);
    for (void* p : v) spanmap::deallocate(p, 416, 8);
    spanmap::read_class_stats(after);
    EXPECT_EQ(after[c].in_use, before[c].in_use);
    EXPECT_EQ(after[c].frees - before[c].frees, 50u);
    // Each freed object is cached, or back in its span, or its span went back
    // to the heap: the row still adds up.
    EXPECT_EQ(after[c].in_use + after[c].cached + after[c].free, after[c].objects);
}

TEST(stats_caches, ThisThreadsCacheIsListedWithItsBytes) {
    spanmap_thread_cache_flush();
    std::vector<void*> v;
    for (int i = 0; i < 10; ++i) v.push_back(spanmap::allocate(100, 8));  // class 112
    for (void* p : v) spanmap::deallocate(p, 100, 8);
    spanmap::cache_stats caches[4];
    const std::size_t n = spanmap::read_cache_stats(caches, 4);
    ASSERT_GE(n, 1u);
    const spanmap::cache_stats* mine = nullptr;
    for (std::size_t i = 0; i < n && i < 4; ++i)
        if (caches[i].current_thread) mine = &caches[i];
    ASSERT_NE(mine, nullptr);
    // The refill brought a batch; all of it is back, plus nothing else.
    EXPECT_EQ(mine->bytes, mine->objects * 112);
    EXPECT_GE(mine->objects, 10u);
    spanmap_thread_cache_flush();
    spanmap::read_cache_stats(caches, 4);
    for (std::size_t i = 0; i < n && i < 4; ++i)
        if (caches[i].current_thread) {
            EXPECT_EQ(caches[i].objects, 0u);
        }
    EXPECT_EQ(spanmap::read_cache_stats(nullptr, 0), n);
}

}  // namespace

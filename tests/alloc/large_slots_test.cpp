// The threads' large slots (alloc/src/large.h): a large span freed on a thread
// is parked in that thread's cache and taken back by its next request of that
// many pages without the central large cache; every way out of the slots
// (thread exit, a flush, release_free_memory, fork, the bound) leaves the
// spans where the heap and the statistics can see them.
#include "test_util.h"

#include "cache.h"
#include "introspect.h"

#include <spanmap/alloc.h>
#include <spanmap/spanmap.h>

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <string>

namespace spanmap::test {
namespace {

constexpr std::size_t MiB = std::size_t{1} << 20;
constexpr std::size_t kSlotsBound = 4 * MiB;  // thread_large_slots::max_pages
static_assert(kSlotsBound == detail::thread_large_slots::max_pages * kPage);

class LargeSlots : public HeapTest {
protected:
    void SetUp() override { spanmap::release_free_memory(); }
};

debug::heap_info info() { return debug::read_heap_info(); }

// What the calling thread's slots hold now, pages.
std::size_t own_slot_pages() {
    const detail::mcache* mc = detail::thread_cache();
    if (mc == nullptr) return 0;
    std::size_t n = 0;
    for (unsigned i = 0; i < detail::thread_large_slots::nslots; ++i)
        if (const detail::mspan* s = mc->large.span[i].load(std::memory_order_relaxed)) n += s->npages;
    return n;
}

introspect::counters counters() {
    introspect::counters k{};
    introspect::read_counters(k);
    return k;
}

TEST_F(LargeSlots, AFreeThenAMallocOfTheSameSizeStaysOnTheThread) {
    void* p = spanmap_malloc(MiB);
    fill_pattern(p, 4096, 3);
    const std::uint64_t central_puts = detail::g.large.nput();
    const std::uint64_t central_takes = detail::g.large.ntake();
    const introspect::counters before = counters();
    spanmap_free(p);
    EXPECT_EQ(own_slot_pages(), MiB / kPage);
    EXPECT_EQ(info().large_cached_objects, 1u);
    EXPECT_EQ(info().large_cached_bytes, MiB);
    const introspect::counters freed = counters();
    EXPECT_EQ(freed.nfree[0], before.nfree[0] + 1);
    EXPECT_EQ(freed.large_bytes_freed, before.large_bytes_freed + MiB);
    void* q = spanmap_malloc(MiB - 100);
    EXPECT_EQ(q, p);
    EXPECT_EQ(own_slot_pages(), 0u);
    EXPECT_EQ(info().large_cached_objects, 0u);
    const introspect::counters again = counters();
    EXPECT_EQ(again.nmalloc[0], before.nmalloc[0] + 1);
    EXPECT_EQ(again.large_bytes_alloc, before.large_bytes_alloc + MiB);
    // Neither way went through the central cache.
    EXPECT_EQ(detail::g.large.nput(), central_puts);
    EXPECT_EQ(detail::g.large.ntake(), central_takes);
    // calloc of a parked span reads as zero: it held the program's data.
    spanmap_free(q);
    void* z = spanmap_calloc(1, MiB);
    EXPECT_EQ(z, p);
    EXPECT_EQ(first_nonzero(z, MiB), -1);
    spanmap_free(z);
}

TEST_F(LargeSlots, TheBoundHoldsAndTheOldestGoesToTheCentralCache) {
    std::vector<void*> blocks;
    for (int i = 0; i < 6; ++i) blocks.push_back(spanmap_malloc(MiB));
    const std::uint64_t central_puts = detail::g.large.nput();
    for (void* p : blocks) spanmap_free(p);
    EXPECT_EQ(own_slot_pages(), kSlotsBound / kPage);
    EXPECT_EQ(detail::g.large.nput(), central_puts + 2);
    EXPECT_EQ(info().large_cached_objects, 6u);
    // The newest four are the thread's, served with no central take.
    const std::uint64_t central_takes = detail::g.large.ntake();
    std::vector<void*> again;
    for (int i = 0; i < 4; ++i) again.push_back(spanmap_malloc(MiB));
    EXPECT_EQ(detail::g.large.ntake(), central_takes);
    std::sort(again.begin(), again.end());
    std::vector<void*> newest(blocks.begin() + 2, blocks.end());
    std::sort(newest.begin(), newest.end());
    EXPECT_EQ(again, newest);
    for (void* p : again) spanmap_free(p);
    // A miss that the parked pages could serve sends the slots back first,
    // through the central cache to the heap.
    void* big = spanmap_malloc(kSlotsBound + kPage);
    EXPECT_EQ(own_slot_pages(), 0u);
    EXPECT_EQ(info().large_cached_objects, 0u);
    // A block above the bound is never the thread's; one of the bound fills it.
    spanmap_free(big);
    EXPECT_EQ(own_slot_pages(), 0u);
    void* whole = spanmap_malloc(kSlotsBound);
    spanmap_free(whole);
    EXPECT_EQ(own_slot_pages(), kSlotsBound / kPage);
    EXPECT_EQ(spanmap_malloc(kSlotsBound), whole);
    EXPECT_EQ(own_slot_pages(), 0u);
    spanmap_free(whole);
}

TEST_F(LargeSlots, AThreadsSlotsGoToTheCentralCacheWhenItExits) {
    const std::size_t central_spans = detail::g.large.spans();
    void* parked = nullptr;
    std::thread t([&] {
        parked = spanmap_malloc(2 * MiB);
        spanmap_free(parked);
        EXPECT_EQ(own_slot_pages(), 2 * MiB / kPage);
    });
    t.join();
    EXPECT_EQ(detail::g.large.spans(), central_spans + 1);
    EXPECT_EQ(info().large_cached_objects, 1u);
    EXPECT_EQ(info().large_cached_bytes, 2 * MiB);
    // From the central cache, to any thread.
    EXPECT_EQ(spanmap_malloc(2 * MiB), parked);
    spanmap_free(parked);
}

TEST_F(LargeSlots, ReleaseFreeMemoryEmptiesEveryThreadsSlots) {
    std::mutex m;
    std::condition_variable cv;
    int stage = 0;
    void* parked = nullptr;
    std::size_t left_in_slots = 1;
    std::thread t([&] {
        parked = spanmap_malloc(3 * MiB);
        spanmap_free(parked);
        EXPECT_EQ(own_slot_pages(), 3 * MiB / kPage);
        std::unique_lock lk(m);
        stage = 1;
        cv.notify_all();
        cv.wait(lk, [&] { return stage == 2; });
        // Still the thread's own as far as it knew: the slot is empty now.
        left_in_slots = own_slot_pages();
        void* q = spanmap_malloc(3 * MiB);
        fill_pattern(q, 3 * MiB, 5);
        EXPECT_EQ(check_pattern(q, 3 * MiB, 5), -1);
        spanmap_free(q);
        spanmap_thread_cache_flush();
    });
    {
        std::unique_lock lk(m);
        cv.wait(lk, [&] { return stage == 1; });
    }
    EXPECT_EQ(info().large_cached_objects, 1u);
    spanmap::release_free_memory();
    EXPECT_EQ(info().large_cached_objects, 0u);
    EXPECT_EQ(info().large_objects, 0u);
    {
        std::lock_guard lk(m);
        stage = 2;
    }
    cv.notify_all();
    t.join();
    EXPECT_EQ(left_in_slots, 0u);
    // The thread's flush sent what it parked last to the central cache.
    EXPECT_EQ(info().large_cached_objects, 1u);
    EXPECT_EQ(detail::g.large.spans(), 1u);
}

// While no trimmer runs, an owner empties its slot with a plain load and
// store (large.h); with membarrier at hand that is the steady state, and a
// trim leaves it so.
TEST_F(LargeSlots, OwnersTakeWithoutAnExchangeOnceTrimmersAreDone) {
    void* p = spanmap_malloc(MiB);
    spanmap_free(p);
    spanmap::release_free_memory();
#if defined(SPANMAP_TSAN)
    EXPECT_GE(detail::slot_trimmers.load(), 1u);  // ThreadSanitizer cannot see membarrier
#else
    if (detail::os_heavy_fence_register())
        EXPECT_EQ(detail::slot_trimmers.load(), 0u);
    else
        EXPECT_GE(detail::slot_trimmers.load(), 1u);
#endif
}

// A take racing a trimmer leaves the span to exactly one of them. Two owners
// churn blocks of three large sizes, each filled with its own pattern — so a
// span stays parked in a slot while the owner works on the next size — and
// the main thread empties every thread's slots over and over, churning a
// block of its own in between. A span that two of them got would carry two
// patterns; one that none got would break the heap's invariants.
TEST_F(LargeSlots, TakesRacingTrimmersNeverShareASpan) {
    const int rounds = kSanitized ? 3000 : 50000;
    constexpr int owners = 2;
    const std::uint64_t returned_before = detail::slot_totals.nreturned.load();
    std::atomic<int> running{owners};
    std::vector<std::string> errors(owners);
    std::vector<std::thread> threads;
    for (int id = 0; id < owners; ++id)
        threads.emplace_back([&, id] {
            for (int i = 0; i < rounds && errors[static_cast<std::size_t>(id)].empty(); ++i) {
                // Most rounds free and take back one size, the tightest race.
                const std::size_t n = static_cast<std::size_t>(i % 8 == 0 ? 1 + i % 3 : 1) * 64 * 1024;
                void* p = spanmap_malloc(n);
                const auto seed = static_cast<std::uint64_t>(id) << 32 | static_cast<std::uint64_t>(i);
                if (i % 8 == 0) {
                    fill_pattern(p, n, seed);
                } else {  // the first and last words only
                    static_cast<std::uint64_t*>(p)[0] = seed;
                    static_cast<std::uint64_t*>(p)[n / 8 - 1] = seed;
                }
                std::this_thread::yield();
                if (i % 8 != 0) {
                    if (static_cast<std::uint64_t*>(p)[0] != seed || static_cast<std::uint64_t*>(p)[n / 8 - 1] != seed)
                        errors[static_cast<std::size_t>(id)] = "owner " + std::to_string(id) + ", round " + std::to_string(i) + ": changed";
                } else if (const std::ptrdiff_t at = check_pattern(p, n, seed); at >= 0)
                    errors[static_cast<std::size_t>(id)] =
                        "owner " + std::to_string(id) + ", round " + std::to_string(i) + ": changed at " + std::to_string(at);
                spanmap_free(p);
            }
            spanmap_thread_cache_flush();
            running.fetch_sub(1);
        });
    int trims = 0;
    std::string mine;
    while (running.load() > 0) {
        if (trims % 16 == 0)
            spanmap::release_free_memory();
        else
            detail::large_cache_trim(0, 0);  // the slots alone, in a tighter loop
        void* q = spanmap_malloc(64 * 1024);
        fill_pattern(q, 64 * 1024, ~std::uint64_t{0} - static_cast<std::uint64_t>(trims));
        if (check_pattern(q, 64 * 1024, ~std::uint64_t{0} - static_cast<std::uint64_t>(trims)) >= 0 && mine.empty())
            mine = "the trimmer's block changed in trim " + std::to_string(trims);
        spanmap_free(q);
        ++trims;
    }
    for (auto& t : threads) t.join();
    for (const std::string& e : errors) EXPECT_EQ(e, "");
    EXPECT_EQ(mine, "");
    EXPECT_TRUE(invariants_hold());
    // The trimmer did take spans out of the owners' slots: the race was run.
    EXPECT_GT(detail::slot_totals.nreturned.load(), returned_before) << trims << " trims";
}

TEST_F(LargeSlots, AFlushOfTheThreadCacheEmptiesItsSlots) {
    void* p = spanmap_malloc(MiB);
    spanmap_free(p);
    ASSERT_EQ(own_slot_pages(), MiB / kPage);
    spanmap_thread_cache_flush();
    EXPECT_EQ(own_slot_pages(), 0u);
    EXPECT_EQ(info().large_cached_objects, 1u);
    EXPECT_EQ(detail::g.large.spans(), 1u);
}

// fork: the child keeps the forking thread's slots and gets the other
// threads' spans back in the central cache; it can free and allocate them all.
TEST_F(LargeSlots, AForkChildUsesEveryParkedSpan) {
    void* mine = spanmap_malloc(MiB);
    spanmap_free(mine);
    ASSERT_EQ(own_slot_pages(), MiB / kPage);
    std::mutex m;
    std::condition_variable cv;
    int stage = 0;
    void* theirs = nullptr;
    std::thread t([&] {
        theirs = spanmap_malloc(2 * MiB);
        spanmap_free(theirs);
        EXPECT_EQ(own_slot_pages(), 2 * MiB / kPage);
        std::unique_lock lk(m);
        stage = 1;
        cv.notify_all();
        cv.wait(lk, [&] { return stage == 2; });
    });
    {
        std::unique_lock lk(m);
        cv.wait(lk, [&] { return stage == 1; });
    }
    const pid_t pid = fork();
    ASSERT_NE(pid, -1);
    if (pid == 0) {
        int bad = 0;
        void* a = spanmap_malloc(MiB);          // the forking thread's slot
        void* b = spanmap_malloc(2 * MiB);      // the other thread's, via the central cache
        if (a != mine) bad |= 1;
        if (b != theirs) bad |= 2;
        fill_pattern(a, MiB, 1);
        fill_pattern(b, 2 * MiB, 2);
        if (check_pattern(a, MiB, 1) != -1 || check_pattern(b, 2 * MiB, 2) != -1) bad |= 4;
        spanmap_free(a);
        spanmap_free(b);
        if (spanmap_malloc(2 * MiB) != b) bad |= 8;
        char why[256];
        if (!spanmap::debug::check_invariants(why, sizeof why)) bad |= 16;
        std::_Exit(bad);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    {
        std::lock_guard lk(m);
        stage = 2;
    }
    cv.notify_all();
    t.join();
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "1, 2: a parked span not reused; 4: contents; 8: free/malloc; 16: invariants";
    EXPECT_EQ(spanmap_malloc(MiB), mine);
    spanmap_free(mine);
}

// A freed block parked in a slot is free: every call that checks its pointer
// stops the process naming it.
using LargeSlotsDeathTest = LargeSlots;

TEST_F(LargeSlotsDeathTest, ASecondFreeOfAParkedSpanStopsTheProcess) {
    void* p = spanmap_malloc(MiB);
    spanmap_free(p);
    ASSERT_EQ(own_slot_pages(), MiB / kPage);
    char hex[32];
    std::snprintf(hex, sizeof hex, "%p", p);
    const std::string named = std::string("spanmap: free ") + hex + ": double free";
    EXPECT_DEATH(spanmap_free(p), named);
    EXPECT_DEATH((void)spanmap_realloc(p, 2 * MiB), std::string("spanmap: realloc ") + hex + ": double free");
    EXPECT_DEATH((void)spanmap_usable_size(p), std::string("spanmap: usable_size ") + hex + ": double free");
    // Still parked, still the thread's.
    EXPECT_EQ(spanmap_malloc(MiB), p);
    spanmap_free(p);
}

}  // namespace
}  // namespace spanmap::test

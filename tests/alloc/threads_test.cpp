// Several threads at once: blocks freed by threads other than their
// allocator (a producer/consumer queue, a ring of neighbours), thousands of
// short-lived threads whose caches must be flushed and recycled, fork() in a
// process whose other threads allocate, and allocation from thread-exit
// destructors. Every block carries a pattern that
// is checked where it is freed; every test ends with the heap's invariants.

#include "cache.h"
#include "test_util.h"

#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace spanmap::test;
using spanmap::debug::heap_info;
using spanmap::debug::read_heap_info;

struct item {
    void* p;
    std::size_t size;
    std::uint64_t seed;
};

// A tiny blocking queue (its own memory comes from glibc, not spanmap).
class mailbox {
public:
    void push(std::vector<item> batch) {
        {
            std::lock_guard lock(m_);
            q_.push_back(std::move(batch));
        }
        cv_.notify_one();
    }
    std::vector<item> pop() {
        std::unique_lock lock(m_);
        cv_.wait(lock, [&] { return !q_.empty(); });
        std::vector<item> batch = std::move(q_.front());
        q_.pop_front();
        return batch;
    }

private:
    std::mutex m_;
    std::condition_variable cv_;
    std::deque<std::vector<item>> q_;
};

// Mostly small with an occasional large object; cheap enough for many threads.
std::size_t size_for(std::uint64_t x) {
    const std::uint64_t k = x % 1000;
    if (k < 700) return 1 + mix(x) % 512;
    if (k < 980) return 513 + mix(x) % (kMaxSmall - 512);
    return kMaxSmall + 1 + mix(x) % 200000;
}

item make_item(std::uint64_t seed) {
    const std::size_t n = size_for(seed);
    void* p = spanmap_malloc(n);
    if (p != nullptr) fill_pattern(p, n, seed);
    return {p, n, seed};
}

// Verifies and frees; returns false (instead of asserting, so worker threads
// can report) when the block lost its contents. Alternates sized and unsized
// frees so both remote-free paths run.
bool check_and_free(const item& it) {
    const bool ok = it.p != nullptr && check_pattern(it.p, it.size, it.seed) == -1 &&
                    spanmap_usable_size(it.p) == spanmap_good_size(it.size);
    if (it.p != nullptr) {
        if (it.seed & 1)
            spanmap_free_sized(it.p, it.size);
        else
            spanmap_free(it.p);
    }
    return ok;
}

// What must be true whenever all worker threads have been joined: their
// caches are flushed (nothing cached beyond what this thread had), no thread
// cache stays live, every large object was freed, every tier is consistent.
void expect_quiet_like(const heap_info& before) {
    const heap_info now = read_heap_info();
    EXPECT_EQ(now.live_caches, before.live_caches) << "exited threads' caches must be detached";
    EXPECT_EQ(now.cached_objects, before.cached_objects) << "exited threads' caches must be flushed";
    EXPECT_EQ(now.large_objects, before.large_objects);
    EXPECT_TRUE(invariants_hold());
}

// The calling thread gets its own cache before a baseline is taken.
heap_info baseline() {
    spanmap_free(spanmap_malloc(1));
    spanmap_thread_cache_flush();
    return read_heap_info();
}

using Threads = HeapTest;

TEST_F(Threads, ProducersAndConsumers) {
    constexpr int kProducers = 2, kConsumers = 2;
    const std::size_t per_producer = scaled(60000, 6000);
    const heap_info before = baseline();

    mailbox queue;
    std::atomic<std::size_t> bad{0}, consumed{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kProducers; ++t) {
        threads.emplace_back([&, t] {
            std::vector<item> batch;
            for (std::size_t i = 0; i < per_producer; ++i) {
                batch.push_back(make_item((std::uint64_t(t) << 40) | i));
                if (batch.size() == 64) queue.push(std::exchange(batch, {}));
            }
            queue.push(std::move(batch));
        });
    }
    for (int t = 0; t < kConsumers; ++t) {
        threads.emplace_back([&, t] {
            // Consumers allocate for themselves too, so their caches hold a
            // mix of their own and remote objects.
            std::vector<item> own;
            std::uint64_t n = 0;
            for (;;) {
                std::vector<item> batch = queue.pop();
                if (batch.size() == 1 && batch[0].p == nullptr) break;
                for (const item& it : batch) {
                    bad += !check_and_free(it);
                    ++consumed;
                    if (++n % 3 == 0) own.push_back(make_item((std::uint64_t(0xc0 + t) << 40) | n));
                    if (own.size() > 100) {
                        for (const item& o : own) bad += !check_and_free(o);
                        own.clear();
                    }
                }
            }
            for (const item& o : own) bad += !check_and_free(o);
        });
    }
    for (int t = 0; t < kProducers; ++t) threads[t].join();
    for (int t = 0; t < kConsumers; ++t) queue.push({item{nullptr, 0, 0}});
    for (int t = kProducers; t < kProducers + kConsumers; ++t) threads[t].join();

    EXPECT_EQ(bad.load(), 0u) << "blocks lost their contents or usable size across threads";
    EXPECT_EQ(consumed.load(), kProducers * per_producer);
    expect_quiet_like(before);
}

TEST_F(Threads, RingOfNeighbours) {
    constexpr int kThreads = 4;
    const std::size_t rounds = scaled(400, 60);
    constexpr std::size_t kBatch = 128;
    const heap_info before = baseline();

    std::vector<mailbox> boxes(kThreads);
    std::atomic<std::size_t> bad{0}, freed{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            for (std::size_t r = 0; r < rounds; ++r) {
                std::vector<item> batch;
                for (std::size_t i = 0; i < kBatch; ++i)
                    batch.push_back(make_item((std::uint64_t(t) << 48) | (r << 16) | i));
                boxes[(t + 1) % kThreads].push(std::move(batch));
                for (const item& it : boxes[t].pop()) {
                    bad += !check_and_free(it);
                    ++freed;
                }
            }
        });
    }
    for (std::thread& th : threads) th.join();

    EXPECT_EQ(bad.load(), 0u);
    EXPECT_EQ(freed.load(), kThreads * rounds * kBatch);
    expect_quiet_like(before);
}

// Blocks cross in both directions between the main thread and a worker, and
// the worker frees some of main's while main is still allocating.
TEST_F(Threads, MainAndWorkerFreeEachOthersBlocks) {
    const heap_info before = baseline();
    const std::size_t count = scaled(20000, 3000);
    std::vector<item> from_main;
    for (std::size_t i = 0; i < count; ++i) from_main.push_back(make_item(0x5000000000ULL | i));

    mailbox to_main;
    std::atomic<std::size_t> bad{0};
    std::thread worker([&] {
        std::vector<item> mine;
        for (std::size_t i = 0; i < count; ++i) {
            bad += !check_and_free(from_main[i]);
            mine.push_back(make_item(0x6000000000ULL | i));
        }
        to_main.push(std::move(mine));
    });
    std::vector<item> churn;
    for (std::size_t i = 0; i < count; ++i) churn.push_back(make_item(0x7000000000ULL | i));
    worker.join();
    for (const item& it : to_main.pop()) bad += !check_and_free(it);
    for (const item& it : churn) bad += !check_and_free(it);
    EXPECT_EQ(bad.load(), 0u);
    spanmap_thread_cache_flush();
    expect_quiet_like(before);
}

// fork() while other threads allocate: the child (where only the forking
// thread lives on) must find every tier consistent and usable, and no cache
// of a thread that does not exist there may stay live.
TEST_F(Threads, ForkWhileOtherThreadsAllocate) {
    const int forks = static_cast<int>(scaled(20, 5));
    (void)baseline();
    std::atomic<bool> stop{false};
    std::atomic<std::size_t> bad{0};
    std::vector<std::thread> workers;
    // Stops and joins the workers however the test body is left.
    struct stopper {
        std::atomic<bool>& stop;
        std::vector<std::thread>& threads;
        ~stopper() {
            stop = true;
            for (std::thread& t : threads)
                if (t.joinable()) t.join();
        }
    } const stop_workers{stop, workers};
    for (int t = 0; t < 2; ++t) {
        workers.emplace_back([&, t] {
            std::vector<item> mine;
            for (std::uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
                mine.push_back(make_item((std::uint64_t(t + 1) << 40) | i));
                if (mine.size() == 200) {
                    for (const item& it : mine) bad += !check_and_free(it);
                    mine.clear();
                }
            }
            for (const item& it : mine) bad += !check_and_free(it);
        });
    }
    for (int f = 0; f < forks; ++f) {
        std::vector<item> held;  // live in the parent across the fork
        for (std::uint64_t i = 0; i < 50; ++i) held.push_back(make_item((std::uint64_t(0xf0 + f) << 40) | i));
        const pid_t pid = fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            // The child: no gtest here, only an exit code saying what failed.
            int code = 0;
            for (const item& it : held)
                if (!check_and_free(it)) code |= 1;
            for (std::uint64_t i = 0; i < 2000; ++i) {
                const item it = make_item(0xc4170000ULL + i);
                if (!check_and_free(it)) code |= 2;
            }
            spanmap_thread_cache_flush();
            char why[256];
            if (!spanmap::debug::check_invariants(why, sizeof why)) code |= 4;
            if (spanmap::debug::read_heap_info().live_caches != 1) code |= 8;
            _exit(code);
        }
        int status = 0;
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        EXPECT_TRUE(WIFEXITED(status)) << "fork " << f << ": child killed by signal "
                                       << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        EXPECT_EQ(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 0)
            << "fork " << f << ": 1 = parent's block lost its contents, 2 = allocation in the child, "
                               "4 = invariants, 8 = other threads' caches still live";
        for (const item& it : held) bad += !check_and_free(it);
    }
    stop = true;
    for (std::thread& w : workers) w.join();
    EXPECT_EQ(bad.load(), 0u) << "in the parent";
}

// --- thread churn ------------------------------------------------------------

constexpr std::size_t kConcurrency = 4;

// The same sizes in every thread (every class, plus two large objects), so
// the demand of one batch of threads is the same in the warm-up and the churn.
std::vector<std::size_t> churn_sizes() {
    std::vector<std::size_t> sizes;
    for (int rep = 0; rep < 2; ++rep)
        for (int c = 1; c < sc::num_classes; ++c) sizes.push_back(sc::class_size[c] - (rep ? 1 : 0));
    sizes.push_back(40000);
    sizes.push_back(100000);
    return sizes;
}

// Allocates one block of each size, frees most of them, and leaves every
// tenth for the main thread to free after the thread has gone.
void churn_thread_body(std::uint64_t id, std::vector<item>& left, std::mutex& left_mu, std::atomic<std::size_t>& bad) {
    const std::vector<std::size_t> sizes = churn_sizes();
    std::vector<item> mine;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
        const std::uint64_t seed = (id << 20) | i;
        void* p = spanmap_malloc(sizes[i]);
        fill_pattern(p, sizes[i], seed);
        mine.push_back({p, sizes[i], seed});
    }
    std::lock_guard lock(left_mu);
    for (std::size_t i = 0; i < mine.size(); ++i) {
        if (i % 10 == 0)
            left.push_back(mine[i]);
        else
            bad += !check_and_free(mine[i]);
    }
}

// Runs `threads` threads, kConcurrency at a time, then frees what they left
// behind and flushes this thread's cache so only the heap's own policy
// decides which pages stay in use.
void run_churn(std::size_t threads, std::uint64_t first_id, std::atomic<std::size_t>& bad) {
    std::vector<item> left;
    std::mutex left_mu;
    for (std::size_t done = 0; done < threads;) {
        std::vector<std::thread> batch;
        for (; batch.size() < kConcurrency && done < threads; ++done)
            batch.emplace_back(churn_thread_body, first_id + done, std::ref(left), std::ref(left_mu), std::ref(bad));
        for (std::thread& t : batch) t.join();
        for (const item& it : left) bad += !check_and_free(it);
        left.clear();
    }
    spanmap_thread_cache_flush();
}

TEST_F(Threads, ChurnDoesNotLeakCachesOrPages) {
    const std::size_t churn_threads = scaled(2000, 300);
    const heap_info before = baseline();
    std::atomic<std::size_t> bad{0};

    run_churn(10, 0, bad);
    const heap_info warm = read_heap_info();
    expect_quiet_like(before);

    run_churn(churn_threads, 1000, bad);
    const heap_info after = read_heap_info();
    EXPECT_EQ(bad.load(), 0u);
    expect_quiet_like(before);

    // Caches of exited threads are reused: never more caches than threads
    // that were alive at once (plus this one), however many came and went.
    // (Not compared with the warm-up: its few threads may not have overlapped.)
    EXPECT_LE(after.live_caches + after.pooled_caches,
              before.live_caches + std::max(before.pooled_caches, kConcurrency));

    // Pages: every block is free and every cache flushed at both points, so
    // only spans the heap chose to keep are in use. Whatever it keeps, a
    // batch of kConcurrency threads can make it keep at most one span per
    // block they allocate (their whole demand, if no two blocks shared a
    // span). A thread whose cache leaks pins a span of each of the 67 classes
    // it used, i.e. hundreds of pages per thread, thousands after the churn.
    std::size_t per_thread_pages = 0;
    for (std::size_t n : churn_sizes()) {
        int c = 1;
        while (c < sc::num_classes && sc::class_size[c] < n) ++c;
        per_thread_pages += c < sc::num_classes ? sc::class_pages[c] : round_up(n, kPage) / kPage;
    }
    const std::size_t bound = warm.pages_in_use + kConcurrency * per_thread_pages;
    RecordProperty("pages_in_use_after_warm_up", static_cast<int>(warm.pages_in_use));
    RecordProperty("pages_in_use_after_churn", static_cast<int>(after.pages_in_use));
    RecordProperty("pages_in_use_bound", static_cast<int>(bound));
    EXPECT_LE(after.pages_in_use, bound) << "pages in use after warm-up: " << warm.pages_in_use
                                         << "; allowance for one batch: " << kConcurrency * per_thread_pages;
}

// --- allocation from thread-exit destructors ---------------------------------

// Filled from destructors, where gtest assertions cannot be relied on.
std::atomic<int> tls_bad{0};
std::atomic<int> tls_runs{0};
std::mutex handoff_mu;
std::vector<item> handoff;  // blocks a destructor leaves for main to free

// Allocates and frees through every path (small, large, calloc, realloc, the
// C++ API), frees blocks the main thread allocated, and hands some back.
void allocate_at_thread_exit(std::vector<item>* from_main) {
    for (std::size_t n : {std::size_t{8}, std::size_t{100}, std::size_t{3000}, std::size_t{40000}}) {
        for (int i = 0; i < 50; ++i) {
            const std::uint64_t seed = n * 1000 + static_cast<std::uint64_t>(i);
            void* p = spanmap_malloc(n);
            if (p == nullptr) {
                ++tls_bad;
                continue;
            }
            fill_pattern(p, n, seed);
            if (check_pattern(p, n, seed) != -1 || spanmap_usable_size(p) != spanmap_good_size(n)) ++tls_bad;
            if (i % 10 == 0) {
                std::lock_guard lock(handoff_mu);
                handoff.push_back({p, n, seed});
            } else {
                spanmap_free(p);
            }
        }
    }
    void* z = spanmap_calloc(10, 100);
    if (z == nullptr || first_nonzero(z, 1000) != -1) ++tls_bad;
    z = spanmap_realloc(z, 50000);
    if (z == nullptr || first_nonzero(z, 1000) != -1) ++tls_bad;
    spanmap_free(z);
    void* q = spanmap::allocate(24, 8);
    spanmap::deallocate(q, 24, 8);
    if (from_main != nullptr) {
        for (const item& it : *from_main) tls_bad += !check_and_free(it);
        from_main->clear();
    }
    ++tls_runs;
}

struct exit_allocator {
    std::vector<item>* from_main = nullptr;
    ~exit_allocator() { allocate_at_thread_exit(from_main); }
};

// Two distinct thread_local objects, so one thread can hold both: the first
// is constructed before the thread touches spanmap, the second after. The
// C++ runtime destroys them in reverse order; where spanmap's own thread-exit
// teardown falls relative to them is its business, and both must work.
exit_allocator& tls_before_first_use() {
    thread_local exit_allocator a;
    return a;
}
exit_allocator& tls_after_first_use() {
    thread_local exit_allocator a;
    return a;
}

void key_destructor(void* from_main) { allocate_at_thread_exit(static_cast<std::vector<item>*>(from_main)); }

// Created during static initialisation, i.e. before spanmap's first call
// creates its own thread-exit key: glibc runs key destructors in creation
// order, so this one runs before spanmap's and the key made inside a test
// after it.
struct early_key {
    pthread_key_t key{};
    bool ok = pthread_key_create(&key, key_destructor) == 0;
};
early_key early;

// Threads with no cache (before their first allocation, and after their
// cache went back at exit) see one of two empty fronts through their TLS
// pointer, shared by all of them: the fast paths must find every bin empty
// and full and never write to one.
void expect_empty_fronts_untouched() {
    namespace d = spanmap::detail;
    for (const d::cache_front& f : d::cache_states) {
        for (unsigned c = 0; c < d::num_classes; ++c) {
            const d::cache_bin& b = f.bins[c];
            EXPECT_EQ(b.count.load(std::memory_order_relaxed), 0u) << "class " << c;
            EXPECT_EQ(b.cap.load(std::memory_order_relaxed), 0u) << "class " << c;
            EXPECT_EQ(b.slots, nullptr) << "class " << c;
            EXPECT_EQ(b.nfree.load(), 0u) << "class " << c;
            EXPECT_EQ(b.size, 0) << "class " << c;
        }
        EXPECT_EQ(f.prof.bytes_until_sample.load(), 0);
    }
}

class ThreadExit : public HeapTest {
protected:
    void SetUp() override {
        tls_bad = 0;
        tls_runs = 0;
        before_ = baseline();
        for (std::uint64_t i = 0; i < 100; ++i) from_main_.push_back(make_item(0xabc00000ULL + i));
    }
    // Everything the destructors allocated and handed back is intact, and the
    // exited thread left no live cache and no cached objects behind — even a
    // cache that the late allocation may have set up again.
    void finish(int expected_runs) {
        EXPECT_EQ(tls_runs.load(), expected_runs);
        EXPECT_EQ(tls_bad.load(), 0);
        EXPECT_TRUE(from_main_.empty()) << "the destructor should have freed main's blocks";
        std::lock_guard lock(handoff_mu);
        EXPECT_EQ(handoff.size(), std::size_t{4 * 5} * static_cast<std::size_t>(expected_runs));
        for (const item& it : handoff) EXPECT_TRUE(check_and_free(it)) << it.p;
        handoff.clear();
        spanmap_thread_cache_flush();
        expect_quiet_like(before_);
        expect_empty_fronts_untouched();
    }
    heap_info before_{};
    std::vector<item> from_main_;
};

TEST_F(ThreadExit, ThreadLocalConstructedBeforeFirstAllocation) {
    std::thread t([this] {
        tls_before_first_use().from_main = &from_main_;
        spanmap_free(spanmap_malloc(64));
    });
    t.join();
    finish(1);
}

TEST_F(ThreadExit, ThreadLocalConstructedAfterFirstAllocation) {
    std::thread t([this] {
        spanmap_free(spanmap_malloc(64));
        tls_after_first_use().from_main = &from_main_;
    });
    t.join();
    finish(1);
}

// The thread's first allocation of all happens in its exit destructor.
TEST_F(ThreadExit, ThreadLocalDestructorIsTheFirstAllocation) {
    std::thread t([this] { tls_before_first_use().from_main = &from_main_; });
    t.join();
    finish(1);
}

TEST_F(ThreadExit, PthreadKeyCreatedAfterAllocatorInit) {
    pthread_key_t key;
    ASSERT_EQ(pthread_key_create(&key, key_destructor), 0);
    std::thread t([&] {
        spanmap_free(spanmap_malloc(64));
        pthread_setspecific(key, &from_main_);
    });
    t.join();
    pthread_key_delete(key);
    finish(1);
}

TEST_F(ThreadExit, PthreadKeyCreatedBeforeAllocatorInit) {
    ASSERT_TRUE(early.ok);
    std::thread t([&] {
        spanmap_free(spanmap_malloc(64));
        pthread_setspecific(early.key, &from_main_);
    });
    t.join();
    finish(1);
}

TEST_F(ThreadExit, PthreadKeyDestructorIsTheFirstAllocation) {
    pthread_key_t key;
    ASSERT_EQ(pthread_key_create(&key, key_destructor), 0);
    std::thread t([&] { pthread_setspecific(key, &from_main_); });
    t.join();
    pthread_key_delete(key);
    finish(1);
}

// Many threads exiting through such destructors, several at a time, with
// the cache pool under pressure.
TEST_F(ThreadExit, ManyThreadsAllocateInExitDestructors) {
    const int threads = static_cast<int>(scaled(200, 40));
    // Main's blocks are handed to the first thread only.
    std::vector<item>* give = &from_main_;
    for (int done = 0; done < threads;) {
        std::vector<std::thread> batch;
        for (; batch.size() < kConcurrency && done < threads; ++done) {
            batch.emplace_back([give, done] {
                tls_before_first_use().from_main = done == 0 ? give : nullptr;
                spanmap_free(spanmap_malloc(64));
                if (done % 2) tls_after_first_use();
            });
        }
        for (std::thread& t : batch) t.join();
    }
    // Odd-numbered threads ran two destructors.
    finish(threads + threads / 2);
}

}  // namespace

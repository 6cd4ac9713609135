#include "scavenge.h"

#include "cache.h"
#include "conf.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>


namespace spanmap::detail {
namespace {

// The scavenger starts once this much has been freed: a process that never
// gives memory back needs no thread, and by then the process is well past the
// loader's early allocations, where starting a thread would be unwise.
constexpr std::size_t start_after_pages = 128;  // 1 MiB
constexpr std::uint32_t ticks_per_decay = 4;
constexpr std::size_t pages_per_call = 512;  // 4 MiB: one madvise call stays well under a millisecond

// How memory is scavenged in this process.
enum : int {
    not_started = 0,  // no thread yet
    threaded = 1,     // the background thread is starting or running
    inline_only = 2,  // a fork child: no new thread (the child of a threaded
                      // process may not create one); the allocation slow
                      // paths scavenge instead, on the same clock
};
std::atomic<int> scavenger_state{not_started};
// Pages the heap's growth asked to release (scavenge_after_growth); the
// thread sleeps on this word, so a request wakes it.
std::atomic<std::uint32_t> growth_debt{0};
std::atomic<std::uint64_t> next_inline_tick_ns{0};

std::uint64_t tick_ms() {
    return conf.decay_ms / ticks_per_decay > 10 ? conf.decay_ms / ticks_per_decay : 10;
}

std::uint64_t now_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

// One tick of the clock and the releases it makes due.
void tick_and_scavenge() {
    const std::uint32_t now = g.heap.tick() + 1;
    g.heap.set_tick(now);
    large_cache_trim(now, ticks_per_decay);
    g.heap.trim_cached(now, ticks_per_decay);
    while (g.heap.scavenge(now, ticks_per_decay, pages_per_call) != 0) {
    }
}

// Releases what the heap's growth asked for, oldest tick or not.
void pay_growth_debt() {
    std::uint32_t debt = growth_debt.exchange(0, std::memory_order_relaxed);
    while (debt != 0) {
        const std::size_t n = g.heap.scavenge(g.heap.tick(), 0, debt < pages_per_call ? debt : pages_per_call);
        if (n == 0) break;
        debt = n >= debt ? 0 : debt - static_cast<std::uint32_t>(n);
    }
}

void scavenge_inline() {
    if (growth_debt.load(std::memory_order_relaxed) != 0) {
        const int saved = errno;
        pay_growth_debt();
        errno = saved;
    }
    std::uint64_t due = next_inline_tick_ns.load(std::memory_order_relaxed);
    const std::uint64_t now = now_ns();
    if (now < due) return;
    if (!next_inline_tick_ns.compare_exchange_strong(due, now + tick_ms() * 1000000u, std::memory_order_relaxed))
        return;  // another thread takes this tick
    const int saved = errno;
    tick_and_scavenge();
    errno = saved;
}

// Sleeps until the deadline or until the heap's growth asks for a release.
void wait_for_work(std::uint64_t deadline_ns) {
    for (;;) {
        if (growth_debt.load(std::memory_order_relaxed) != 0) return;
        const std::uint64_t now = now_ns();
        if (now >= deadline_ns) return;
        const std::uint64_t left = deadline_ns - now;
        timespec ts{static_cast<time_t>(left / 1000000000u), static_cast<long>(left % 1000000000u)};
        ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&growth_debt), FUTEX_WAIT_PRIVATE, 0, &ts, nullptr, 0);
    }
}

void* scavenger_main(void*) {
    std::uint64_t next_tick = now_ns() + tick_ms() * 1000000u;
    for (;;) {
        wait_for_work(next_tick);
        pay_growth_debt();
        if (now_ns() >= next_tick) {
            tick_and_scavenge();
            next_tick = now_ns() + tick_ms() * 1000000u;
        }
    }
    return nullptr;
}

}  // namespace

void maybe_start_scavenger(std::size_t parked_pages) noexcept {
    const int state = scavenger_state.load(std::memory_order_relaxed);
    if (__builtin_expect(state == threaded, 1)) return;
    if (!conf.scavenger) return;
    if (state == inline_only) {
        scavenge_inline();
        return;
    }
    // Pages parked in the large cache, the thread's slots and the heap's
    // empty-span cache count: only the scavenger ages them out.
    if (g.heap.pages_ever_freed() + g.large.pages() + g.heap.cached_pages() + parked_pages < start_after_pages) return;
    int expected = not_started;
    if (!scavenger_state.compare_exchange_strong(expected, threaded, std::memory_order_relaxed)) return;
    // pthread_create allocates (the new thread's TLS); that re-enters us with
    // the state already set, so it does not come back here.
    const int saved = errno;
    sigset_t all;
    sigset_t old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);  // the thread takes no signals
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 << 10);
    pthread_t thread;
    if (pthread_create(&thread, &attr, scavenger_main, nullptr) == 0)
        pthread_setname_np(thread, "spanmap-scav");
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    errno = saved;
}

void scavenge_after_growth(std::size_t pages) noexcept {
    if (!conf.scavenger || scavenger_state.load(std::memory_order_relaxed) == not_started) return;
    const std::uint32_t add = pages > 0x7fffffffu ? 0x7fffffffu : static_cast<std::uint32_t>(pages);
    const std::uint32_t was = growth_debt.fetch_add(add, std::memory_order_relaxed);
    if (was == 0 && scavenger_state.load(std::memory_order_relaxed) == threaded) {
        const int saved = errno;
        ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&growth_debt), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
        errno = saved;
    }
}

void scavenger_after_fork_child() noexcept {
    g.heap.after_fork_child();
    scavenger_state.store(inline_only, std::memory_order_relaxed);
    next_inline_tick_ns.store(0, std::memory_order_relaxed);
}

std::size_t release_free_memory() noexcept {
    ensure_init();
    flush_thread_cache();
    for (unsigned c = 1; c < num_classes; ++c) g.central[c].release_empty_spans();
    large_cache_trim(0, 0);
    g.heap.trim_cached(0, 0);
    std::size_t pages = 0;
    for (std::size_t n; (n = g.heap.scavenge(g.heap.tick(), 0, pages_per_call)) != 0;) pages += n;
    // Pages the background scavenger took before this call are neither free
    // nor released until it lands them: wait for it (one bounded chunk's
    // madvise), so that on return the resident set is down and every free
    // page can be allocated again, rather than the next allocation reserving
    // fresh address space beside pages that are merely in transit.
    while (g.heap.pages_inflight() != 0) sched_yield();
    return pages * page_size;
}

}  // namespace spanmap::detail

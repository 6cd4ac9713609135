// The heap profiler against the allocator's internals: what is sampled and
// with which first frame, what a free takes out, threads that start before
// profiling or exit during it, re-entry, fork, the written profile and how
// its unscaled figures match the truth. Rate 1 samples every allocation, so
// most checks are exact counts; the statistical ones use a fixed seed.
#include "conf.h"
#include "profile.h"

#include <spanmap/alloc.h>
#include <spanmap/pmr.h>
#include <spanmap/profile.h>
#include <spanmap/spanmap.h>

#include <gtest/gtest.h>

#ifdef SPANMAP_HAVE_LIBUNWIND
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#endif

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <latch>
#include <map>
#include <string_view>
#include <string>
#include <thread>
#include <vector>

namespace {

using spanmap::detail::profile_totals;
using spanmap::detail::read_profile_totals;

#ifndef SPANMAP_HAVE_LIBUNWIND

TEST(Profile, UnavailableWithoutLibunwind) {
    errno = 0;
    EXPECT_FALSE(spanmap::profile_start());
    EXPECT_EQ(errno, ENOSYS);
    EXPECT_EQ(spanmap_profile_start(4096), 0);
    errno = 0;
    EXPECT_FALSE(spanmap::profile_dump("/dev/null"));
    EXPECT_EQ(errno, ENOSYS);
    spanmap::profile_stop();  // harmless
    void* p = spanmap_malloc(100);
    EXPECT_NE(p, nullptr);
    spanmap_free(p);
}

#else

void opaque(void* p) { asm volatile("" ::"r"(p) : "memory"); }

std::string temp_path(const char* name) {
    return ::testing::TempDir() + "spanmap_profile_" + name + "_" + std::to_string(::getpid()) + ".heap";
}

// --- reading a profile back -----------------------------------------------------

struct entry {
    std::uint64_t inuse_objects, inuse_bytes, alloc_objects, alloc_bytes;
    std::vector<std::uintptr_t> frames;
};

struct profile {
    std::uint64_t inuse_objects = 0, inuse_bytes = 0, alloc_objects = 0, alloc_bytes = 0;
    std::uint64_t rate = 0;
    std::vector<entry> entries;
    std::string maps;
};

// A strict reader of the profile's lines (std::regex trips GCC 12's
// -Wmaybe-uninitialized under the sanitizers).
class line_parser {
public:
    explicit line_parser(std::string_view s) : s_(s) {}
    bool literal(std::string_view lit) {
        if (s_.substr(0, lit.size()) != lit) return false;
        s_.remove_prefix(lit.size());
        return true;
    }
    bool number(std::uint64_t& out, int base = 10) {
        const auto [end, ec] = std::from_chars(s_.data(), s_.data() + s_.size(), out, base);
        if (ec != std::errc() || end == s_.data()) return false;
        s_.remove_prefix(static_cast<std::size_t>(end - s_.data()));
        return true;
    }
    // "<n>: <bytes> [<n>: <bytes>]"
    bool counts(std::uint64_t (&c)[4]) {
        return number(c[0]) && literal(": ") && number(c[1]) && literal(" [") && number(c[2]) && literal(": ") &&
               number(c[3]) && literal("]");
    }
    bool done() const { return s_.empty(); }

private:
    std::string_view s_;
};

// Parses the legacy heap profile strictly: any line out of format fails.
profile read_profile(const std::string& path) {
    profile r;
    std::ifstream in(path);
    EXPECT_TRUE(in) << path;
    std::string line;
    std::getline(in, line);
    std::uint64_t c[4];
    line_parser h(line);
    if (!(h.literal("heap profile: ") && h.counts(c) && h.literal(" @ heap_v2/") && h.number(r.rate) && h.done())) {
        ADD_FAILURE() << "bad header: " << line;
        return r;
    }
    r.inuse_objects = c[0];
    r.inuse_bytes = c[1];
    r.alloc_objects = c[2];
    r.alloc_bytes = c[3];
    while (std::getline(in, line) && !line.empty()) {
        line_parser l(line);
        entry e{};
        bool ok = l.counts(c) && l.literal(" @");
        while (ok && !l.done()) {
            std::uint64_t f = 0;
            ok = l.literal(" 0x") && l.number(f, 16);
            e.frames.push_back(f);
        }
        if (!ok || e.frames.empty()) {
            ADD_FAILURE() << "bad stack line: " << line;
            return r;
        }
        e.inuse_objects = c[0];
        e.inuse_bytes = c[1];
        e.alloc_objects = c[2];
        e.alloc_bytes = c[3];
        r.entries.push_back(std::move(e));
    }
    EXPECT_TRUE(std::getline(in, line) && line == "MAPPED_LIBRARIES:") << "after the stacks: " << line;
    for (std::string rest; std::getline(in, rest);) r.maps += rest + "\n";
    return r;
}

profile dump_and_read(const char* name) {
    const std::string path = temp_path(name);
    EXPECT_TRUE(spanmap::profile_dump(path.c_str())) << path;
    profile r = read_profile(path);
    std::remove(path.c_str());
    return r;
}

// What each stack gained between two dumps of this process (stacks are
// cumulative; the binary may run a test more than once).
std::vector<entry> since(const profile& before, const profile& after) {
    std::map<std::vector<std::uintptr_t>, entry> old;
    for (const entry& e : before.entries) old[e.frames] = e;
    std::vector<entry> out;
    for (entry e : after.entries) {
        if (const auto it = old.find(e.frames); it != old.end()) {
            e.inuse_objects -= it->second.inuse_objects;
            e.inuse_bytes -= it->second.inuse_bytes;
            e.alloc_objects -= it->second.alloc_objects;
            e.alloc_bytes -= it->second.alloc_bytes;
        }
        if (e.alloc_objects != 0 || e.inuse_objects != 0) out.push_back(std::move(e));
    }
    return out;
}

// pprof's heap_v2 unscaling of one stack's (objects, bytes): each object of
// the stack's average size s was sampled with probability 1 - exp(-s/rate).
double unscaled_bytes(double objects, double bytes, double rate) {
    if (objects == 0) return 0;
    return bytes / (1 - std::exp(-(bytes / objects) / rate));
}

// The start of the function holding return address ip, from its unwind
// information.
std::uintptr_t function_of(std::uintptr_t ip) {
    unw_proc_info_t pi{};
    if (unw_get_proc_info_by_ip(unw_local_addr_space, ip - 1, &pi, nullptr) != 0) return 0;
    return pi.start_ip;
}

void expect_invariants() {
    char why[256] = "";
    EXPECT_TRUE(spanmap::detail::profile_check_invariants(why, sizeof why)) << why;
}

// Every test starts with profiling off and a fixed seed, and counts from the
// totals it found (ctest runs each test alone, but the binary may run them all).
class Profile : public ::testing::Test {
protected:
    void SetUp() override {
        spanmap::detail::profile_seed(0x5eed);
        base_ = read_profile_totals();
    }
    void TearDown() override {
        spanmap::profile_stop();
        spanmap::detail::profile_test_hook.store(nullptr);
        expect_invariants();
    }
    // The totals since SetUp.
    profile_totals delta() const {
        const profile_totals t = read_profile_totals();
        return {t.stacks - base_.stacks,
                t.live_samples - base_.live_samples,
                t.inuse_objects - base_.inuse_objects,
                t.inuse_bytes - base_.inuse_bytes,
                t.alloc_objects - base_.alloc_objects,
                t.alloc_bytes - base_.alloc_bytes};
    }

private:
    profile_totals base_{};
};

// --- the API ------------------------------------------------------------------------

TEST_F(Profile, RateZeroIsRefused) {
    errno = 0;
    EXPECT_FALSE(spanmap::profile_start(0));
    EXPECT_EQ(errno, EINVAL);
    EXPECT_EQ(spanmap_profile_start(0), 0);
}

TEST_F(Profile, DumpToAnUnwritablePathFails) {
    errno = 0;
    EXPECT_FALSE(spanmap::profile_dump("/nonexistent-dir/x.heap"));
    EXPECT_EQ(errno, ENOENT);
    EXPECT_EQ(spanmap_profile_dump("/nonexistent-dir/x.heap"), 0);
}

// The header is the sum of the stacks, one line per stack, the rate of the
// last start, and then the maps.
TEST_F(Profile, DumpIsTheTables) {
    ASSERT_TRUE(spanmap::profile_start(1));
    std::vector<void*> ptrs;
    for (int i = 0; i < 50; ++i) ptrs.push_back(spanmap_malloc(static_cast<std::size_t>(8) << (i % 14)));
    for (int i = 0; i < 50; i += 3) spanmap_free(ptrs[i]);
    ASSERT_TRUE(spanmap::profile_start(12345));  // a new rate, for the header
    const profile_totals t = read_profile_totals();
    const profile p = dump_and_read("tables");
    EXPECT_EQ(p.rate, 12345u);
    EXPECT_EQ(p.entries.size(), t.stacks);
    EXPECT_EQ(p.inuse_objects, t.inuse_objects);
    EXPECT_EQ(p.inuse_bytes, t.inuse_bytes);
    EXPECT_EQ(p.alloc_objects, t.alloc_objects);
    EXPECT_EQ(p.alloc_bytes, t.alloc_bytes);
    std::uint64_t sums[4] = {};
    for (const entry& e : p.entries) {
        sums[0] += e.inuse_objects;
        sums[1] += e.inuse_bytes;
        sums[2] += e.alloc_objects;
        sums[3] += e.alloc_bytes;
        EXPECT_LE(e.inuse_objects, e.alloc_objects);
        EXPECT_LE(e.frames.size(), spanmap::detail::max_profile_depth);
    }
    EXPECT_EQ(sums[0], p.inuse_objects);
    EXPECT_EQ(sums[1], p.inuse_bytes);
    EXPECT_EQ(sums[2], p.alloc_objects);
    EXPECT_EQ(sums[3], p.alloc_bytes);
    // The copy of /proc/self/maps names this program's stack and the heap.
    EXPECT_NE(p.maps.find("[stack]"), std::string::npos);
    for (int i = 0; i < 50; ++i)
        if (i % 3 != 0) spanmap_free(ptrs[i]);
    EXPECT_EQ(delta().inuse_objects, 0u);
}

TEST_F(Profile, OffSamplesNothing) {
    for (int i = 0; i < 1000; ++i) spanmap_free(spanmap_malloc(64 << (i % 10)));
    spanmap_free(spanmap_malloc(1 << 20));
    void* p = spanmap_calloc(1000, 1000);
    spanmap_free(spanmap_realloc(p, 5000000));
    EXPECT_EQ(delta().alloc_objects, 0u);
}

// --- what is sampled, and the first frame ---------------------------------------------

extern "C" {
__attribute__((noinline)) void* via_malloc(std::size_t n) {
    void* p = spanmap_malloc(n);
    opaque(p);
    return p;
}
__attribute__((noinline)) void* via_malloc_large(std::size_t n) {
    void* p = spanmap_malloc(n < 40000 ? 40000 : n);
    opaque(p);
    return p;
}
__attribute__((noinline)) void* via_calloc(std::size_t n) {
    void* p = spanmap_calloc(1, n);
    opaque(p);
    return p;
}
__attribute__((noinline)) void* via_aligned_alloc(std::size_t n) {
    void* p = spanmap_aligned_alloc(256, n);
    opaque(p);
    return p;
}
__attribute__((noinline)) void* via_realloc(std::size_t n) {
    void* p = spanmap_realloc(nullptr, n);
    opaque(p);
    return p;
}
__attribute__((noinline)) void* via_allocate(std::size_t n) {
    void* p = spanmap::allocate(n, 64);
    opaque(p);
    return p;
}
__attribute__((noinline)) void* via_allocate_zeroed(std::size_t n) {
    void* p = spanmap::allocate_zeroed(n);
    opaque(p);
    return p;
}
__attribute__((noinline)) void* via_pmr(std::size_t n) {
    void* p = spanmap::pmr_resource()->allocate(n, 16);
    opaque(p);
    return p;
}
}

struct entry_point {
    const char* name;
    void* (*fn)(std::size_t);
};
void PrintTo(const entry_point& ep, std::ostream* os) { *os << ep.name; }
const entry_point entry_points[] = {
    {"malloc", via_malloc},     {"calloc", via_calloc},     {"aligned_alloc", via_aligned_alloc},
    {"realloc", via_realloc},   {"allocate", via_allocate}, {"allocate_zeroed", via_allocate_zeroed},
    {"pmr", via_pmr},
};

class ProfileEntry : public Profile, public ::testing::WithParamInterface<std::tuple<entry_point, std::size_t>> {};

// Every entry point, small and large: sampled (rate 1) with its true size,
// and the stack's first frame is the function that called spanmap.
TEST_P(ProfileEntry, SampledWithTheCallerAsFirstFrame) {
    const auto [ep, size] = GetParam();
    ASSERT_TRUE(spanmap::profile_start(1));
    void* p = ep.fn(size);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(delta().alloc_objects, 1u);
    const profile prof = dump_and_read(ep.name);
    // The one stack with an object in use (earlier tests' are all freed).
    std::vector<entry> live;
    for (const entry& e : prof.entries)
        if (e.inuse_objects != 0) live.push_back(e);
    ASSERT_EQ(live.size(), 1u);
    const entry& e = live[0];
    EXPECT_EQ(e.inuse_objects, 1u);
    EXPECT_EQ(e.inuse_bytes, spanmap::usable_size(p));
    ASSERT_GE(e.frames.size(), 2u);
    const auto fn = reinterpret_cast<std::uintptr_t>(ep.fn);
    if (std::string_view(ep.name) == "pmr" && function_of(e.frames[0]) != fn) {
        // Unoptimised, std::pmr::memory_resource::allocate (inline, in
        // <memory_resource>) is a frame of its own between via_pmr and spanmap.
        EXPECT_EQ(function_of(e.frames[1]), fn) << "pmr: via_pmr is not the first or second frame";
    } else {
        EXPECT_EQ(function_of(e.frames[0]), fn) << ep.name << ": the first frame is not in via_" << ep.name;
    }
    spanmap_free(p);
    EXPECT_EQ(delta().inuse_objects, 0u);
}

INSTANTIATE_TEST_SUITE_P(EntryPoints, ProfileEntry,
                         ::testing::Combine(::testing::ValuesIn(entry_points),
                                            ::testing::Values(std::size_t{100}, std::size_t{100000})),
                         [](const auto& param_info) {
                             return std::string(std::get<0>(param_info.param).name) + "_" +
                                    std::to_string(std::get<1>(param_info.param));
                         });

// --- frees, stop and start ------------------------------------------------------------

TEST_F(Profile, FreedSampledObjectsLeaveTheInUseFigures) {
    const profile start = dump_and_read("freed_start");
    ASSERT_TRUE(spanmap::profile_start(1));
    constexpr int n = 1000;
    std::vector<void*> ptrs;
    for (int i = 0; i < n; ++i) ptrs.push_back(i % 2 == 0 ? via_malloc(256) : via_malloc_large(50000));
    profile_totals t = delta();
    EXPECT_EQ(t.alloc_objects, std::uint64_t{n});
    EXPECT_EQ(t.inuse_objects, std::uint64_t{n});
    EXPECT_EQ(t.live_samples, std::uint64_t{n});
    expect_invariants();

    // Free every other object (all the large ones, in turn, sized).
    std::uint64_t freed_bytes = 0;
    for (int i = 1; i < n; i += 2) {
        freed_bytes += spanmap::usable_size(ptrs[i]);
        spanmap_free_sized(ptrs[i], 50000);
    }
    t = delta();
    EXPECT_EQ(t.alloc_objects, std::uint64_t{n});
    EXPECT_EQ(t.inuse_objects, std::uint64_t{n / 2});
    EXPECT_EQ(t.alloc_bytes - t.inuse_bytes, freed_bytes);
    expect_invariants();

    // The written profile says the same: the stack of the large objects (via
    // this test) has none in use, the small ones' all of theirs.
    const profile p = dump_and_read("freed");
    EXPECT_EQ(p.inuse_objects, read_profile_totals().inuse_objects);
    int large_stacks = 0, small_stacks = 0;
    const std::vector<entry> mine = since(start, p);
    EXPECT_EQ(mine.size(), 2u);
    for (const entry& e : mine) {
        EXPECT_EQ(e.alloc_objects, std::uint64_t{n / 2});
        if (e.alloc_bytes == freed_bytes) {
            ++large_stacks;
            EXPECT_EQ(e.inuse_objects, 0u);
            EXPECT_EQ(e.inuse_bytes, 0u);
        } else if (e.alloc_bytes == std::uint64_t{n / 2} * 256) {
            ++small_stacks;
            EXPECT_EQ(e.inuse_objects, std::uint64_t{n / 2});
            EXPECT_EQ(e.inuse_bytes, e.alloc_bytes);
        }
    }
    EXPECT_EQ(large_stacks, 1);
    EXPECT_EQ(small_stacks, 1);

    // Frees after profiling stops still leave the in-use figures.
    spanmap::profile_stop();
    for (int i = 0; i < n; i += 2) spanmap_free(ptrs[i]);
    EXPECT_EQ(delta().inuse_objects, 0u);
}

TEST_F(Profile, ReallocMovesTheSample) {
    ASSERT_TRUE(spanmap::profile_start(1));
    void* p = via_malloc(100);
    void* q = spanmap_realloc(p, 5000);  // another class: a new object, p freed
    ASSERT_NE(q, p);
    profile_totals t = delta();
    EXPECT_EQ(t.alloc_objects, 2u);
    EXPECT_EQ(t.inuse_objects, 1u);
    EXPECT_EQ(t.inuse_bytes, spanmap::usable_size(q));
    void* r = spanmap_realloc(q, 0);  // frees q
    EXPECT_EQ(r, nullptr);
    EXPECT_EQ(delta().inuse_objects, 0u);
}

TEST_F(Profile, StopAndStartAgain) {
    ASSERT_TRUE(spanmap::profile_start(1));
    void* a = via_malloc(64);
    spanmap::profile_stop();
    void* b = via_malloc(64);
    void* big = via_malloc(1 << 20);
    EXPECT_EQ(delta().alloc_objects, 1u);
    ASSERT_TRUE(spanmap_profile_start(1));
    void* c = via_malloc(64);
    EXPECT_EQ(delta().alloc_objects, 2u);
    for (void* p : {a, b, big, c}) spanmap_free(p);
    EXPECT_EQ(delta().inuse_objects, 0u);
}

// --- re-entry --------------------------------------------------------------------------

std::vector<void*>* hook_kept;
int hook_calls;

// Runs inside the profiler while it records a sample, where libunwind might
// allocate: small, large and freed allocations, one of each kept.
void allocating_hook() {
    ++hook_calls;
    spanmap_free(spanmap_malloc(48));
    hook_kept->push_back(spanmap_malloc(200));
    hook_kept->push_back(spanmap_malloc(300000));
}

TEST_F(Profile, AllocationsInsideTheProfilerAreNotSampled) {
    std::vector<void*> kept;
    kept.reserve(1000);  // no reallocation inside the hook: std::vector is not spanmap's
    hook_kept = &kept;
    hook_calls = 0;
    spanmap::detail::profile_test_hook.store(allocating_hook);
    ASSERT_TRUE(spanmap::profile_start(1));
    constexpr int n = 100;
    std::vector<void*> ptrs;
    for (int i = 0; i < n; ++i) ptrs.push_back(via_malloc(i % 3 == 0 ? 70000 : 128));
    spanmap::detail::profile_test_hook.store(nullptr);
    // Without the guard each sample would sample the hook's allocations, which
    // would call the hook again, without end.
    EXPECT_EQ(hook_calls, n);
    const profile_totals t = delta();
    EXPECT_EQ(t.alloc_objects, std::uint64_t{n});
    EXPECT_EQ(t.inuse_objects, std::uint64_t{n});
    // The hook's objects are not in the table: freeing them changes nothing.
    for (void* p : kept) spanmap_free(p);
    EXPECT_EQ(delta().inuse_objects, std::uint64_t{n});
    for (void* p : ptrs) spanmap_free(p);
    EXPECT_EQ(delta().inuse_objects, 0u);
}

// --- threads -----------------------------------------------------------------------------

__attribute__((noinline)) void* thread_allocate(std::size_t n) {
    void* p = spanmap_malloc(n);
    opaque(p);
    return p;
}

// Threads whose caches exist before profiling starts see the start at their
// next allocation; threads exit while profiling, leaving their sampled
// objects to the program; new threads take parked caches and are sampled;
// a thread whose first allocation is large is sampled too.
TEST_F(Profile, ThreadsStartingBeforeAndExitingDuring) {
    constexpr int threads = 4;
    constexpr int per_thread = 300;
    std::vector<void*> ptrs(3 * threads * per_thread + threads, nullptr);

    std::latch ready(threads);
    std::latch go(1);
    std::vector<std::thread> first;
    for (int t = 0; t < threads; ++t)
        first.emplace_back([&, t] {
            spanmap_free(spanmap_malloc(32));  // the cache exists before the start
            ready.count_down();
            go.wait();
            for (int i = 0; i < per_thread; ++i) ptrs[t * per_thread + i] = thread_allocate(64 + 64 * (i % 8));
        });
    ready.wait();
    ASSERT_TRUE(spanmap::profile_start(1));
    go.count_down();
    for (std::thread& th : first) th.join();
    EXPECT_EQ(delta().alloc_objects, std::uint64_t{threads * per_thread});

    // A second wave, on the parked caches of the first.
    std::vector<std::thread> second;
    for (int t = 0; t < threads; ++t)
        second.emplace_back([&, t] {
            for (int i = 0; i < per_thread; ++i)
                ptrs[(threads + t) * per_thread + i] = thread_allocate(i % 10 == 0 ? 40000 : 512);
        });
    for (std::thread& th : second) th.join();
    EXPECT_EQ(delta().alloc_objects, std::uint64_t{2 * threads * per_thread});

    // Threads whose only allocations are large: more threads than parked
    // caches, so some get a fresh cache on the large path.
    std::vector<std::thread> large;
    for (int t = 0; t < 2 * threads; ++t)
        large.emplace_back([&, t] { ptrs[2 * threads * per_thread + t] = thread_allocate(100000); });
    for (std::thread& th : large) th.join();
    const std::uint64_t total = 2 * threads * per_thread + 2 * threads;
    profile_totals t = delta();
    EXPECT_EQ(t.alloc_objects, total);
    EXPECT_EQ(t.inuse_objects, total);
    expect_invariants();

    // The main thread frees what the exited threads allocated.
    for (void* p : ptrs) spanmap_free(p);
    t = delta();
    EXPECT_EQ(t.inuse_objects, 0u);
    EXPECT_EQ(t.inuse_bytes, 0u);
}

// Threads allocating and freeing each other's sampled objects while the main
// thread starts, stops and dumps: the tables stay consistent.
TEST_F(Profile, ConcurrentSamplingFreeingAndDumping) {
    constexpr int threads = 3;
    constexpr int rounds = 20000;
    std::atomic<void*> exchange[threads] = {};
    std::vector<std::thread> workers;
    ASSERT_TRUE(spanmap::profile_start(4096));
    for (int t = 0; t < threads; ++t)
        workers.emplace_back([&, t] {
            for (int i = 0; i < rounds; ++i) {
                void* p = thread_allocate(i % 50 == 0 ? 50000 : 16 + 16 * (i % 64));
                // Hand it to the next thread's slot; free what was there.
                if (void* old = exchange[(t + 1) % threads].exchange(p)) spanmap_free(old);
            }
        });
    const std::string path = temp_path("concurrent");
    for (int i = 0; i < 20; ++i) {
        EXPECT_TRUE(spanmap::profile_dump(path.c_str()));
        if (i % 5 == 4) {
            spanmap::profile_stop();
            ASSERT_TRUE(spanmap::profile_start(4096));
        }
    }
    for (std::thread& th : workers) th.join();
    for (auto& slot : exchange)
        if (void* p = slot.exchange(nullptr)) spanmap_free(p);
    std::remove(path.c_str());
    EXPECT_EQ(delta().inuse_objects, 0u);
}

// fork while another thread samples: the child inherits consistent tables
// and an unlocked profiler, and can sample and dump.
TEST_F(Profile, ForkWhileSampling) {
    ASSERT_TRUE(spanmap::profile_start(1));
    std::atomic<bool> stop{false};
    std::thread sampler([&] {
        while (!stop.load()) spanmap_free(thread_allocate(64));
    });
    const std::string path = temp_path("fork");
    for (int i = 0; i < 10; ++i) {
        const pid_t pid = ::fork();
        ASSERT_NE(pid, -1);
        if (pid == 0) {
            void* p = thread_allocate(128);
            const profile_totals t = delta();
            char why[256] = "";
            const bool dumped = spanmap::profile_dump(path.c_str());
            const bool valid = spanmap::detail::profile_check_invariants(why, sizeof why);
            spanmap_free(p);
            if (!dumped) std::fprintf(stderr, "child: profile_dump failed\n");
            if (t.inuse_objects < 1) std::fprintf(stderr, "child: its sample is missing\n");
            if (!valid) std::fprintf(stderr, "child: %s\n", why);
            ::_exit(dumped && t.inuse_objects >= 1 && valid ? 0 : 1);
        }
        int status = 0;
        ASSERT_EQ(::waitpid(pid, &status, 0), pid);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child " << i;
    }
    stop.store(true);
    sampler.join();
    std::remove(path.c_str());
}

// --- the estimate ------------------------------------------------------------------------

template <std::size_t Size>
__attribute__((noinline)) std::uint64_t churn(std::uint64_t bytes) {
    const std::size_t usable = spanmap_good_size(Size);
    std::uint64_t done = 0;
    for (; done < bytes; done += usable) spanmap_free(thread_allocate(Size));
    return done;
}

// 1 GiB allocated and freed at the default rate, from four call sites with
// one size each: unscaled as pprof does, the profile's cumulative bytes are
// within 10% of the truth, per call site within 20%, and nothing is in use.
TEST_F(Profile, UnscaledEstimateOfAGibibyte) {
    const profile start = dump_and_read("estimate_start");
    ASSERT_TRUE(spanmap::profile_start());
    constexpr std::uint64_t quarter = std::uint64_t{256} << 20;
    const std::uint64_t truth[4] = {churn<64>(quarter), churn<1000>(quarter), churn<8192>(quarter),
                                    churn<40000>(quarter)};
    const std::uintptr_t site[4] = {reinterpret_cast<std::uintptr_t>(&churn<64>),
                                    reinterpret_cast<std::uintptr_t>(&churn<1000>),
                                    reinterpret_cast<std::uintptr_t>(&churn<8192>),
                                    reinterpret_cast<std::uintptr_t>(&churn<40000>)};
    const profile p = dump_and_read("estimate");
    ASSERT_EQ(p.rate, spanmap::default_profile_rate);
    double estimate[4] = {};
    double total = 0;
    for (const entry& e : since(start, p)) {
        EXPECT_EQ(e.inuse_objects, 0u);
        if (e.frames.size() < 2) continue;
        // frames[0] is in thread_allocate, frames[1] in the churn<> that called
        // it (stacks of other tests run in this process are left out).
        const std::uintptr_t caller = function_of(e.frames[1]);
        for (int i = 0; i < 4; ++i) {
            if (caller != site[i]) continue;
            const double b = unscaled_bytes(static_cast<double>(e.alloc_objects),
                                            static_cast<double>(e.alloc_bytes), static_cast<double>(p.rate));
            estimate[i] += b;
            total += b;
        }
    }
    const double all = static_cast<double>(truth[0] + truth[1] + truth[2] + truth[3]);
    EXPECT_NEAR(total / all, 1.0, 0.10) << "estimate " << total << " of " << all << " bytes";
    for (int i = 0; i < 4; ++i)
        EXPECT_NEAR(estimate[i] / static_cast<double>(truth[i]), 1.0, 0.20) << "call site " << i;
    std::printf("allocated %.0f bytes; unscaled estimate %.0f (%+.2f%%); per call site:", all, total,
                100 * (total / all - 1));
    for (int i = 0; i < 4; ++i) std::printf(" %+.2f%%", 100 * (estimate[i] / static_cast<double>(truth[i]) - 1));
    std::printf("\n");
}

// --- SPANMAP_CONF ----------------------------------------------------------------------------

TEST_F(Profile, ConfKeys) {
    using spanmap::detail::conf;
    using spanmap::detail::parse_conf;
    EXPECT_EQ(parse_conf("prof:true,prof_rate:64k,prof_prefix:/tmp/some/where"), 0);
    EXPECT_TRUE(conf.prof);
    EXPECT_EQ(conf.prof_rate, 64u << 10);
    EXPECT_STREQ(conf.prof_prefix, "/tmp/some/where");
    // Bad values warn and change nothing.
    EXPECT_EQ(parse_conf("prof_rate:0,prof_rate:lots,prof:sometimes"), 3);
    EXPECT_EQ(conf.prof_rate, 64u << 10);
    EXPECT_TRUE(conf.prof);
    const std::string long_prefix(300, 'x');
    EXPECT_EQ(parse_conf(("prof_prefix:" + long_prefix).c_str()), 1);
    EXPECT_STREQ(conf.prof_prefix, "/tmp/some/where");
    EXPECT_EQ(parse_conf("prof:false"), 0);
}

#endif  // SPANMAP_HAVE_LIBUNWIND

}  // namespace

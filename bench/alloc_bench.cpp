// alloc_bench: what the process's malloc costs, case by case, so that one
// binary measures glibc, jemalloc, tcmalloc, mimalloc and spanmap alike.
//
// The benchmarks call plain malloc/free/realloc. Which allocator answers is
// decided when the program starts: nothing for glibc, or LD_PRELOAD of
// libjemalloc.so.2, libtcmalloc_minimal.so.4, libmimalloc.so.2 or spanmap's
// libspanmap_malloc.so. Preloading (rather than calling each library through
// dlopen, as malloc_bench does) is the only way to see an allocator the way a
// program sees it: through the PLT, serving every allocation of the process,
// with its own thread caches and its own idea of when to give memory back.
// The context records which file provides `malloc` (malloc_library), so a
// result can never be filed under the wrong allocator.
//
//   --api=malloc          the default: malloc / free / realloc
//   --api=spanmap_sized   spanmap's own C++ API from libspanmap.a:
//                         spanmap::allocate(n) / spanmap::deallocate(p, n);
//                         realloc_growth grows with spanmap_realloc, the only
//                         resizing call spanmap offers, and frees sized.
// The flag is taken out of argv before Google Benchmark sees the rest.
//
// Cases (the names are read by the report script: keep their shape). "op" is
// what per_op divides the time by.
//
//   pair/<size>          malloc, touch, free, over and over. op: one pair.
//   batch_lifo/<size>    1000 mallocs, then 1000 frees in reverse order,
//   batch_fifo/<size>    in the same order,
//   batch_random/<size>  or in one fixed random order (a permutation made once
//                        from a fixed seed, outside the timing). op: one pair.
//   realloc_growth       malloc(16), realloc by ~1.5x up to exactly 1 MiB
//                        (28 calls), free. op: one realloc call; the malloc
//                        and the free are in the time, spread over the 28.
//   producer_consumer/<size>
//                        the benchmark thread mallocs and passes each block
//                        through a lock-free single-producer single-consumer
//                        ring to a second thread, which frees it: every free
//                        is a cross-thread free. An iteration is 1000 blocks.
//                        op: one block, malloc'd here and freed there. The
//                        blocks still in the ring when the timer stops (at
//                        most ring_capacity + a publish batch) are freed
//                        after it, an error below 0.1% in a normal run.
//   two_threads/<size>   the benchmark thread runs the batch_lifo loop while a
//                        second thread runs the same loop on its own, free-
//                        running, from before the timer starts until after it
//                        stops. op: one malloc/free pair of the benchmark
//                        thread, which the other thread matches with one of
//                        its own in the same wall time ("per pair per thread
//                        pair"): with perfect scaling per_op equals
//                        batch_lifo's; the excess is what sharing costs.
//   workload/maps_strings
//                        an allocation-heavy mix: rounds that build, search and
//                        destroy std::map<string,string>, std::vector<string>
//                        and std::unordered_map<string,string> of 16-40-char
//                        strings (too long for the small-string buffer, so
//                        every string is a heap block). Fixed seed, the same
//                        work every iteration. op: one iteration, since a
//                        per-allocation figure would hide the work between
//                        allocations; allocs_per_iter says how many
//                        allocations one iteration makes (counted once, before
//                        timing).
//
// The threaded cases use real time; the others CPU time, which on one thread
// is the same work without the noise of being descheduled. Google Benchmark
// appends "/real_time" to the names of the threaded cases.
//
// Counters, on every case:
//   per_op           seconds per op (as defined above), from the time the
//                    benchmark reports (Counter with kIsIterationInvariantRate
//                    | kInvert)
//   rss_start_bytes  VmRSS when the case starts
//   rss_peak_bytes   VmHWM when it ends, the peak having been reset at its start
//                    by writing "5" to /proc/self/clear_refs (Linux >= 4.0).
//                    Where that write is refused the peak is since process
//                    start; the context key rss_peak_reset says which.
//   allocs_per_iter  workload only (see above)
//
// Every block is used: its first and last bytes are written when it is
// allocated and the first is read back before it is freed, so lazy
// allocators pay for their page faults and a wrong pointer shows up as an
// error rather than a fast result; realloc must carry both marks over, and the
// workload's checksum must match that of a reference run. No case sets its own iteration count or minimum
// time: those would also change its name; one iteration of the slowest case
// (workload) takes about a millisecond, so --benchmark_min_time bounds every
// case alike.
#include <spanmap/alloc.h>
#include <spanmap/spanmap.h>

#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <new>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {

// --- the API under test --------------------------------------------------------

struct malloc_api {
    static constexpr const char* name = "malloc";
    static void* alloc(std::size_t n, std::size_t /*alignment*/ = 0) noexcept { return std::malloc(n); }
    static void release(void* p, std::size_t /*n*/, std::size_t /*alignment*/ = 0) noexcept { std::free(p); }
    static void* resize(void* p, std::size_t n) noexcept { return std::realloc(p, n); }
};

struct spanmap_sized_api {
    static constexpr const char* name = "spanmap_sized";
    // spanmap::allocate throws std::bad_alloc rather than return null; a
    // benchmark that runs out of memory may as well stop there.
    static void* alloc(std::size_t n, std::size_t alignment = spanmap::default_alignment) {
        return spanmap::allocate(n, alignment);
    }
    static void release(void* p, std::size_t n, std::size_t alignment = spanmap::default_alignment) noexcept {
        spanmap::deallocate(p, n, alignment);
    }
    static void* resize(void* p, std::size_t n) noexcept { return spanmap_realloc(p, n); }
};

// --- using every block -----------------------------------------------------------

constexpr unsigned char first_mark = 0xA5;
constexpr unsigned char last_mark = 0x5A;
static_assert(first_mark != last_mark, "a block of one byte must still show which write came last");

// Writes the first and last byte, through a compiler barrier so that neither
// the writes nor the call that made p can be dropped as dead.
inline void touch(void* p, std::size_t n) noexcept {
    auto* bytes = static_cast<unsigned char*>(p);
    bytes[n - 1] = last_mark;
    bytes[0] = first_mark;
    benchmark::DoNotOptimize(p);
}

// Zero while every block read back as written.
inline unsigned mismatch(const void* p) noexcept { return static_cast<const unsigned char*>(p)[0] ^ first_mark; }

// --- RSS from /proc/self/status, without allocating ------------------------------
// The allocator under test may be the one that would serve a std::string, and
// these reads bracket its measurement.

bool reset_rss_peak() noexcept {
    const int fd = ::open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool ok = ::write(fd, "5", 1) == 1;
    ::close(fd);
    return ok;
}

// Value in kB of the line "<key> <n> kB", or -1.
long long status_field_kib(std::string_view status, std::string_view key) noexcept {
    for (std::size_t at = 0; at < status.size();) {
        std::size_t end = status.find('\n', at);
        if (end == std::string_view::npos) end = status.size();
        std::string_view line = status.substr(at, end - at);
        if (line.starts_with(key)) {
            long long kib = 0;
            bool digits = false;
            for (char c : line.substr(key.size())) {
                if (c >= '0' && c <= '9') {
                    kib = kib * 10 + (c - '0');
                    digits = true;
                } else if (digits) {
                    break;
                }
            }
            return digits ? kib : -1;
        }
        at = end + 1;
    }
    return -1;
}

struct rss_kib {
    long long current = -1;  // VmRSS
    long long peak = -1;     // VmHWM
};

rss_kib read_rss() noexcept {
    // /proc/self/status is about 1.5 KB; the fields wanted come early in it.
    char buf[8192];
    std::size_t len = 0;
    const int fd = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return {};
    while (len < sizeof buf) {
        const ssize_t got = ::read(fd, buf + len, sizeof buf - len);
        if (got <= 0) break;
        len += static_cast<std::size_t>(got);
    }
    ::close(fd);
    const std::string_view status(buf, len);
    return {status_field_kib(status, "VmRSS:"), status_field_kib(status, "VmHWM:")};
}

// The per-case counters: start at the top of a benchmark function (before any
// block of the case exists), finish after its loop.
class rss_counters {
public:
    rss_counters() noexcept {
        reset_rss_peak();
        start_ = read_rss();
    }
    void finish(benchmark::State& state) const {
        const rss_kib end = read_rss();
        state.counters["rss_start_bytes"] = static_cast<double>(start_.current) * 1024.0;
        state.counters["rss_peak_bytes"] = static_cast<double>(end.peak) * 1024.0;
    }

private:
    rss_kib start_;
};

void set_per_op(benchmark::State& state, double ops_per_iteration) {
    state.counters["per_op"] = benchmark::Counter(
        ops_per_iteration, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// --- pair ------------------------------------------------------------------------

template <class A>
void pair(benchmark::State& state, std::size_t size) {
    rss_counters rss;
    unsigned bad = 0;
    for (auto _ : state) {
        void* p = A::alloc(size);
        if (p == nullptr) [[unlikely]] {
            state.SkipWithError("malloc returned null");
            break;
        }
        touch(p, size);
        bad |= mismatch(p);
        A::release(p, size);
    }
    if (bad != 0) state.SkipWithError("a block did not read back what was written to it");
    set_per_op(state, 1);
    rss.finish(state);
}

// --- batches ---------------------------------------------------------------------

constexpr std::size_t batch_objects = 1000;
using batch_blocks = std::array<void*, batch_objects>;

enum class free_order { lifo, fifo, random };

const std::array<std::uint32_t, batch_objects>& random_free_order() {
    static const auto order = [] {
        std::array<std::uint32_t, batch_objects> o;
        for (std::uint32_t i = 0; i < o.size(); ++i) o[i] = i;
        std::mt19937 rng(20240601);  // fixed: every run frees in the same order
        std::shuffle(o.begin(), o.end(), rng);
        return o;
    }();
    return order;
}

// One batch: allocate all, then free all in the given order. False if an
// allocation failed (the blocks made so far are freed).
template <class A, free_order Order>
bool run_batch(batch_blocks& blocks, std::size_t size, const std::array<std::uint32_t, batch_objects>& order,
               unsigned& bad) {
    for (std::size_t i = 0; i < batch_objects; ++i) {
        void* p = A::alloc(size);
        if (p == nullptr) [[unlikely]] {
            while (i > 0) A::release(blocks[--i], size);
            return false;
        }
        touch(p, size);
        blocks[i] = p;
    }
    for (std::size_t i = 0; i < batch_objects; ++i) {
        std::size_t k = i;
        if constexpr (Order == free_order::lifo) k = batch_objects - 1 - i;
        if constexpr (Order == free_order::random) k = order[i];
        bad |= mismatch(blocks[k]);
        A::release(blocks[k], size);
    }
    return true;
}

template <class A, free_order Order>
void batch(benchmark::State& state, std::size_t size) {
    rss_counters rss;
    batch_blocks blocks{};
    const auto& order = random_free_order();
    unsigned bad = 0;
    for (auto _ : state) {
        if (!run_batch<A, Order>(blocks, size, order, bad)) [[unlikely]] {
            state.SkipWithError("malloc returned null");
            break;
        }
    }
    if (bad != 0) state.SkipWithError("a block did not read back what was written to it");
    set_per_op(state, batch_objects);
    rss.finish(state);
}

// --- realloc growth --------------------------------------------------------------

constexpr std::size_t growth_start = 16;
constexpr std::size_t growth_limit = std::size_t{1} << 20;

constexpr std::size_t next_growth(std::size_t n) { return std::min(n + n / 2, growth_limit); }

constexpr std::size_t growth_steps() {
    std::size_t steps = 0;
    for (std::size_t n = growth_start; n < growth_limit; n = next_growth(n)) ++steps;
    return steps;
}
static_assert(growth_steps() == 28, "the essay above says 28 realloc calls");

template <class A>
void realloc_growth(benchmark::State& state) {
    rss_counters rss;
    for (auto _ : state) {
        std::size_t n = growth_start;
        void* p = A::alloc(n);
        if (p == nullptr) [[unlikely]] {
            state.SkipWithError("malloc returned null");
            break;
        }
        touch(p, n);
        bool ok = true;
        while (n < growth_limit) {
            const std::size_t next = next_growth(n);
            void* q = A::resize(p, next);
            if (q == nullptr) [[unlikely]] {
                ok = false;
                break;
            }
            // realloc must carry the old contents over; both marks are inside them.
            const auto* bytes = static_cast<const unsigned char*>(q);
            if (bytes[0] != first_mark || bytes[n - 1] != last_mark) [[unlikely]] {
                ok = false;
                p = q;
                break;
            }
            touch(q, next);
            p = q;
            n = next;
        }
        A::release(p, n);
        if (!ok) [[unlikely]] {
            state.SkipWithError("realloc failed or lost the block's contents");
            break;
        }
    }
    set_per_op(state, growth_steps());
    rss.finish(state);
}

// --- threads ---------------------------------------------------------------------

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

// Spins, then yields: on a machine with as many busy threads as cores the
// thread being waited for may need this core to make progress. yield is a
// system call, not a lock, and happens only while waiting.
template <class Ready>
void wait_until(Ready ready) {
    for (unsigned spins = 0; !ready(); ++spins) {
        if (spins < 256) {
            cpu_relax();
        } else {
            std::this_thread::yield();
        }
    }
}

constexpr std::size_t cache_line = 64;

// Bounded single-producer single-consumer ring of pointers. Each side keeps a
// private copy of the other's index and rereads the shared one only when the
// copy says full (producer) or empty (consumer), so in the steady state the
// two cores exchange few cache lines per block.
template <std::size_t Capacity>
class spsc_ring {
    static_assert(std::has_single_bit(Capacity), "indices wrap by masking");

public:
    static constexpr std::size_t capacity = Capacity;

    // Producer only.
    bool try_push(void* p) noexcept {
        const std::size_t h = head_.load(std::memory_order_relaxed);
        if (h - producer_tail_ == Capacity) {
            producer_tail_ = tail_.load(std::memory_order_acquire);
            if (h - producer_tail_ == Capacity) return false;
        }
        slots_[h & (Capacity - 1)] = p;
        head_.store(h + 1, std::memory_order_release);
        return true;
    }

    // Consumer only: hands up to max published pointers to take, then makes
    // their slots free with one store. Returns how many it took.
    template <class Take>
    std::size_t pop_some(std::size_t max, Take take) noexcept {
        const std::size_t t = tail_.load(std::memory_order_relaxed);
        if (consumer_head_ == t) {
            consumer_head_ = head_.load(std::memory_order_acquire);
            if (consumer_head_ == t) return 0;
        }
        const std::size_t n = std::min(max, consumer_head_ - t);
        for (std::size_t i = 0; i < n; ++i) take(slots_[(t + i) & (Capacity - 1)]);
        tail_.store(t + n, std::memory_order_release);
        return n;
    }

private:
    alignas(cache_line) std::atomic<std::size_t> head_{0};  // next slot to write
    std::size_t producer_tail_ = 0;
    alignas(cache_line) std::atomic<std::size_t> tail_{0};  // next slot to read
    std::size_t consumer_head_ = 0;
    alignas(cache_line) std::array<void*, Capacity> slots_{};
};

constexpr std::size_t handoff_batch = 1000;  // blocks per iteration
// Small enough that the blocks left in flight when the timer stops are noise,
// large enough that a descheduled consumer does not stall the producer at once.
using handoff_ring = spsc_ring<512>;
// Slots the consumer frees before publishing them back to the producer.
constexpr std::size_t consumer_publish = 32;
static_assert(consumer_publish < handoff_ring::capacity);

template <class A>
void producer_consumer(benchmark::State& state, std::size_t size) {
    rss_counters rss;
    handoff_ring ring;
    std::atomic<bool> consumer_started{false};
    std::atomic<bool> producer_done{false};
    unsigned consumer_bad = 0;

    std::thread consumer([&] {
        unsigned bad = 0;
        const auto take = [&](void* p) {
            bad |= mismatch(p);
            A::release(p, size);
        };
        consumer_started.store(true, std::memory_order_release);
        for (unsigned idle = 0;;) {
            if (ring.pop_some(consumer_publish, take) != 0) {
                idle = 0;
                continue;
            }
            if (producer_done.load(std::memory_order_acquire)) {
                // Everything pushed before `done` is visible now.
                while (ring.pop_some(handoff_ring::capacity, take) != 0) {
                }
                break;
            }
            if (++idle < 256) {
                cpu_relax();
            } else {
                std::this_thread::yield();
            }
        }
        consumer_bad = bad;
    });
    wait_until([&] { return consumer_started.load(std::memory_order_acquire); });

    bool failed = false;
    for (auto _ : state) {
        for (std::size_t i = 0; i < handoff_batch; ++i) {
            void* p = A::alloc(size);
            if (p == nullptr) [[unlikely]] {
                failed = true;
                break;
            }
            touch(p, size);
            if (!ring.try_push(p)) wait_until([&] { return ring.try_push(p); });
        }
        if (failed) [[unlikely]] {
            state.SkipWithError("malloc returned null");
            break;
        }
    }
    producer_done.store(true, std::memory_order_release);
    consumer.join();
    if (consumer_bad != 0) state.SkipWithError("a block did not read back what was written to it");
    set_per_op(state, handoff_batch);
    rss.finish(state);
}

template <class A>
void two_threads(benchmark::State& state, std::size_t size) {
    rss_counters rss;
    const auto& order = random_free_order();
    std::atomic<bool> other_started{false};
    std::atomic<bool> stop{false};
    bool other_failed = false;
    unsigned other_bad = 0;

    std::thread other([&] {
        batch_blocks blocks{};
        unsigned bad = 0;
        other_started.store(true, std::memory_order_release);
        while (!stop.load(std::memory_order_relaxed)) {
            if (!run_batch<A, free_order::lifo>(blocks, size, order, bad)) {
                other_failed = true;
                break;
            }
        }
        other_bad = bad;
    });
    wait_until([&] { return other_started.load(std::memory_order_acquire); });

    batch_blocks blocks{};
    unsigned bad = 0;
    for (auto _ : state) {
        if (!run_batch<A, free_order::lifo>(blocks, size, order, bad)) [[unlikely]] {
            state.SkipWithError("malloc returned null");
            break;
        }
    }
    stop.store(true, std::memory_order_relaxed);
    other.join();
    if (other_failed) state.SkipWithError("malloc returned null on the other thread");
    if ((bad | other_bad) != 0) state.SkipWithError("a block did not read back what was written to it");
    set_per_op(state, batch_objects);
    rss.finish(state);
}

// --- workload: maps of strings -----------------------------------------------------

// Allocations the workload made; only the benchmark thread runs it.
std::size_t workload_allocations = 0;

// Puts the standard containers on the API under test (plain malloc, not
// operator new, so that --api=malloc means malloc everywhere in this program).
template <class T, class A>
struct api_allocator {
    static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__, "malloc's alignment is all the API promises");
    using value_type = T;

    api_allocator() = default;
    template <class U>
    api_allocator(const api_allocator<U, A>&) noexcept {}

    T* allocate(std::size_t n) {
        ++workload_allocations;
        void* p = A::alloc(n * sizeof(T), alignof(T));
        if (p == nullptr) throw std::bad_alloc();
        return static_cast<T*>(p);
    }
    void deallocate(T* p, std::size_t n) noexcept { A::release(p, n * sizeof(T), alignof(T)); }

    friend bool operator==(const api_allocator&, const api_allocator&) noexcept { return true; }
};

struct text_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

constexpr std::size_t text_pool_size = 1024;
constexpr std::size_t text_min = 16;  // above libstdc++'s 15-char small-string buffer
constexpr std::size_t text_max = 40;
static_assert(text_min > 15, "every string must be a heap block");

// The texts the workload copies from, made once with a fixed seed.
const std::vector<std::string>& text_pool() {
    static const auto pool = [] {
        std::vector<std::string> texts;
        std::mt19937_64 rng(0x5eed);
        std::uniform_int_distribution<std::size_t> length(text_min, text_max);
        std::uniform_int_distribution<int> letter('a', 'z');
        for (std::size_t i = 0; i < text_pool_size; ++i) {
            std::string s(length(rng), ' ');
            for (char& c : s) c = static_cast<char>(letter(rng));
            texts.push_back(std::move(s));
        }
        return texts;
    }();
    return pool;
}

constexpr std::size_t workload_rounds = 24;
constexpr std::size_t map_entries = 64;
constexpr std::size_t vector_entries = 128;
constexpr std::uint64_t workload_seed = 0x9E3779B97F4A7C15;

// One iteration of the workload; returns a checksum of what it found.
template <class A>
std::size_t maps_strings_once(const std::vector<std::string>& pool) {
    using text = std::basic_string<char, std::char_traits<char>, api_allocator<char, A>>;
    using pair_alloc = api_allocator<std::pair<const text, text>, A>;
    using ordered = std::map<text, text, std::less<>, pair_alloc>;
    using hashed = std::unordered_map<text, text, text_hash, std::equal_to<>, pair_alloc>;
    using list = std::vector<text, api_allocator<text, A>>;

    std::uint64_t x = workload_seed;  // xorshift64: no allocation, same sequence each time
    const auto pick = [&]() -> std::string_view {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return pool[x % pool.size()];
    };

    std::size_t sum = 0;
    for (std::size_t round = 0; round < workload_rounds; ++round) {
        ordered m;
        for (std::size_t i = 0; i < map_entries; ++i) m.emplace(text(pick()), text(pick()));
        for (std::size_t i = 0; i < map_entries; ++i) {
            const auto it = m.find(pick());
            if (it != m.end()) sum += it->second.size();
        }

        list v;  // no reserve: the growth reallocations are part of the mix
        for (std::size_t i = 0; i < vector_entries; ++i) v.emplace_back(pick());
        std::sort(v.begin(), v.end());
        sum += v.front().size() + v.back().size() + v.size();

        hashed h;
        for (std::size_t i = 0; i < map_entries; ++i) h.emplace(text(pick()), text(pick()));
        for (std::size_t i = 0; i < map_entries / 2; ++i) {
            const auto it = h.find(pick());
            if (it != h.end()) h.erase(it);
        }
        // Copy what survived into the ordered map: frees interleaved with
        // allocations of the same sizes.
        for (const auto& [key, value] : h) m.insert_or_assign(key, value);
        sum += h.size() + m.size();
    }
    return sum;
}

template <class A>
void maps_strings(benchmark::State& state) {
    const auto& pool = text_pool();
    rss_counters rss;
    // The reference run: the checksum every iteration must match, and the
    // number of allocations one iteration makes.
    const std::size_t allocations_before = workload_allocations;
    const std::size_t expected = maps_strings_once<A>(pool);
    const std::size_t allocations = workload_allocations - allocations_before;
    for (auto _ : state) {
        const std::size_t sum = maps_strings_once<A>(pool);
        if (sum != expected) [[unlikely]] {
            state.SkipWithError("the workload's checksum changed between iterations");
            break;
        }
    }
    set_per_op(state, 1);
    state.counters["allocs_per_iter"] = static_cast<double>(allocations);
    rss.finish(state);
}

// --- registration --------------------------------------------------------------

constexpr std::size_t pair_sizes[] = {8,    16,   32,    48,    64,    128,    256,     512,    1024,
                                      2048, 4096, 8192, 16384, 32768, 65536, 262144, 1048576, 4194304};
constexpr std::size_t batch_sizes[] = {16, 64, 256, 1024, 4096, 32768};

std::string named(const char* kind, std::size_t size) { return std::string(kind) + "/" + std::to_string(size); }

template <class A>
void register_all() {
    for (std::size_t size : pair_sizes)
        benchmark::RegisterBenchmark(named("pair", size).c_str(), [size](benchmark::State& s) { pair<A>(s, size); });
    for (std::size_t size : batch_sizes)
        benchmark::RegisterBenchmark(named("batch_lifo", size).c_str(),
                                     [size](benchmark::State& s) { batch<A, free_order::lifo>(s, size); });
    for (std::size_t size : batch_sizes)
        benchmark::RegisterBenchmark(named("batch_fifo", size).c_str(),
                                     [size](benchmark::State& s) { batch<A, free_order::fifo>(s, size); });
    for (std::size_t size : batch_sizes)
        benchmark::RegisterBenchmark(named("batch_random", size).c_str(),
                                     [size](benchmark::State& s) { batch<A, free_order::random>(s, size); });
    benchmark::RegisterBenchmark("realloc_growth", realloc_growth<A>);
    for (std::size_t size : batch_sizes)
        benchmark::RegisterBenchmark(named("producer_consumer", size).c_str(),
                                     [size](benchmark::State& s) { producer_consumer<A>(s, size); })
            ->UseRealTime();
    for (std::size_t size : batch_sizes)
        benchmark::RegisterBenchmark(named("two_threads", size).c_str(),
                                     [size](benchmark::State& s) { two_threads<A>(s, size); })
            ->UseRealTime();
    benchmark::RegisterBenchmark("workload/maps_strings", maps_strings<A>);
}

// The file whose `malloc` this process calls: the preloaded library, or the C
// library when nothing is preloaded.
std::string malloc_library() {
    void* sym = dlsym(RTLD_DEFAULT, "malloc");
    Dl_info info{};
    if (sym == nullptr || dladdr(sym, &info) == 0 || info.dli_fname == nullptr) return "unknown";
    return info.dli_fname;
}

// Takes --api=<name> out of argv; returns the name ("malloc" when absent).
std::string take_api_flag(int& argc, char** argv) {
    constexpr std::string_view flag = "--api=";
    std::string api = malloc_api::name;
    int kept = 1;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg.starts_with(flag)) {
            api = std::string(arg.substr(flag.size()));
        } else {
            argv[kept++] = argv[i];
        }
    }
    argv[kept] = nullptr;
    argc = kept;
    return api;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string api = take_api_flag(argc, argv);
    if (api == malloc_api::name) {
        register_all<malloc_api>();
    } else if (api == spanmap_sized_api::name) {
        register_all<spanmap_sized_api>();
    } else {
        std::fprintf(stderr, "alloc_bench: unknown --api=%s (use --api=malloc or --api=spanmap_sized)\n", api.c_str());
        return 2;
    }
    benchmark::AddCustomContext("api", api);
    benchmark::AddCustomContext("malloc_library", malloc_library());
    benchmark::AddCustomContext("rss_peak_reset", reset_rss_peak() ? "per case (clear_refs)"
                                                                   : "unavailable: peak since process start");
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

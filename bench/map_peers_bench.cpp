// map_peers_bench: spanmap::map next to the hash maps people would otherwise
// use, on the same keys as the Go program in bench/go (Go's own classic map).
//
// Names: <op>/<map>/<keytype>/<n> and growth_latency/<map>. bench/report.py
// parses them, so the map names are a contract:
//
//   spanmap                    spanmap::map on the arena (its default allocator)
//   spanmap_std_alloc          spanmap::map on std::allocator (glibc malloc)
//   spanmap_jemalloc           spanmap::map on jemalloc (mallocx/sdallocx, dlopened)
//   std_unordered              std::unordered_map
//   std_pmr_unordered_spanmap  std::pmr::unordered_map on spanmap::pmr_resource()
//   absl_flat                  absl::flat_hash_map (only when the build found Abseil)
//
// keytype is u64 (uint64_t -> uint64_t) or str (std::string of 16-32 chars ->
// uint64_t); n is a size from --sizes. Ops, each timed alone (manual time):
//
//   insert           construct an empty map and insert the n keys
//   insert_reserved  the same after reserve(n) (reserve is timed: it is part of the work)
//   lookup_hit       find each of the n keys, in a shuffled order
//   lookup_miss      look up n keys that are not there
//   erase            erase all n keys by key, in the shuffled order (the fill is untimed)
//   iterate          sum the n values
//   workload         a map's whole life, as a program lives it: construct, insert
//                    the n keys, find each in the shuffled order, erase the first
//                    half of that order, destroy (all timed, destruction included)
//   workload_threads the same on every hardware thread at once, each on a map of
//                    its own (Google Benchmark's ->Threads, which sums the
//                    threads' iterations and averages their times: per_op is
//                    the wall time per key of all the threads together)
//
// Destruction of a map is timed by workload alone, never by the others.
// Every benchmark reports per_op (seconds per operation) from the manual
// time, i.e. the timed part alone, as is real_time (Google Benchmark appends
// /manual_time to the names, which report.py ignores); cpu_time is Google
// Benchmark's thread clock with the set-up paused, near but not equal to it.
// insert and insert_reserved report bytes_per_entry (below); the str ones
// also key_bytes_per_entry, the part of it that is the keys' own heap text.
//
// What is and is not comparable:
//   - Each map uses its own default hash, as its users get it: spanmap::hash
//     (seeded, wyhash-like), std::hash (the identity on integers, a murmur
//     variant on strings), absl::Hash, and in Go the runtime's AES hash. So a
//     time is "this map as shipped", not "this table layout".
//   - Keys are random (splitmix64), so the identity std::hash does no harm.
//     They are the Go program's keys exactly (bench/check_keys.sh diffs them):
//     splitmix64 from seed 1 for the keys present, seed 2 for the misses, and a
//     Fisher-Yates shuffle driven by splitmix64 from seed 3.
//   - str keys are 16-32 chars, always past libstdc++'s 15-char inline buffer,
//     so every C++ map holds a heap copy of each key's text (std::string, never
//     pmr::string, even in the pmr map: the text lives on glibc in every C++
//     map). A Go map stores the string header and shares the caller's bytes, so
//     Go's str insert neither copies nor allocates the text; compare Go's
//     bytes_per_entry with the C++ ones minus key_bytes_per_entry.
//   - Go runs with its collector off in timed sections (see bench/go).
//
// bytes_per_entry: the growth of every heap in the process while one map of n
// entries is built, divided by n, with the map alive. The same three ledgers
// are read for every map, whichever heap it happens to use:
//   arena     spanmap::read_mem_stats().alloc (objects handed out, at their size class);
//   glibc     operator new is replaced below; while a measurement runs it adds
//             malloc_usable_size of each block and subtracts it on delete;
//   jemalloc  the jemalloc adaptor adds nallocx (its size class) likewise.
// So every block counts at the size its allocator really set aside for it,
// and the key text counts on the heap that holds it (glibc). Not counted: the
// 8-byte header glibc keeps in front of each block, and any allocator's own
// metadata. Go's figure is runtime.MemStats.HeapAlloc's growth (also size
// classes, no headers).
//
// growth_latency/<map> times each insert of --growth_keys u64 keys (default
// 8M) into an empty map with the cycle counter (rdtsc; calibrated to ns over
// the whole loop against steady_clock; the same for every map and for Go,
// which calls the same instruction) and reports p50_ns, p999_ns and max_ns.
// growth_latency/noise_floor is the same loop around a little arithmetic
// instead of a map: what the machine adds on its own (preemption,
// interrupts). --latency_trace=DIR writes DIR/latency_<map>.csv, a header
// then one line per window of 8192 inserts: first_insert_index,max_ns,p50_ns.
//
//   map_peers_bench [--sizes=1000,10000,...] [--growth_keys=N]
//                   [--latency_trace=DIR] [--dump_keys=N] [benchmark flags]
//
// --sizes defaults to 1000,10000,100000,1000000; the full run adds 10000000.
// --dump_keys=N prints the first N keys (and the shuffle of N) and exits.
#include "peers.h"

#include <spanmap/alloc.h>
#include <spanmap/map.h>
#include <spanmap/pmr.h>
#include <spanmap/stats.h>

#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <malloc.h>

#if defined(SPANMAP_BENCH_HAVE_ABSL)
#include <absl/container/flat_hash_map.h>
#endif

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory_resource>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

using u64 = std::uint64_t;

// --- heap ledgers ------------------------------------------------------------------------
// Off except while a bytes_per_entry measurement runs, so the timed code pays
// one relaxed load per allocation and nothing else. Only the benchmark thread
// allocates through the ledgers' heaps while they count.
namespace ledger {
std::atomic<bool> counting{false};
std::atomic<std::int64_t> glibc{0};
std::atomic<std::int64_t> jemalloc{0};
}  // namespace ledger

// The replaceable operator new/delete, counting glibc's blocks for the
// ledger. libstdc++'s array, nothrow and sized forms all end up in these
// (its nothrow new calls operator new(size_t), its sized delete calls
// operator delete(void*)); the aligned ones do not, so they are replaced too.
void* operator new(std::size_t n) {
    void* p = std::malloc(n != 0 ? n : 1);
    if (p == nullptr) throw std::bad_alloc();
    if (ledger::counting.load(std::memory_order_relaxed))
        ledger::glibc.fetch_add(static_cast<std::int64_t>(malloc_usable_size(p)), std::memory_order_relaxed);
    return p;
}
namespace ledger {
// Every form of operator delete ends here. Not inlined: GCC, inlining a
// delete into a container's deallocate, would see std::free take a pointer
// from operator new and (at -O2 and above, with -Werror) fail the build on
// -Wmismatched-new-delete, although operator new here is malloc.
__attribute__((noinline)) void release(void* p) noexcept {
    if (p != nullptr && counting.load(std::memory_order_relaxed))
        glibc.fetch_sub(static_cast<std::int64_t>(malloc_usable_size(p)), std::memory_order_relaxed);
    std::free(p);
}
}  // namespace ledger
void operator delete(void* p) noexcept { ledger::release(p); }
void operator delete(void* p, std::size_t) noexcept { ledger::release(p); }
void* operator new(std::size_t n, std::align_val_t al) {
    const auto a = static_cast<std::size_t>(al);
    void* p = std::aligned_alloc(a, (std::max<std::size_t>(n, 1) + a - 1) / a * a);
    if (p == nullptr) throw std::bad_alloc();
    if (ledger::counting.load(std::memory_order_relaxed))
        ledger::glibc.fetch_add(static_cast<std::int64_t>(malloc_usable_size(p)), std::memory_order_relaxed);
    return p;
}
void operator delete(void* p, std::align_val_t) noexcept { ledger::release(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { ledger::release(p); }

namespace {

// --- keys (bench/go/keys.go must produce the same) ------------------------------------------

constexpr u64 hit_seed = 1;      // the keys put into the maps
constexpr u64 miss_seed = 2;     // keys looked up and not found
constexpr u64 shuffle_seed = 3;  // the probe and erase order

// Vigna's splitmix64: a counter through a bijective mixer, so a stream never
// repeats a key within 2^64 draws. Two streams may share a key; for n = 1e7
// the chance is about 1e-5, and lookup_miss would say so (found != 0).
struct splitmix64 {
    u64 state;
    u64 next() {
        u64 z = (state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
};

// 16 lowercase hex digits of k, then k % 17 characters, each taken from the
// low 6 bits of k rotated right by 6 more per character. Distinct keys give
// distinct strings (the hex part alone is k).
std::string key_string(u64 k) {
    static constexpr char hex[] = "0123456789abcdef";
    static constexpr char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    static_assert(sizeof alphabet - 1 == 64, "6 bits pick one character");
    std::string s(16 + k % 17, '\0');
    for (std::size_t i = 0; i < 16; ++i) s[i] = hex[(k >> (60 - 4 * i)) & 15];
    u64 bits = k;
    for (std::size_t i = 16; i < s.size(); ++i) {
        s[i] = alphabet[bits & 63];
        bits = std::rotr(bits, 6);
    }
    return s;
}

std::vector<u64> stream(std::size_t n, u64 seed) {
    splitmix64 rng{seed};
    std::vector<u64> v(n);
    for (u64& k : v) k = rng.next();
    return v;
}

// Fisher-Yates from the top, j = next() % (i + 1): the modulo bias (< n / 2^64)
// is irrelevant and keeps the Go copy a one-liner.
std::vector<u64> shuffled(std::vector<u64> v) {
    splitmix64 rng{shuffle_seed};
    for (std::size_t i = v.size(); i > 1; --i) {
        const auto j = static_cast<std::size_t>(rng.next() % i);
        std::swap(v[i - 1], v[j]);
    }
    return v;
}

template <class K>
struct key_set {
    std::vector<K> hits;      // value of hits[i] is i
    std::vector<K> probe;     // hits, shuffled (lookup_hit, erase)
    std::vector<K> misses;
};

// Strings are built anew from each list (the probe strings in probe order,
// as Go does), not copied, so each list's text lies in its own order.
std::vector<std::string> as_strings(const std::vector<u64>& ks) {
    std::vector<std::string> v;
    v.reserve(ks.size());
    for (u64 k : ks) v.push_back(key_string(k));
    return v;
}

template <class K>
key_set<K> make_key_set(std::size_t n) {
    std::vector<u64> hits = stream(n, hit_seed);
    std::vector<u64> probe = shuffled(hits);
    std::vector<u64> misses = stream(n, miss_seed);
    if constexpr (std::is_same_v<K, u64>) {
        return {std::move(hits), std::move(probe), std::move(misses)};
    } else {
        return {as_strings(hits), as_strings(probe), as_strings(misses)};
    }
}

// Every (key type, n) set is built on first use and kept: about 3 GB for the
// full run's str sets (1e7 keys, three lists), cheap next to rebuilding the
// 1e7 sets again and again when --benchmark_enable_random_interleaving mixes
// the sizes (bench/run.sh uses it).
template <class K>
const key_set<K>& keys_for(std::size_t n) {
    static std::map<std::size_t, key_set<K>> sets;
    static std::mutex lock;  // workload_threads' threads start together
    const std::lock_guard<std::mutex> g(lock);
    auto it = sets.find(n);
    if (it == sets.end()) it = sets.emplace(n, make_key_set<K>(n)).first;
    return it->second;
}

void dump_keys(std::size_t n) {
    const std::vector<u64> hits = stream(n, hit_seed);
    const std::vector<u64> misses = stream(n, miss_seed);
    const std::vector<u64> probe = shuffled(hits);
    for (std::size_t i = 0; i < n; ++i)
        std::printf("hit %zu %llu %s\n", i, static_cast<unsigned long long>(hits[i]), key_string(hits[i]).c_str());
    for (std::size_t i = 0; i < n; ++i)
        std::printf("miss %zu %llu %s\n", i, static_cast<unsigned long long>(misses[i]),
                    key_string(misses[i]).c_str());
    for (std::size_t i = 0; i < n; ++i)
        std::printf("probe %zu %llu\n", i, static_cast<unsigned long long>(probe[i]));
}

// --- jemalloc as a C++ allocator ------------------------------------------------------------

peers::jemalloc_lib jemalloc;
std::size_t (*jemalloc_nallocx)(std::size_t, int) = nullptr;  // its size class, for the ledger

// mallocx/sdallocx with the alignment flag only when T needs more than
// jemalloc gives every block of that size anyway.
template <class T>
struct jemalloc_allocator {
    using value_type = T;

    jemalloc_allocator() noexcept = default;
    template <class U>
    jemalloc_allocator(const jemalloc_allocator<U>&) noexcept {}

    static constexpr int flags =
        alignof(T) > alignof(std::max_align_t) ? std::countr_zero(alignof(T)) : 0;  // MALLOCX_LG_ALIGN

    T* allocate(std::size_t n) {
        const std::size_t bytes = n * sizeof(T);
        void* p = jemalloc.mallocx(bytes, flags);
        if (p == nullptr) throw std::bad_alloc();
        if (ledger::counting.load(std::memory_order_relaxed))
            ledger::jemalloc.fetch_add(static_cast<std::int64_t>(jemalloc_nallocx(bytes, flags)),
                                       std::memory_order_relaxed);
        return static_cast<T*>(p);
    }
    void deallocate(T* p, std::size_t n) noexcept {
        const std::size_t bytes = n * sizeof(T);
        if (ledger::counting.load(std::memory_order_relaxed))
            ledger::jemalloc.fetch_sub(static_cast<std::int64_t>(jemalloc_nallocx(bytes, flags)),
                                       std::memory_order_relaxed);
        jemalloc.sdallocx(p, bytes, flags);
    }

    template <class U>
    friend bool operator==(const jemalloc_allocator&, const jemalloc_allocator<U>&) noexcept {
        return true;
    }
};

void load_jemalloc(char** argv) {
    jemalloc = peers::load_jemalloc(argv);
    if (!jemalloc.loaded()) return;
    // Already loaded by peers: this only finds the handle again.
    void* lib = dlopen("libjemalloc.so.2", RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (lib != nullptr)
        jemalloc_nallocx = reinterpret_cast<std::size_t (*)(std::size_t, int)>(dlsym(lib, "nallocx"));
    if (jemalloc_nallocx == nullptr) {
        jemalloc = peers::jemalloc_lib{};
        jemalloc.error = "libjemalloc.so.2 lacks nallocx";
        return;
    }
    benchmark::AddCustomContext("jemalloc", jemalloc.version);
}

// --- the maps -------------------------------------------------------------------------------
// Each kind says how to make an empty map and why it cannot run (or null).

template <class K>
using pair_of = std::pair<const K, u64>;

struct always_there {
    static const char* missing() { return nullptr; }
};

template <class K>
struct spanmap_arena : always_there {
    static constexpr const char* name = "spanmap";
    using type = spanmap::map<K, u64>;
    static type make() { return type(); }
};

template <class K>
struct spanmap_std_alloc : always_there {
    static constexpr const char* name = "spanmap_std_alloc";
    using type = spanmap::map<K, u64, spanmap::hash<K>, std::equal_to<K>, std::allocator<pair_of<K>>>;
    static type make() { return type(); }
};

template <class K>
struct spanmap_jemalloc {
    static constexpr const char* name = "spanmap_jemalloc";
    using type = spanmap::map<K, u64, spanmap::hash<K>, std::equal_to<K>, jemalloc_allocator<pair_of<K>>>;
    static type make() { return type(); }
    static const char* missing() { return jemalloc.loaded() ? nullptr : jemalloc.error.c_str(); }
};

template <class K>
struct std_unordered : always_there {
    static constexpr const char* name = "std_unordered";
    using type = std::unordered_map<K, u64>;
    static type make() { return type(); }
};

template <class K>
struct std_pmr_unordered_spanmap : always_there {
    static constexpr const char* name = "std_pmr_unordered_spanmap";
    using type = std::pmr::unordered_map<K, u64>;
    static type make() { return type(typename type::allocator_type(spanmap::pmr_resource())); }
};

#if defined(SPANMAP_BENCH_HAVE_ABSL)
template <class K>
struct absl_flat : always_there {
    static constexpr const char* name = "absl_flat";
    using type = absl::flat_hash_map<K, u64>;
    static type make() { return type(); }
};
#endif

// --- measurement helpers --------------------------------------------------------------------

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

void set_per_op(benchmark::State& state, std::size_t ops) {
    state.counters["per_op"] = benchmark::Counter(static_cast<double>(ops),
                                                  benchmark::Counter::kIsIterationInvariantRate |
                                                      benchmark::Counter::kInvert);
}

template <class Kind>
bool usable(benchmark::State& state) {
    if (const char* why = Kind::missing()) {
        state.SkipWithError(why);
        return false;
    }
    return true;
}

template <class Map, class K>
void fill(Map& m, const std::vector<K>& keys) {
    u64 v = 0;
    for (const K& k : keys) m.try_emplace(k, v++);
}

// Sum of the values 0..n-1: what lookup_hit and iterate must find.
u64 value_sum(std::size_t n) { return static_cast<u64>(n) * (static_cast<u64>(n) - 1) / 2; }

struct heap_bytes {
    std::int64_t arena, glibc, jemalloc;
    static heap_bytes now() {
        return {static_cast<std::int64_t>(spanmap::read_mem_stats().alloc),
                ledger::glibc.load(std::memory_order_relaxed), ledger::jemalloc.load(std::memory_order_relaxed)};
    }
    std::int64_t total() const { return arena + glibc + jemalloc; }
};

// bytes_per_entry (and, for str, key_bytes_per_entry) of one map built as the
// insert benchmark builds it; see the top of the file.
template <class Kind, class K>
void report_bytes(benchmark::State& state, const std::vector<K>& keys, bool reserve) {
    const auto n = static_cast<double>(keys.size());
    ledger::counting.store(true, std::memory_order_relaxed);
    const heap_bytes before = heap_bytes::now();
    {
        auto m = Kind::make();
        if (reserve) m.reserve(keys.size());
        fill(m, keys);
        const heap_bytes after = heap_bytes::now();
        state.counters["bytes_per_entry"] = static_cast<double>(after.total() - before.total()) / n;
        if constexpr (std::is_same_v<K, std::string>) {
            // Every key text is past the inline buffer, so data() is a block of operator new.
            double text = 0;
            for (auto&& kv : m) text += static_cast<double>(malloc_usable_size(const_cast<char*>(kv.first.data())));
            state.counters["key_bytes_per_entry"] = text / n;
        }
        ledger::counting.store(false, std::memory_order_relaxed);
    }  // freed with the ledgers off: what they hold now no longer matters
}

// --- the operations -------------------------------------------------------------------------

template <class Kind, class K>
void bm_insert(benchmark::State& state, std::size_t n, bool reserve) {
    if (!usable<Kind>(state)) return;
    const std::vector<K>& keys = keys_for<K>(n).hits;
    for (auto _ : state) {
        {
            const auto t0 = clock_type::now();
            auto m = Kind::make();
            if (reserve) m.reserve(n);
            fill(m, keys);
            benchmark::DoNotOptimize(m);
            state.SetIterationTime(seconds_since(t0));
            state.PauseTiming();
            if (m.size() != n) state.SkipWithError("insert lost keys");
        }  // destruction untimed
        state.ResumeTiming();
    }
    set_per_op(state, n);
    report_bytes<Kind>(state, keys, reserve);
}

template <class Kind, class K>
void bm_lookup_hit(benchmark::State& state, std::size_t n) {
    if (!usable<Kind>(state)) return;
    const key_set<K>& keys = keys_for<K>(n);
    auto m = Kind::make();
    fill(m, keys.hits);
    for (auto _ : state) {
        const auto t0 = clock_type::now();
        u64 sum = 0;
        for (const K& k : keys.probe) {
            auto it = m.find(k);
            if (it != m.end()) sum += it->second;
        }
        benchmark::DoNotOptimize(sum);
        state.SetIterationTime(seconds_since(t0));
        if (sum != value_sum(n)) state.SkipWithError("lookup_hit found wrong values");
    }
    set_per_op(state, n);
}

template <class Kind, class K>
void bm_lookup_miss(benchmark::State& state, std::size_t n) {
    if (!usable<Kind>(state)) return;
    const key_set<K>& keys = keys_for<K>(n);
    auto m = Kind::make();
    fill(m, keys.hits);
    for (auto _ : state) {
        const auto t0 = clock_type::now();
        std::size_t found = 0;
        for (const K& k : keys.misses) found += m.contains(k) ? 1 : 0;
        benchmark::DoNotOptimize(found);
        state.SetIterationTime(seconds_since(t0));
        if (found != 0) state.SkipWithError("lookup_miss found a key (a hit and a miss stream share a key?)");
    }
    set_per_op(state, n);
}

template <class Kind, class K>
void bm_erase(benchmark::State& state, std::size_t n) {
    if (!usable<Kind>(state)) return;
    const key_set<K>& keys = keys_for<K>(n);
    for (auto _ : state) {
        state.PauseTiming();
        {
            auto m = Kind::make();
            fill(m, keys.hits);
            state.ResumeTiming();
            const auto t0 = clock_type::now();
            std::size_t erased = 0;
            for (const K& k : keys.probe) erased += m.erase(k);
            benchmark::DoNotOptimize(m);
            state.SetIterationTime(seconds_since(t0));
            state.PauseTiming();
            if (erased != n || !m.empty()) state.SkipWithError("erase left keys behind");
        }
        state.ResumeTiming();
    }
    set_per_op(state, n);
}

template <class Kind, class K>
void bm_workload(benchmark::State& state, std::size_t n) {
    if (!usable<Kind>(state)) return;
    const key_set<K>& keys = keys_for<K>(n);
    const std::size_t half = n / 2;
    for (auto _ : state) {
        const auto t0 = clock_type::now();
        u64 sum = 0;
        std::size_t erased = 0;
        std::size_t left = 0;
        {
            auto m = Kind::make();
            fill(m, keys.hits);
            for (const K& k : keys.probe) sum += m.find(k)->second;
            for (std::size_t i = 0; i < half; ++i) erased += m.erase(keys.probe[i]);
            left = m.size();
            benchmark::DoNotOptimize(m);
        }
        state.SetIterationTime(seconds_since(t0));
        if (sum != value_sum(n) || erased != half || left != n - half) state.SkipWithError("workload lost keys");
    }
    set_per_op(state, n);
}

template <class Kind, class K>
void bm_iterate(benchmark::State& state, std::size_t n) {
    if (!usable<Kind>(state)) return;
    auto m = Kind::make();
    fill(m, keys_for<K>(n).hits);
    for (auto _ : state) {
        const auto t0 = clock_type::now();
        u64 sum = 0;
        for (auto&& kv : m) sum += kv.second;
        benchmark::DoNotOptimize(sum);
        state.SetIterationTime(seconds_since(t0));
        if (sum != value_sum(n)) state.SkipWithError("iterate summed wrong values");
    }
    set_per_op(state, n);
}

// --- growth latency -------------------------------------------------------------------------

// The cycle counter where there is one (a few ns to read), else the clock.
inline u64 ticks() {
#if defined(__x86_64__)
    return __rdtsc();
#else
    return static_cast<u64>(clock_type::now().time_since_epoch().count());
#endif
}

// Stands in for a map in growth_latency/noise_floor: about an insert's worth
// of dependent arithmetic and no memory (bench/go has the same loop).
struct no_map {
    u64 x = 1;
    u64 sink[64] = {};
    void try_emplace(u64 k, u64 i) {
        for (int r = 0; r < 40; ++r) x = x * 6364136223846793005ULL + k;
        sink[i & 63] = x;
    }
};
struct noise_floor : always_there {
    static constexpr const char* name = "noise_floor";
    using type = no_map;
    static type make() { return type(); }
};

constexpr std::size_t trace_window = 8192;

std::string latency_trace_dir;  // --latency_trace; empty: no traces

double quantile_ns(std::vector<std::uint32_t>& v, double q, double ns_per_tick) {
    const auto k = static_cast<std::ptrdiff_t>(q * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + k, v.end());
    return static_cast<double>(v[static_cast<std::size_t>(k)]) * ns_per_tick;
}

void write_trace(const char* map_name, const std::vector<std::uint32_t>& cost, double ns_per_tick) {
    std::filesystem::create_directories(latency_trace_dir);
    const std::string path = latency_trace_dir + "/latency_" + map_name + ".csv";
    std::ofstream out(path);
    out << "first_insert_index,max_ns,p50_ns\n";
    std::vector<std::uint32_t> window;
    char line[96];
    for (std::size_t first = 0; first < cost.size(); first += trace_window) {
        const std::size_t last = std::min(cost.size(), first + trace_window);
        window.assign(cost.begin() + static_cast<std::ptrdiff_t>(first), cost.begin() + static_cast<std::ptrdiff_t>(last));
        const double max_ns = static_cast<double>(*std::max_element(window.begin(), window.end())) * ns_per_tick;
        const double p50_ns = quantile_ns(window, 0.5, ns_per_tick);
        std::snprintf(line, sizeof line, "%zu,%.1f,%.1f\n", first, max_ns, p50_ns);
        out << line;
    }
    if (!out) std::fprintf(stderr, "map_peers_bench: could not write %s\n", path.c_str());
}

template <class Kind>
void bm_growth(benchmark::State& state, std::size_t n) {
    if (!usable<Kind>(state)) return;
    const std::vector<u64> keys = stream(n, hit_seed);  // the first n keys of every other benchmark
    std::vector<std::uint32_t> cost(n);
    for (auto _ : state) {
        double ns_per_tick = 0;
        {
            auto m = Kind::make();
            const auto wall0 = clock_type::now();
            const u64 t0 = ticks();
            u64 prev = t0;
            for (std::size_t i = 0; i < n; ++i) {
                m.try_emplace(keys[i], static_cast<u64>(i));
                const u64 now = ticks();
                cost[i] = static_cast<std::uint32_t>(std::min<u64>(now - prev, UINT32_MAX));
                prev = now;
            }
            const double wall = seconds_since(wall0);
            ns_per_tick = wall * 1e9 / static_cast<double>(prev - t0);
            benchmark::DoNotOptimize(m);
            state.SetIterationTime(wall);
            state.PauseTiming();
        }
        const double max_ns = static_cast<double>(*std::max_element(cost.begin(), cost.end())) * ns_per_tick;
        if (!latency_trace_dir.empty()) write_trace(Kind::name, cost, ns_per_tick);
        std::vector<std::uint32_t> sorted = cost;
        state.counters["p50_ns"] = quantile_ns(sorted, 0.5, ns_per_tick);
        state.counters["p999_ns"] = quantile_ns(sorted, 0.999, ns_per_tick);
        state.counters["max_ns"] = max_ns;
        state.ResumeTiming();
    }
    set_per_op(state, n);
}

// --- registration ---------------------------------------------------------------------------

template <template <class> class Kind, class K>
void register_op(const char* op, const char* key_name, std::size_t n) {
    using kind = Kind<K>;
    const std::string name = std::string(op) + "/" + kind::name + "/" + key_name + "/" + std::to_string(n);
    benchmark::internal::Benchmark* b = nullptr;
    const std::string_view o = op;
    if (o == "insert") b = benchmark::RegisterBenchmark(name.c_str(), bm_insert<kind, K>, n, false);
    if (o == "insert_reserved") b = benchmark::RegisterBenchmark(name.c_str(), bm_insert<kind, K>, n, true);
    if (o == "lookup_hit") b = benchmark::RegisterBenchmark(name.c_str(), bm_lookup_hit<kind, K>, n);
    if (o == "lookup_miss") b = benchmark::RegisterBenchmark(name.c_str(), bm_lookup_miss<kind, K>, n);
    if (o == "erase") b = benchmark::RegisterBenchmark(name.c_str(), bm_erase<kind, K>, n);
    if (o == "iterate") b = benchmark::RegisterBenchmark(name.c_str(), bm_iterate<kind, K>, n);
    if (o == "workload" || o == "workload_threads") b = benchmark::RegisterBenchmark(name.c_str(), bm_workload<kind, K>, n);
    if (o == "workload_threads") b->Threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
    b->UseManualTime();
}

// Key type, then size, then op, then map: the maps of one case run back to
// back, close in time (unless --benchmark_enable_random_interleaving).
template <class K>
void register_ops(const char* key_name, const std::vector<std::size_t>& sizes) {
    static constexpr const char* ops[] = {"insert", "insert_reserved", "lookup_hit", "lookup_miss",
                                          "erase",  "iterate",         "workload",   "workload_threads"};
    for (std::size_t n : sizes) {
        for (const char* op : ops) {
            register_op<spanmap_arena, K>(op, key_name, n);
            register_op<spanmap_std_alloc, K>(op, key_name, n);
            register_op<spanmap_jemalloc, K>(op, key_name, n);
#if defined(SPANMAP_BENCH_HAVE_ABSL)
            register_op<absl_flat, K>(op, key_name, n);
#endif
            register_op<std_unordered, K>(op, key_name, n);
            register_op<std_pmr_unordered_spanmap, K>(op, key_name, n);
        }
    }
}

template <class Kind>
void register_growth(std::size_t n) {
    benchmark::RegisterBenchmark((std::string("growth_latency/") + Kind::name).c_str(), bm_growth<Kind>, n)
        ->Iterations(1)
        ->UseManualTime();
}

// --- flags ------------------------------------------------------------------------------------

bool parse_count(const char* s, std::size_t& out) {
    char* end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v == 0) return false;
    out = static_cast<std::size_t>(v);
    return true;
}

bool parse_sizes(const char* s, std::vector<std::size_t>& out) {
    out.clear();
    std::string list = s;
    std::size_t start = 0;
    while (start <= list.size()) {
        const std::size_t comma = std::min(list.find(',', start), list.size());
        std::size_t n = 0;
        if (!parse_count(list.substr(start, comma - start).c_str(), n)) return false;
        out.push_back(n);
        start = comma + 1;
    }
    return !out.empty();
}

const char* flag_value(const char* arg, const char* name) {
    const std::size_t len = std::strlen(name);
    return std::strncmp(arg, name, len) == 0 && arg[len] == '=' ? arg + len + 1 : nullptr;
}

}  // namespace

int main(int argc, char** argv) {
    // First: on a short static TLS this re-executes the program (see peers.h),
    // and it needs argv untouched.
    load_jemalloc(argv);

    std::vector<std::size_t> sizes = {1000, 10000, 100000, 1000000};
    std::size_t growth_keys = std::size_t{8} << 20;
    std::size_t dump = 0;
    int kept = 1;
    for (int i = 1; i < argc; ++i) {
        const char* a = argv[i];
        bool ok = true;
        if (const char* v = flag_value(a, "--sizes")) {
            ok = parse_sizes(v, sizes);
        } else if (const char* g = flag_value(a, "--growth_keys")) {
            ok = parse_count(g, growth_keys);
        } else if (const char* d = flag_value(a, "--latency_trace")) {
            latency_trace_dir = d;
            ok = !latency_trace_dir.empty();
        } else if (const char* k = flag_value(a, "--dump_keys")) {
            ok = parse_count(k, dump);
        } else {
            argv[kept++] = argv[i];
            continue;
        }
        if (!ok) {
            std::fprintf(stderr, "map_peers_bench: bad flag %s\n", a);
            return 2;
        }
    }
    argc = kept;
    if (dump != 0) {
        dump_keys(dump);
        return 0;
    }

    register_ops<u64>("u64", sizes);
    register_ops<std::string>("str", sizes);
    register_growth<spanmap_arena<u64>>(growth_keys);
    register_growth<spanmap_std_alloc<u64>>(growth_keys);
    register_growth<spanmap_jemalloc<u64>>(growth_keys);
#if defined(SPANMAP_BENCH_HAVE_ABSL)
    register_growth<absl_flat<u64>>(growth_keys);
#endif
    register_growth<std_unordered<u64>>(growth_keys);
    register_growth<std_pmr_unordered_spanmap<u64>>(growth_keys);
    register_growth<noise_floor>(growth_keys);

    benchmark::AddCustomContext("growth_keys", std::to_string(growth_keys));
#if defined(SPANMAP_BENCH_HAVE_ABSL)
    benchmark::AddCustomContext("absl", "yes");
#else
    benchmark::AddCustomContext("absl", "not built (Abseil not found at configure time)");
#endif
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

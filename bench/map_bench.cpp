// spanmap::map (on the arena) against std::unordered_map: insert, lookup hit,
// lookup miss, erase and iterate for uint64_t and std::string keys; the worst
// single insert while growing to 8M keys; and Go's load-factor table
// re-measured (BM_LoadFactorTable, cited next to the constant in map.h).
//
//   map_bench                       sizes 1e3, 1e5, 1e6
//   map_bench --map_bench_large     also 1e7 (several GiB of RAM, minutes)
//   map_bench --benchmark_filter=Growth --benchmark_repetitions=5
//
// Each operation benchmark reports per_op: seconds per operation (insert of
// one key, one lookup, ...). Keys are random (uint64_t) or random decimal
// strings of 1-40 characters, looked up in a shuffled order.
//
// BM_GrowthLatency times each of 8M inserts into an empty map and reports
// p50/p99.9/p99.999/max and how many took over 1 ms. std::unordered_map's
// max is its full rehash; spanmap's growth is incremental, so its max is
// whatever else the machine and the allocator add. BM_GrowthLatency/noise_floor
// runs the same timing loop around plain arithmetic to show the first part.

#include <spanmap/map.h>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace {

using u64 = std::uint64_t;

template <class K>
std::vector<K> make_keys(std::size_t n, u64 seed) {
    std::mt19937_64 rng(seed);
    std::vector<K> keys;
    keys.reserve(n);
    if constexpr (std::is_same_v<K, u64>) {
        for (std::size_t i = 0; i < n; ++i) keys.push_back(rng());
    } else {
        for (std::size_t i = 0; i < n; ++i) {
            std::string s = std::to_string(rng());
            s.append(rng() % 21, static_cast<char>('a' + i % 26));
            keys.push_back(std::move(s));
        }
    }
    return keys;
}

// Keys for a map of n entries, built once per (type, n) and reused.
template <class K>
const std::vector<K>& keys_for(std::size_t n) {
    static std::size_t cached_n = 0;
    static std::vector<K> keys;
    if (cached_n != n) {
        keys = make_keys<K>(n, 1);
        cached_n = n;
    }
    return keys;
}

void per_op(benchmark::State& state, std::size_t ops) {
    state.counters["per_op"] = benchmark::Counter(static_cast<double>(ops),
                                                  benchmark::Counter::kIsIterationInvariantRate |
                                                      benchmark::Counter::kInvert);
}

template <class Map>
void BM_Insert(benchmark::State& state) {
    using K = typename Map::key_type;
    const auto n = static_cast<std::size_t>(state.range(0));
    const auto& keys = keys_for<K>(n);
    for (auto _ : state) {
        state.PauseTiming();
        {
            Map m;
            state.ResumeTiming();
            for (const auto& k : keys) m.try_emplace(k, 1);
            benchmark::DoNotOptimize(m);
            state.PauseTiming();
        }  // destruction untimed
        state.ResumeTiming();
    }
    per_op(state, n);
}

template <class Map>
Map filled(std::size_t n) {
    Map m;
    for (const auto& k : keys_for<typename Map::key_type>(n)) m.try_emplace(k, 1);
    return m;
}

template <class Map>
void BM_LookupHit(benchmark::State& state) {
    using K = typename Map::key_type;
    const auto n = static_cast<std::size_t>(state.range(0));
    const Map m = filled<Map>(n);
    std::vector<K> probe = keys_for<K>(n);
    std::shuffle(probe.begin(), probe.end(), std::mt19937_64(2));
    for (auto _ : state) {
        u64 found = 0;
        for (const auto& k : probe) found += m.find(k)->second;
        benchmark::DoNotOptimize(found);
    }
    per_op(state, n);
}

template <class Map>
void BM_LookupMiss(benchmark::State& state) {
    using K = typename Map::key_type;
    const auto n = static_cast<std::size_t>(state.range(0));
    const Map m = filled<Map>(n);
    const std::vector<K> probe = make_keys<K>(n, 3);  // other keys
    for (auto _ : state) {
        u64 found = 0;
        for (const auto& k : probe) found += m.find(k) != m.end();
        benchmark::DoNotOptimize(found);
    }
    per_op(state, n);
}

template <class Map>
void BM_Erase(benchmark::State& state) {
    using K = typename Map::key_type;
    const auto n = static_cast<std::size_t>(state.range(0));
    std::vector<K> order = keys_for<K>(n);
    std::shuffle(order.begin(), order.end(), std::mt19937_64(4));
    for (auto _ : state) {
        state.PauseTiming();
        {
            Map m = filled<Map>(n);
            state.ResumeTiming();
            for (const auto& k : order) m.erase(k);
            benchmark::DoNotOptimize(m);
            state.PauseTiming();
        }
        state.ResumeTiming();
    }
    per_op(state, n);
}

template <class Map>
void BM_Iterate(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    const Map m = filled<Map>(n);
    for (auto _ : state) {
        u64 sum = 0;
        for (const auto& [k, v] : m) sum += static_cast<u64>(v);
        benchmark::DoNotOptimize(sum);
    }
    per_op(state, n);
}

// --- the worst single insert while growing to 8M keys ------------------------------------

// A cycle counter where there is one (a few ns to read), else the clock.
std::uint64_t ticks() {
#if defined(__x86_64__)
    return __rdtsc();
#else
    return static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
#endif
}

// Stands in for a map in BM_GrowthLatency/noise_floor: about an insert's
// worth of arithmetic and no memory. Its max latency is what the machine
// alone (preemption, interrupts) adds to a timed loop.
struct no_map {
    u64 x = 1;
    u64 sink[64] = {};
    void try_emplace(u64 k, std::size_t i) {
        for (int r = 0; r < 40; ++r) x = x * 6364136223846793005ULL + k;
        sink[i & 63] = x;
    }
};

// Times every insert of n keys into an empty map with a cycle counter and
// reports the distribution. Compare max_ns with BM_GrowthLatency/noise_floor:
// on a shared machine a descheduled thread shows up as a slow insert.
template <class Map>
void BM_GrowthLatency(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    const std::vector<u64>& keys = keys_for<u64>(n);
    std::vector<std::uint32_t> cost(n);
    for (auto _ : state) {
        Map m;
        const auto wall0 = std::chrono::steady_clock::now();
        const std::uint64_t t0 = ticks();
        std::uint64_t prev = t0;
        for (std::size_t i = 0; i < n; ++i) {
            m.try_emplace(keys[i], i);
            const std::uint64_t now = ticks();
            cost[i] = static_cast<std::uint32_t>(std::min<std::uint64_t>(now - prev, UINT32_MAX));
            prev = now;
        }
        const double ns_per_tick =
            std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - wall0).count() /
            static_cast<double>(prev - t0);
        state.PauseTiming();
        std::vector<std::uint32_t> sorted = cost;
        auto at = [&](double q) {
            const auto k = static_cast<std::size_t>(q * static_cast<double>(n - 1));
            std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(k), sorted.end());
            return static_cast<double>(sorted[k]) * ns_per_tick;
        };
        state.counters["p50_ns"] = at(0.5);
        state.counters["p99.9_ns"] = at(0.999);
        state.counters["p99.999_ns"] = at(0.99999);
        state.counters["max_ns"] = static_cast<double>(*std::max_element(cost.begin(), cost.end())) * ns_per_tick;
        state.counters["over_1ms"] = static_cast<double>(
            std::count_if(cost.begin(), cost.end(), [&](std::uint32_t c) { return static_cast<double>(c) * ns_per_tick > 1e6; }));
        benchmark::DoNotOptimize(m);
        state.ResumeTiming();
    }
    per_op(state, n);
}

// --- Go's load-factor table, re-measured ---------------------------------------------------

// For each load factor, 2^16 buckets are filled to that load with keys
// hashed by spanmap::hash (a model of the bucket layout, as Go's own
// measurement was), giving Go's four columns for maximally loaded tables:
//   overflow_pct   buckets that have at least one overflow bucket
//   bytes_per_entry overhead bytes per 8-byte key + 8-byte value pair
//   hitprobe       entries checked to find a present key (in chain order)
//   missprobe      entries checked to miss (the whole chain)
// Where the real map can be loaded to that point (load <= 6.5, fixed with
// reserve()) it is measured too: real_overflow_pct and real_bytes_per_entry
// from map_stats, for map<uint64_t, uint64_t> on std::allocator (unrounded).
void BM_LoadFactorTable(benchmark::State& state) {
    const double load = static_cast<double>(state.range(0)) / 100.0;
    const std::size_t buckets = std::size_t{1} << 16;
    const auto n = static_cast<std::size_t>(load * static_cast<double>(buckets));
    const std::size_t bucket_bytes = 8 + 8 * 8 + 8 * 8 + 8;
    for (auto _ : state) {
        std::vector<std::uint32_t> chain(buckets, 0);
        std::mt19937_64 rng(5);
        const spanmap::hash<u64> h;
        for (std::size_t i = 0; i < n; ++i) ++chain[h(rng(), 9) & (buckets - 1)];
        double overflowed = 0, overflow_buckets = 0, hit = 0, miss = 0;
        for (std::uint32_t k : chain) {
            if (k > 8) {
                ++overflowed;
                overflow_buckets += (k - 1) / 8;
            }
            hit += k * (k + 1) / 2.0;  // the i-th entry of a chain costs i checks
            miss += k;
        }
        const auto nb = static_cast<double>(buckets);
        const auto entries = static_cast<double>(n);
        state.counters["overflow_pct"] = 100 * overflowed / nb;
        state.counters["bytes_per_entry"] = static_cast<double>(bucket_bytes) * (nb + overflow_buckets) / entries - 16;
        state.counters["hitprobe"] = hit / entries;
        state.counters["missprobe"] = miss / nb;

        if (load <= 6.5) {
            spanmap::map<u64, u64, spanmap::hash<u64>, std::equal_to<u64>, std::allocator<std::pair<const u64, u64>>> m;
            m.reserve(buckets * 13 / 2);  // B = 16
            for (std::size_t i = 0; i < n; ++i) m.try_emplace(rng(), i);
            const auto s = m.stats();
            state.counters["real_overflow_pct"] = 100.0 * static_cast<double>(s.overflow_buckets) / nb;
            state.counters["real_bytes_per_entry"] =
                static_cast<double>((s.bucket_count + s.overflow_buckets) * s.bucket_bytes) /
                    static_cast<double>(s.count) -
                16;
        }
    }
}

template <class K>
using spanmap_of = spanmap::map<K, int>;
template <class K>
using std_of = std::unordered_map<K, int>;

template <class K>
void register_ops(const char* key_name, const std::vector<long>& sizes) {
    auto add = [&](const std::string& name, auto fn) {
        auto* b = benchmark::RegisterBenchmark(name.c_str(), fn);
        for (long n : sizes) b->Arg(n);
        b->Unit(benchmark::kMillisecond)->UseRealTime();
    };
    const std::string k = key_name;
    add("BM_Insert/spanmap/" + k, BM_Insert<spanmap_of<K>>);
    add("BM_Insert/std/" + k, BM_Insert<std_of<K>>);
    add("BM_LookupHit/spanmap/" + k, BM_LookupHit<spanmap_of<K>>);
    add("BM_LookupHit/std/" + k, BM_LookupHit<std_of<K>>);
    add("BM_LookupMiss/spanmap/" + k, BM_LookupMiss<spanmap_of<K>>);
    add("BM_LookupMiss/std/" + k, BM_LookupMiss<std_of<K>>);
    add("BM_Erase/spanmap/" + k, BM_Erase<spanmap_of<K>>);
    add("BM_Erase/std/" + k, BM_Erase<std_of<K>>);
    add("BM_Iterate/spanmap/" + k, BM_Iterate<spanmap_of<K>>);
    add("BM_Iterate/std/" + k, BM_Iterate<std_of<K>>);
}

}  // namespace

int main(int argc, char** argv) {
    bool large = false;
    int kept = 1;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--map_bench_large") == 0) {
            large = true;
        } else {
            argv[kept++] = argv[i];
        }
    }
    argc = kept;

    std::vector<long> sizes = {1000, 100000, 1000000};
    if (large) sizes.push_back(10000000);
    register_ops<u64>("u64", sizes);
    register_ops<std::string>("string", sizes);

    constexpr long growth_keys = 8L << 20;
    benchmark::RegisterBenchmark("BM_GrowthLatency/spanmap", BM_GrowthLatency<spanmap::map<u64, std::size_t>>)
        ->Arg(growth_keys)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark(
        "BM_GrowthLatency/spanmap_std_allocator",
        BM_GrowthLatency<spanmap::map<u64, std::size_t, spanmap::hash<u64>, std::equal_to<u64>,
                                      std::allocator<std::pair<const u64, std::size_t>>>>)
        ->Arg(growth_keys)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark("BM_GrowthLatency/std", BM_GrowthLatency<std::unordered_map<u64, std::size_t>>)
        ->Arg(growth_keys)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark("BM_GrowthLatency/noise_floor", BM_GrowthLatency<no_map>)
        ->Arg(growth_keys)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

    auto* table = benchmark::RegisterBenchmark("BM_LoadFactorTable", BM_LoadFactorTable);
    for (long load = 400; load <= 800; load += 50) table->Arg(load);
    table->Iterations(1)->Unit(benchmark::kMillisecond);

    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

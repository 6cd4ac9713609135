// profile_bench: what the heap profiler costs a malloc/free pair, one thread.
//
//   pair/<mode>/<size>       allocate one object of <size> bytes, free it
//   batch1000/<mode>/<size>  allocate 1000 objects, then free them in the
//                            same order (the time is for all 1000 pairs)
//
// Modes:
//   off   profiling off: the fast path counts down from 16 MiB and pays one
//         test of the span's live_samples on free
//   on    spanmap::profile_start() at the default rate, 512 KiB: the same fast
//         path, plus one sample per 512 KiB on average (a stack capture and
//         two table updates)
//
// Built against a tree without the profiler (no <spanmap/profile.h>), only the
// "off" benchmarks exist: that build is the baseline for "off". Compare with
//   profile_bench --benchmark_repetitions=9 --benchmark_report_aggregates_only=true
#include <spanmap/spanmap.h>

#if __has_include(<spanmap/profile.h>)
#include <spanmap/profile.h>
#define SPANMAP_BENCH_PROFILER 1
#endif

#include <benchmark/benchmark.h>

#include <cstddef>
#include <string>
#include <vector>

namespace {

constexpr std::size_t sizes[] = {16, 64, 256, 4096};
constexpr std::size_t batch = 1000;

// Profiling on for the benchmark's lifetime when asked.
class profiling {
public:
    explicit profiling(bool on) : on_(on) {
#ifdef SPANMAP_BENCH_PROFILER
        if (on_ && !spanmap::profile_start()) on_ = false;
#endif
    }
    ~profiling() {
#ifdef SPANMAP_BENCH_PROFILER
        if (on_) spanmap::profile_stop();
#endif
    }
    profiling(const profiling&) = delete;
    profiling& operator=(const profiling&) = delete;
    bool ok(bool wanted) const { return on_ == wanted; }

private:
    bool on_;
};

void pair(benchmark::State& state, bool on, std::size_t size) {
    profiling p(on);
    if (!p.ok(on)) {
        state.SkipWithError("profiling unavailable");
        return;
    }
    for (auto _ : state) {
        void* q = spanmap_malloc(size);
        benchmark::DoNotOptimize(q);
        spanmap_free(q);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void batch_pairs(benchmark::State& state, bool on, std::size_t size) {
    profiling p(on);
    if (!p.ok(on)) {
        state.SkipWithError("profiling unavailable");
        return;
    }
    std::vector<void*> ptrs(batch);
    for (auto _ : state) {
        for (void*& q : ptrs) {
            q = spanmap_malloc(size);
            benchmark::DoNotOptimize(q);
        }
        for (void* q : ptrs) spanmap_free(q);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
}

void register_all() {
    const char* modes[] = {"off", "on"};
    for (const char* mode : modes) {
        const bool on = mode[1] == 'n';
#ifndef SPANMAP_BENCH_PROFILER
        if (on) continue;
#endif
        for (const std::size_t size : sizes) {
            const std::string tail = std::string(mode) + "/" + std::to_string(size);
            benchmark::RegisterBenchmark(("pair/" + tail).c_str(), pair, on, size);
            benchmark::RegisterBenchmark(("batch1000/" + tail).c_str(), batch_pairs, on, size);
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    register_all();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

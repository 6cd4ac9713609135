// malloc_bench: the cost of a malloc/free pair, one thread, spanmap next to
// glibc and jemalloc in the same process.
//
//   pair/<allocator>/<size>       allocate one object of <size> bytes, free it
//   batch1000/<allocator>/<size>  allocate 1000 objects, then free them in the
//                                 same order (the time is for all 1000 pairs)
//
// Allocators:
//   spanmap         spanmap_malloc / spanmap_free
//   spanmap_sized   spanmap::allocate / spanmap::deallocate(p, size)
//   glibc           glibc's own malloc / free (looked up in libc.so.6, so it is
//                   glibc's even when another malloc is preloaded)
//   jemalloc        malloc / free of libjemalloc.so.2 (Debian's libjemalloc2)
//   jemalloc_sized  mallocx / sdallocx of the same library
//
// jemalloc is loaded with dlopen(RTLD_LOCAL), so it serves only these calls
// (bench/peers.h says how, and why the program may re-execute itself once).
// If jemalloc cannot be loaded its benchmarks report an error and the others
// run.
//
// bench/compare.sh runs this with repetitions and prints the medians and the
// ratios glibc/spanmap and jemalloc/spanmap, all from that one run.
#include <spanmap/alloc.h>
#include <spanmap/spanmap.h>

#include "peers.h"

#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <gnu/libc-version.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace {

constexpr std::size_t sizes[] = {8, 16, 32, 64, 128, 256};
constexpr std::size_t batch = 1000;

// Peers, found at start-up; null when not available.
struct {
    void* (*malloc)(std::size_t) = nullptr;
    void (*free)(void*) = nullptr;
} glibc;

peers::jemalloc_lib jemalloc;

template <class F>
F lookup(void* lib, const char* name) {
    return reinterpret_cast<F>(dlsym(lib, name));
}

void load_glibc() {
    void* libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    if (libc == nullptr) return;
    glibc.malloc = lookup<void* (*)(std::size_t)>(libc, "malloc");
    glibc.free = lookup<void (*)(void*)>(libc, "free");
    benchmark::AddCustomContext("glibc", gnu_get_libc_version());
}

void load_jemalloc(char** argv) {
    jemalloc = peers::load_jemalloc(argv);
    if (!jemalloc.version.empty()) benchmark::AddCustomContext("jemalloc", jemalloc.version);
}

// One allocator: how to allocate and free n bytes, and why it is missing (or null).
struct spanmap_c {
    static const char* missing() { return nullptr; }
    static void* alloc(std::size_t n) { return spanmap_malloc(n); }
    static void release(void* p, std::size_t) { spanmap_free(p); }
};
struct spanmap_sized {
    static const char* missing() { return nullptr; }
    static void* alloc(std::size_t n) { return spanmap::allocate(n); }
    static void release(void* p, std::size_t n) { spanmap::deallocate(p, n); }
};
struct glibc_c {
    static const char* missing() { return glibc.malloc ? nullptr : "glibc's malloc not found"; }
    static void* alloc(std::size_t n) { return glibc.malloc(n); }
    static void release(void* p, std::size_t) { glibc.free(p); }
};
struct jemalloc_c {
    static const char* missing() { return jemalloc.malloc ? nullptr : jemalloc.error.c_str(); }
    static void* alloc(std::size_t n) { return jemalloc.malloc(n); }
    static void release(void* p, std::size_t) { jemalloc.free(p); }
};
struct jemalloc_sized {
    static const char* missing() { return jemalloc_c::missing(); }
    static void* alloc(std::size_t n) { return jemalloc.mallocx(n, 0); }
    static void release(void* p, std::size_t n) { jemalloc.sdallocx(p, n, 0); }
};

template <class A>
bool usable(benchmark::State& state) {
    if (const char* why = A::missing()) {
        state.SkipWithError(why);
        return false;
    }
    return true;
}

template <class A>
void pair(benchmark::State& state, std::size_t size) {
    if (!usable<A>(state)) return;
    for (auto _ : state) {
        void* p = A::alloc(size);
        benchmark::DoNotOptimize(p);
        A::release(p, size);
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(state.iterations());
}

template <class A>
void batch_pairs(benchmark::State& state, std::size_t size) {
    if (!usable<A>(state)) return;
    std::array<void*, batch> objects;
    for (auto _ : state) {
        for (void*& p : objects) {
            p = A::alloc(size);
            benchmark::DoNotOptimize(p);
        }
        benchmark::ClobberMemory();
        for (void* p : objects) A::release(p, size);
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(batch));
}

template <class A>
void register_allocator(const char* name, std::size_t size) {
    const std::string suffix = std::string(name) + "/" + std::to_string(size);
    benchmark::RegisterBenchmark(("pair/" + suffix).c_str(), pair<A>, size);
    benchmark::RegisterBenchmark(("batch1000/" + suffix).c_str(), batch_pairs<A>, size);
}

}  // namespace

int main(int argc, char** argv) {
    load_jemalloc(argv);
    load_glibc();
    // Size by size, so the allocators of one size run close together in time.
    for (std::size_t size : sizes) {
        register_allocator<spanmap_c>("spanmap", size);
        register_allocator<spanmap_sized>("spanmap_sized", size);
        register_allocator<glibc_c>("glibc", size);
        register_allocator<jemalloc_c>("jemalloc", size);
        register_allocator<jemalloc_sized>("jemalloc_sized", size);
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

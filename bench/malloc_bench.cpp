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
// jemalloc is loaded with dlopen(RTLD_LOCAL), so it serves only these calls.
// It keeps its thread state in static TLS, which glibc can find for a dlopened
// library only when told to reserve room; when the first dlopen fails for that
// reason the program re-executes itself once with
// GLIBC_TUNABLES=glibc.rtld.optional_static_tls=... . If jemalloc cannot be
// loaded at all its benchmarks report an error and the others run.
//
// bench/compare.sh runs this with repetitions and prints the medians and the
// ratios glibc/spanmap and jemalloc/spanmap, all from that one run.
#include <spanmap/alloc.h>
#include <spanmap/spanmap.h>

#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <gnu/libc-version.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

constexpr std::size_t sizes[] = {8, 16, 32, 64, 128, 256};
constexpr std::size_t batch = 1000;

// Peers, found at start-up; null when not available.
struct {
    void* (*malloc)(std::size_t) = nullptr;
    void (*free)(void*) = nullptr;
} glibc;

struct {
    void* (*malloc)(std::size_t) = nullptr;
    void (*free)(void*) = nullptr;
    void* (*mallocx)(std::size_t, int) = nullptr;
    void (*sdallocx)(void*, std::size_t, int) = nullptr;
    std::string error = "not loaded";
} jemalloc;

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

constexpr const char* reexec_marker = "SPANMAP_BENCH_REEXECUTED";

void load_jemalloc(char** argv) {
    void* lib = dlopen("libjemalloc.so.2", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
        const char* why = dlerror();
        jemalloc.error = std::string("dlopen libjemalloc.so.2: ") + (why ? why : "?");
        if (why != nullptr && std::strstr(why, "static TLS") != nullptr && std::getenv(reexec_marker) == nullptr) {
            std::string tunables = "glibc.rtld.optional_static_tls=16384";
            if (const char* old = std::getenv("GLIBC_TUNABLES")) tunables = std::string(old) + ":" + tunables;
            setenv("GLIBC_TUNABLES", tunables.c_str(), 1);
            setenv(reexec_marker, "1", 1);
            execv("/proc/self/exe", argv);  // returns only on failure
        }
        return;
    }
    jemalloc.malloc = lookup<void* (*)(std::size_t)>(lib, "malloc");
    jemalloc.free = lookup<void (*)(void*)>(lib, "free");
    jemalloc.mallocx = lookup<void* (*)(std::size_t, int)>(lib, "mallocx");
    jemalloc.sdallocx = lookup<void (*)(void*, std::size_t, int)>(lib, "sdallocx");
    const auto mallctl = lookup<int (*)(const char*, void*, std::size_t*, void*, std::size_t)>(lib, "mallctl");
    if (!jemalloc.malloc || !jemalloc.free || !jemalloc.mallocx || !jemalloc.sdallocx || !mallctl) {
        jemalloc.error = "libjemalloc.so.2 lacks malloc/free/mallocx/sdallocx/mallctl";
        jemalloc.malloc = nullptr;
        return;
    }
    const char* version = nullptr;
    std::size_t len = sizeof version;
    if (mallctl("version", &version, &len, nullptr, 0) == 0 && version != nullptr)
        benchmark::AddCustomContext("jemalloc", version);
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

// peers.h: other allocators loaded next to spanmap in one process, for the
// benchmarks and examples that compare against them call by call.
//
// jemalloc (Debian's libjemalloc2) is opened with dlopen(RTLD_LOCAL): its
// malloc then serves only the calls made through the pointers found here, and
// the rest of the process keeps whatever malloc it started with. Running both
// allocators in one process, interleaved, puts them on the same machine state
// at the same moment, which separate processes cannot promise.
//
// The catch is thread-local storage. libjemalloc.so.2 keeps its thread state
// in the initial-exec (static) TLS model, and glibc can place such a library
// after start-up only in the small surplus of static TLS it reserved when the
// process began. When that surplus is too small dlopen fails with a message
// naming "static TLS"; the only cure is a bigger reservation, which glibc
// reads from GLIBC_TUNABLES at start-up. So load_jemalloc() re-executes the
// program once with glibc.rtld.optional_static_tls raised, marking the
// environment so that a second failure is reported instead of looping.
// Callers must therefore load jemalloc first thing in main(), before they
// have printed or started anything that a re-exec would repeat.
//
// Header-only, so that benchmarks (which link Google Benchmark) and examples
// (which do not) share it without a library of its own.
#pragma once

#include <dlfcn.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

namespace peers {

struct jemalloc_lib {
    void* (*malloc)(std::size_t) = nullptr;
    void (*free)(void*) = nullptr;
    void* (*mallocx)(std::size_t, int) = nullptr;           // jemalloc's own API
    void (*sdallocx)(void*, std::size_t, int) = nullptr;    // sized free
    std::string version;                                    // from mallctl("version")
    std::string error = "not loaded";                       // why malloc is null

    bool loaded() const { return malloc != nullptr; }
};

namespace detail {

// Set in the environment of the re-executed program; its presence means the
// bigger reservation was already tried.
inline constexpr const char* reexec_marker = "SPANMAP_BENCH_REEXECUTED";
// 16 KiB is ample for jemalloc's thread state and stays far below what glibc
// accepts for the tunable.
inline constexpr const char* static_tls_tunable = "glibc.rtld.optional_static_tls=16384";

template <class F>
F lookup(void* lib, const char* name) {
    return reinterpret_cast<F>(dlsym(lib, name));
}

}  // namespace detail

// argv: main's argv, used to re-execute the program when static TLS is short
// (see above); on that path the call does not return.
inline jemalloc_lib load_jemalloc(char** argv) {
    jemalloc_lib je;
    void* lib = dlopen("libjemalloc.so.2", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
        const char* why = dlerror();
        je.error = std::string("dlopen libjemalloc.so.2: ") + (why != nullptr ? why : "unknown error");
        if (why != nullptr && std::strstr(why, "static TLS") != nullptr &&
            std::getenv(detail::reexec_marker) == nullptr) {
            std::string tunables = detail::static_tls_tunable;
            if (const char* old = std::getenv("GLIBC_TUNABLES")) tunables = std::string(old) + ":" + tunables;
            setenv("GLIBC_TUNABLES", tunables.c_str(), 1);
            setenv(detail::reexec_marker, "1", 1);
            execv("/proc/self/exe", argv);  // returns only on failure
            je.error += " (re-executing with a larger static TLS reservation failed too)";
        }
        return je;
    }
    je.malloc = detail::lookup<void* (*)(std::size_t)>(lib, "malloc");
    je.free = detail::lookup<void (*)(void*)>(lib, "free");
    je.mallocx = detail::lookup<void* (*)(std::size_t, int)>(lib, "mallocx");
    je.sdallocx = detail::lookup<void (*)(void*, std::size_t, int)>(lib, "sdallocx");
    const auto mallctl = detail::lookup<int (*)(const char*, void*, std::size_t*, void*, std::size_t)>(lib, "mallctl");
    if (je.malloc == nullptr || je.free == nullptr || je.mallocx == nullptr || je.sdallocx == nullptr ||
        mallctl == nullptr) {
        // A half-found library is worse than none: report it as missing.
        jemalloc_lib missing;
        missing.error = "libjemalloc.so.2 lacks malloc/free/mallocx/sdallocx/mallctl";
        return missing;
    }
    const char* version = nullptr;
    std::size_t len = sizeof version;
    if (mallctl("version", &version, &len, nullptr, 0) == 0 && version != nullptr) je.version = version;
    je.error.clear();
    return je;
}

}  // namespace peers

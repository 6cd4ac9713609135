// A program for the pprof end-to-end tests (check_pprof.sh): it allocates
// from named functions, dumps its heap profile and exits. Built with frame
// pointers and debug information, its allocating functions never inlined, so
// that google-pprof can name them.
//
//   profile_program ratio <out>   3:1 in-use bytes from allocate_three_quarters
//                                 and allocate_one_quarter (different object
//                                 sizes, so each stack is unscaled differently),
//                                 and churn from allocate_and_free that is all
//                                 freed; rate 8 KiB, fixed seed.
//   profile_program total <out>   1 GiB allocated and freed from four call sites
//                                 (churn_64 ... churn_40000: small and large
//                                 objects) at the default rate,
//                                 fixed seed; prints the bytes allocated.
//   profile_program conf-ratio    as ratio, but profiling is started and dumped
//                                 by SPANMAP_CONF (prof:true, prof_prefix).
#include "profile.h"  // spanmap::detail::profile_seed

#include <spanmap/profile.h>
#include <spanmap/spanmap.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

constexpr std::size_t rounds = 2048;
void* kept[2 * rounds];

extern "C" __attribute__((noinline)) void* allocate_three_quarters() {
    void* p = spanmap_malloc(12288);  // a size class: 3 x 4096
    asm volatile("" ::"r"(p) : "memory");
    return p;
}

extern "C" __attribute__((noinline)) void* allocate_one_quarter() {
    void* p = spanmap_malloc(4096);
    asm volatile("" ::"r"(p) : "memory");
    return p;
}

extern "C" __attribute__((noinline)) void allocate_and_free() {
    void* p = spanmap_malloc(8192);
    asm volatile("" ::"r"(p) : "memory");
    spanmap_free(p);
}

void ratio() {
    for (std::size_t i = 0; i < rounds; ++i) {
        kept[2 * i] = allocate_three_quarters();
        kept[2 * i + 1] = allocate_one_quarter();
        allocate_and_free();
        allocate_and_free();
    }
}

// Allocates and frees objects of `size` bytes until `bytes` were allocated;
// returns how many were (usable sizes).
inline __attribute__((always_inline)) std::size_t churn(std::size_t size, std::size_t bytes) {
    const std::size_t usable = spanmap_good_size(size);
    std::size_t done = 0;
    for (; done < bytes; done += usable) {
        void* p = spanmap_malloc(size);
        asm volatile("" ::"r"(p) : "memory");
        spanmap_free(p);
    }
    return done;
}

extern "C" __attribute__((noinline)) std::size_t churn_64(std::size_t bytes) { return churn(64, bytes); }
extern "C" __attribute__((noinline)) std::size_t churn_1000(std::size_t bytes) { return churn(1000, bytes); }
extern "C" __attribute__((noinline)) std::size_t churn_8192(std::size_t bytes) { return churn(8192, bytes); }
extern "C" __attribute__((noinline)) std::size_t churn_40000(std::size_t bytes) { return churn(40000, bytes); }

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) return 2;
    if (std::strcmp(argv[1], "conf-ratio") == 0) {
        ratio();  // SPANMAP_CONF started the profiler and dumps it at exit
        return 0;
    }
    if (argc < 3) return 2;
    spanmap::detail::profile_seed(0x5eed);
    if (std::strcmp(argv[1], "ratio") == 0) {
        if (!spanmap::profile_start(8 << 10)) return 1;
        ratio();
    } else if (std::strcmp(argv[1], "total") == 0) {
        if (!spanmap::profile_start()) return 1;
        constexpr std::size_t quarter = std::size_t{256} << 20;
        std::size_t total = churn_64(quarter);
        total += churn_1000(quarter);
        total += churn_8192(quarter);
        total += churn_40000(quarter);
        std::printf("%zu\n", total);
    } else {
        return 2;
    }
    if (!spanmap::profile_dump(argv[2])) {
        std::perror("profile_dump");
        return 1;
    }
    return 0;
}

// heap_profile: sample this program's allocations and write a heap profile
// that google-pprof reads.
//
//   ./heap_profile heap.prof
//   google-pprof --text ./heap_profile heap.prof                 # in use now, by function
//   google-pprof --text --alloc_space ./heap_profile heap.prof   # everything ever allocated
//   google-pprof --svg ./heap_profile heap.prof > heap.svg       # the call graph (graphviz)
//
// A program that does not call the API is profiled the same way through
// SPANMAP_CONF=prof:true,prof_prefix:<path> (it writes <path>.<pid>.heap at
// exit), also when spanmap is its malloc via LD_PRELOAD=libspanmap_malloc.so.
#include <spanmap/alloc.h>
#include <spanmap/profile.h>

#include <cstdio>
#include <vector>

namespace {

using buffer = std::vector<char, spanmap::allocator<char>>;

// Long-lived records: 3 MiB of 1 KiB records and 1 MiB of 4 KiB index
// pages, in use when the profile is written.
__attribute__((noinline)) std::vector<buffer> load_records() {
    std::vector<buffer> kept;
    for (int i = 0; i < 3072; ++i) kept.emplace_back(1024, 'r');
    return kept;
}

__attribute__((noinline)) std::vector<buffer> build_index() {
    std::vector<buffer> kept;
    for (int i = 0; i < 256; ++i) kept.emplace_back(4096, 'i');
    return kept;
}

// Temporary buffers, freed at once: they appear only with --alloc_space.
__attribute__((noinline)) std::size_t scratch_work() {
    std::size_t sum = 0;
    for (int i = 0; i < 4096; ++i) {
        buffer tmp(16384, static_cast<char>(i));
        sum += static_cast<unsigned char>(tmp[i % tmp.size()]);
    }
    return sum;
}

}  // namespace

int main(int argc, char** argv) {
    const char* path = argc > 1 ? argv[1] : "heap.prof";
    // A sample every 16 KiB on average: this run keeps only 4 MiB, and the
    // default (512 KiB) is for long runs, where its overhead matters more
    // than a few hundred samples more or less.
    if (!spanmap::profile_start(16 << 10)) {
        std::perror("spanmap::profile_start (built without libunwind?)");
        return 1;
    }
    const std::vector<buffer> records = load_records();
    const std::vector<buffer> index = build_index();
    const std::size_t sum = scratch_work();
    if (!spanmap::profile_dump(path)) {
        std::perror(path);
        return 1;
    }
    spanmap::profile_stop();
    std::printf("%zu records, %zu index pages, checksum %zu\n", records.size(), index.size(), sum);
    std::printf("wrote %s; read it with\n  google-pprof --text %s %s\n", path, argv[0], path);
    return 0;
}

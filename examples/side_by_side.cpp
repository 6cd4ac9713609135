// side_by_side: a few seconds of spanmap next to its peers, wins and losses
// alike, printed as a short plain-text table with ratios.
//
//   malloc/free: spanmap's malloc replacement (libspanmap_malloc.so) against
//   glibc and, where installed, jemalloc, tcmalloc and mimalloc, on three
//   small cases: a lone malloc/free pair, a batch of 1000 blocks, and blocks
//   handed from one thread to another that frees them.
//
//   hash maps: spanmap::map against std::unordered_map and, where Abseil is
//   installed, absl::flat_hash_map: building a map, and looking keys up that
//   are there (hits) and that are not (misses).
//
// Every allocator serves a whole process, as it would in a program: this
// program re-executes itself once per allocator and round, with the
// allocator's shared object in LD_PRELOAD (glibc: nothing preloaded), and the
// child reports its timings and which library its malloc came from, so that a
// preload that silently failed cannot pass for a result. The peers are found
// where Debian installs them (libjemalloc.so.2, libtcmalloc_minimal.so.4,
// libmimalloc.so.2; JEMALLOC_SO, TCMALLOC_SO, MIMALLOC_SO name others). The
// maps run in this process, each with its default allocator and hash.
//
// It is a quick, indicative run, not the benchmark: a handful of rounds,
// medians. The contenders take turns, in an order that rotates every round,
// so that a noisy stretch of the machine falls on all of them. Nothing is
// judged or asserted: a shared or virtual machine can reverse any ratio on a
// bad second. The full measurement — more cases, latency percentiles, memory,
// Go's own map — is bench/run.sh, and its latest report bench/results/report.md.
//
// It uses spanmap's installed headers only.
#include <spanmap/map.h>

#ifdef SPANMAP_EXAMPLE_HAVE_ABSL
#include <absl/container/flat_hash_map.h>
#endif

#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

constexpr int rounds = 5;  // odd, so the median is one measured round
static_assert(rounds % 2 == 1);
// On a slow or busy machine the maps stop after fewer rounds (still odd)
// rather than keep the reader waiting.
constexpr int map_rounds_min = 3;
static_assert(map_rounds_min % 2 == 1 && map_rounds_min <= rounds);
constexpr double map_budget_seconds = 4.0;

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point start) {
    return std::chrono::duration<double>(clock_type::now() - start).count();
}

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// =============================== malloc/free =====================================
//
// The child: runs the three cases once after an untimed warm-up, prints
// "served-by <library> <ns> <ns> <ns>".

constexpr int n_cases = 3;
constexpr const char* case_names[n_cases] = {"lone pair", "batch of 1000", "2 threads"};

void* volatile sink;  // a block's address escapes here, so no call is optimised away

// One 32-byte block allocated, written and freed, over and over.
double lone_pair(std::size_t pairs) {
    const auto start = clock_type::now();
    for (std::size_t i = 0; i < pairs; ++i) {
        auto* p = static_cast<unsigned char*>(std::malloc(32));
        p[0] = 1;
        sink = p;
        std::free(p);
    }
    return seconds_since(start) / static_cast<double>(pairs);
}

// Everyday small sizes; 1000 blocks live at once, freed newest first.
constexpr std::size_t block_sizes[] = {16, 24, 32, 48, 64, 96, 128, 256};
constexpr std::size_t batch_blocks = 1000;

double batch(std::size_t batches) {
    std::array<void*, batch_blocks> blocks{};
    const auto start = clock_type::now();
    for (std::size_t b = 0; b < batches; ++b) {
        for (std::size_t i = 0; i < batch_blocks; ++i) {
            const std::size_t size = block_sizes[i % std::size(block_sizes)];
            auto* p = static_cast<unsigned char*>(std::malloc(size));
            p[0] = 1;
            p[size - 1] = 2;
            blocks[i] = p;
        }
        for (std::size_t i = batch_blocks; i-- > 0;) std::free(blocks[i]);
    }
    return seconds_since(start) / static_cast<double>(batches * batch_blocks);
}

// A producer allocates, a consumer thread frees: every block crosses threads,
// which is where per-thread caches pay (the free lands in the wrong cache).
// The handoff is a single-producer single-consumer ring.
double two_threads(std::size_t blocks) {
    constexpr std::size_t ring_size = 1024;
    std::vector<void*> ring(ring_size);
    std::atomic<std::size_t> head{0}, tail{0};  // head: next to fill; tail: next to free
    const auto start = clock_type::now();
    std::thread consumer([&] {
        for (std::size_t t = 0; t < blocks; ++t) {
            while (head.load(std::memory_order_acquire) == t) std::this_thread::yield();
            std::free(ring[t % ring_size]);
            tail.store(t + 1, std::memory_order_release);
        }
    });
    for (std::size_t h = 0; h < blocks; ++h) {
        const std::size_t size = block_sizes[h % std::size(block_sizes)];
        auto* p = static_cast<unsigned char*>(std::malloc(size));
        p[0] = 1;
        while (h - tail.load(std::memory_order_acquire) == ring_size) std::this_thread::yield();
        ring[h % ring_size] = p;
        head.store(h + 1, std::memory_order_release);
    }
    consumer.join();
    return seconds_since(start) / static_cast<double>(blocks);
}

// The file name of the object that defines the malloc this process calls.
std::string malloc_served_by() {
    Dl_info info{};
    void* m = ::dlsym(RTLD_DEFAULT, "malloc");
    if (m == nullptr || ::dladdr(m, &info) == 0 || info.dli_fname == nullptr) return "unknown";
    const char* slash = std::strrchr(info.dli_fname, '/');
    return slash != nullptr ? slash + 1 : info.dli_fname;
}

int malloc_child() {
    constexpr std::size_t pairs = 1'000'000, batches = 200, handed = 200'000;
    lone_pair(pairs / 10);  // warm-up: first pages, thread caches, lazy binding
    batch(batches / 10);
    two_threads(handed / 10);
    const double t[n_cases] = {lone_pair(pairs), batch(batches), two_threads(handed)};
    std::printf("served-by %s %.3f %.3f %.3f\n", malloc_served_by().c_str(), t[0] * 1e9, t[1] * 1e9, t[2] * 1e9);
    return 0;
}

// The parent: which allocators, and running the children.

struct contender {
    const char* name;
    std::string preload;  // "" for glibc
    const char* served_by;  // what the child's malloc_served_by() must contain
    std::string missing;    // why it is not compared; "" when it is
    std::vector<double> times[n_cases];
};

bool readable(const std::string& path) { return ::access(path.c_str(), R_OK) == 0; }

// A Debian package's library under the usual folders, or the path the
// environment variable names.
std::string find_library(const char* soname, const char* env) {
    if (const char* p = std::getenv(env); p != nullptr && *p != '\0') return readable(p) ? p : "";
    const std::string dirs[] = {
#ifdef SPANMAP_EXAMPLE_LIBRARY_ARCH
        "/usr/lib/" SPANMAP_EXAMPLE_LIBRARY_ARCH, "/lib/" SPANMAP_EXAMPLE_LIBRARY_ARCH,
#endif
        "/usr/lib", "/usr/local/lib", "/usr/lib64"};
    for (const std::string& d : dirs)
        if (readable(d + "/" + soname)) return d + "/" + soname;
    return "";
}

// Runs this program as a malloc child under `preload`; true with the line it printed.
bool run_child(const std::string& preload, std::string& line) {
    int fds[2];
    if (::pipe(fds) != 0) return false;
    std::fflush(stdout);
    const pid_t pid = ::fork();
    if (pid < 0) return false;
    if (pid == 0) {
        ::dup2(fds[1], STDOUT_FILENO);
        ::close(fds[0]);
        ::close(fds[1]);
        if (preload.empty()) ::unsetenv("LD_PRELOAD");
        else ::setenv("LD_PRELOAD", preload.c_str(), 1);
        char arg0[] = "side_by_side";
        char arg1[] = "--malloc-child";
        char* args[] = {arg0, arg1, nullptr};
        ::execv("/proc/self/exe", args);
        ::_exit(127);
    }
    ::close(fds[1]);
    line.clear();
    char buf[512];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) != 0;) {
        if (n < 0) break;
        line.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

void compare_malloc() {
    std::vector<contender> all;
    all.push_back({"spanmap", SPANMAP_EXAMPLE_MALLOC_SO, "spanmap_malloc", "", {}});
    all.push_back({"glibc", "", "libc.so", "", {}});
    struct peer {
        const char *name, *soname, *env;
    };
    for (const peer& p : {peer{"jemalloc", "libjemalloc.so.2", "JEMALLOC_SO"},
                          peer{"tcmalloc", "libtcmalloc_minimal.so.4", "TCMALLOC_SO"},
                          peer{"mimalloc", "libmimalloc.so.2", "MIMALLOC_SO"}}) {
        const std::string path = find_library(p.soname, p.env);
        all.push_back({p.name, path, p.name, path.empty() ? std::string(p.soname) + " not found" : "", {}});
    }
    if (!readable(all[0].preload)) all[0].missing = all[0].preload + " not built";

    for (int r = 0; r < rounds; ++r) {
        for (std::size_t k = 0; k < all.size(); ++k) {
            contender& c = all[(k + static_cast<std::size_t>(r)) % all.size()];
            if (!c.missing.empty()) continue;
            std::string line;
            char lib[256] = {};
            double t[n_cases] = {};
            if (!run_child(c.preload, line) ||
                std::sscanf(line.c_str(), "served-by %255s %lf %lf %lf", lib, &t[0], &t[1], &t[2]) != 4) {
                c.missing = "its run failed";
                continue;
            }
            if (std::strstr(lib, c.served_by) == nullptr) {
                c.missing = std::string("malloc came from ") + lib + ", not " + c.name;
                continue;
            }
            for (int i = 0; i < n_cases; ++i) c.times[i].push_back(t[i]);
        }
    }

    std::printf("malloc + free, each allocator serving a whole process (ns per block; medians of %d runs)\n",
                rounds);
    std::printf("  %-10s", "");
    for (const char* n : case_names) std::printf(" %14s", n);
    std::printf("     peer/spanmap, above 1: spanmap faster\n");
    const contender& s = all[0];
    for (const contender& c : all) {
        std::printf("  %-10s", c.name);
        if (!c.missing.empty()) {
            std::printf(" not compared: %s\n", c.missing.c_str());
            continue;
        }
        for (int i = 0; i < n_cases; ++i) std::printf(" %14.1f", median(c.times[i]));
        if (&c != &s && s.missing.empty()) {
            std::printf("    ");
            for (int i = 0; i < n_cases; ++i) std::printf(" %6.2f", median(c.times[i]) / median(s.times[i]));
        }
        std::printf("\n");
    }
    std::printf("\n");
}

// ================================= hash maps =====================================

constexpr std::size_t map_keys = 500'000;

constexpr std::uint64_t mix64(std::uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9;
    x ^= x >> 27;
    x *= 0x94d049bb133111eb;
    return x ^ (x >> 31);
}

constexpr int n_map_ops = 3;
constexpr const char* map_op_names[n_map_ops] = {"build", "lookup hit", "lookup miss"};

// Seconds per key: inserting every key into an empty map, looking every key
// up in another order, and looking up keys that are absent. The map is
// destroyed outside the timing. false if a key went missing or appeared.
template <class Map>
bool time_map(const std::vector<std::uint64_t>& keys, const std::vector<std::uint64_t>& hits,
              const std::vector<std::uint64_t>& misses, double (&out)[n_map_ops]) {
    Map m;
    auto start = clock_type::now();
    for (std::size_t i = 0; i < keys.size(); ++i) m.emplace(keys[i], keys[i] ^ i);
    out[0] = seconds_since(start) / static_cast<double>(keys.size());

    std::uint64_t found = 0;
    start = clock_type::now();
    for (std::uint64_t k : hits) {
        const auto it = m.find(k);
        if (it != m.end()) found += 1 + ((*it).second & 1);
    }
    out[1] = seconds_since(start) / static_cast<double>(hits.size());

    std::uint64_t wrong = 0;
    start = clock_type::now();
    for (std::uint64_t k : misses) wrong += m.find(k) != m.end();
    out[2] = seconds_since(start) / static_cast<double>(misses.size());
    // Read after the clocks stop: every hit found, no miss found, and a use of
    // the lookups that keeps them from being optimised away.
    return found >= keys.size() && wrong == 0 && m.size() == keys.size();
}

struct map_contender {
    const char* name;
    bool (*run)(const std::vector<std::uint64_t>&, const std::vector<std::uint64_t>&,
                const std::vector<std::uint64_t>&, double (&)[n_map_ops]);
    std::vector<double> times[n_map_ops];
};

void compare_maps() {
    // splitmix64's finaliser is a bijection on 64-bit words: keys 1..N and the
    // misses N+1..2N give random-looking, certainly distinct words.
    std::vector<std::uint64_t> keys(map_keys), misses(map_keys);
    for (std::size_t i = 0; i < map_keys; ++i) {
        keys[i] = mix64(i + 1);
        misses[i] = mix64(map_keys + i + 1);
    }
    std::mt19937_64 rng(42);  // fixed: the same lookup order every run
    std::vector<std::uint64_t> hits = keys;
    std::shuffle(hits.begin(), hits.end(), rng);

    std::vector<map_contender> all = {
        {"spanmap::map", time_map<spanmap::map<std::uint64_t, std::uint64_t>>, {}},
        {"std::unordered_map", time_map<std::unordered_map<std::uint64_t, std::uint64_t>>, {}},
#ifdef SPANMAP_EXAMPLE_HAVE_ABSL
        {"absl::flat_hash_map", time_map<absl::flat_hash_map<std::uint64_t, std::uint64_t>>, {}},
#endif
    };
    const auto start = clock_type::now();
    int done = 0;
    for (int r = 0; r < rounds; ++r) {
        if (r == map_rounds_min && seconds_since(start) / r * rounds > map_budget_seconds) break;
        for (std::size_t k = 0; k < all.size(); ++k) {
            map_contender& c = all[(k + static_cast<std::size_t>(r)) % all.size()];
            double t[n_map_ops];
            if (!c.run(keys, hits, misses, t)) {
                std::printf("  %s lost or invented keys: comparison stopped\n\n", c.name);
                return;
            }
            for (int i = 0; i < n_map_ops; ++i) c.times[i].push_back(t[i]);
        }
        done = r + 1;
    }

    std::printf("hash map, %zu random uint64_t keys, default hash and allocator (ns per key; medians of %d rounds)\n",
                map_keys, done);
    std::printf("  %-20s", "");
    for (const char* n : map_op_names) std::printf(" %12s", n);
    std::printf("     peer/spanmap, above 1: spanmap faster\n");
    for (const map_contender& c : all) {
        std::printf("  %-20s", c.name);
        for (int i = 0; i < n_map_ops; ++i) std::printf(" %12.1f", median(c.times[i]) * 1e9);
        if (&c != &all[0]) {
            std::printf("    ");
            for (int i = 0; i < n_map_ops; ++i) std::printf(" %6.2f", median(c.times[i]) / median(all[0].times[i]));
        }
        std::printf("\n");
    }
#ifndef SPANMAP_EXAMPLE_HAVE_ABSL
    std::printf("  %-20s not compared: built without Abseil (Debian: libabsl-dev)\n", "absl::flat_hash_map");
#endif
    std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 2 && std::strcmp(argv[1], "--malloc-child") == 0) return malloc_child();
    std::printf("side_by_side: spanmap next to glibc, jemalloc, tcmalloc, mimalloc and other hash maps\n\n");
    std::printf("A quick, indicative run on this machine: contenders take turns, medians shown. A busy or\n");
    std::printf("virtual machine moves these numbers.\n\n");
    std::fflush(stdout);
    compare_malloc();
    std::fflush(stdout);
    compare_maps();
    std::printf("The full comparison (more cases, latency, memory, Go's map) is bench/run.sh;\n");
    std::printf("its latest report is bench/results/report.md.\n");
    return 0;
}

// side_by_side: a few seconds of spanmap next to what it would replace —
// spanmap_malloc/spanmap_free next to jemalloc's malloc/free, and
// spanmap::map<uint64_t, uint64_t> next to std::unordered_map — printed as a
// short plain-text table.
//
// It is a quick, indicative run, not the benchmark: one process, a handful of
// rounds, medians. The contenders take turns (round by round, in alternating
// order) so that a noisy stretch of the machine falls on both rather than on
// whichever ran second, and the median ignores the round that was unlucky
// anyway. The full measurement — every allocator preloaded in turn, many
// cases, repetitions, RSS — is bench/run.sh.
//
// jemalloc is loaded with dlopen(RTLD_LOCAL) through bench/peers.h (shared
// with malloc_bench), so it serves only the calls timed here and this program
// keeps glibc's malloc for everything else. That may mean re-executing the
// program once, which is why it is loaded before anything is printed. Without
// jemalloc the table says so and the map comparison still runs.
//
// No result is judged: the ratios are printed, never asserted, since a shared
// or virtual machine can reverse any of them on a bad second.
#include <spanmap/map.h>
#include <spanmap/spanmap.h>

#include "peers.h"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <random>
#include <unordered_map>
#include <vector>

namespace {

constexpr int rounds = 5;  // odd, so the median is one measured round
static_assert(rounds % 2 == 1);
// The maps take about a second per round. On a slow or busy machine they stop
// after fewer rounds (still odd) rather than keep the reader waiting: after
// map_rounds_min, the remaining rounds run only if all of them would still
// end within map_budget.
constexpr int map_rounds_min = 3;
static_assert(map_rounds_min % 2 == 1 && map_rounds_min <= rounds);
constexpr double map_budget_seconds = 5.0;

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point start) {
    return std::chrono::duration<double>(clock_type::now() - start).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// --- malloc/free -----------------------------------------------------------------

// Sizes of everyday small objects; the batch cycles through them.
constexpr std::size_t block_sizes[] = {16, 24, 32, 48, 64, 96, 128, 256};
constexpr std::size_t batch_blocks = 1000;
constexpr std::size_t batches_per_round = 300;  // 300,000 pairs: a few ms per contender

struct allocator_calls {
    void* (*malloc)(std::size_t);
    void (*free)(void*);
};

void* spanmap_malloc_fn(std::size_t n) { return spanmap_malloc(n); }
void spanmap_free_fn(void* p) { spanmap_free(p); }

// Seconds per malloc/free pair; false on an allocation failure.
bool time_batches(const allocator_calls& a, std::vector<void*>& blocks, double& per_pair) {
    const auto start = clock_type::now();
    for (std::size_t b = 0; b < batches_per_round; ++b) {
        for (std::size_t i = 0; i < batch_blocks; ++i) {
            const std::size_t size = block_sizes[i % std::size(block_sizes)];
            auto* p = static_cast<unsigned char*>(a.malloc(size));
            if (p == nullptr) return false;
            // Used, as a program would use it: the pages are really touched.
            p[0] = 1;
            p[size - 1] = 2;
            blocks[i] = p;
        }
        for (std::size_t i = batch_blocks; i-- > 0;) a.free(blocks[i]);
    }
    per_pair = seconds_since(start) / static_cast<double>(batches_per_round * batch_blocks);
    return true;
}

void compare_malloc(const peers::jemalloc_lib& je) {
    std::printf("malloc + free, one thread: %zu blocks of 16-256 bytes, freed newest first (ns per pair)\n",
                batch_blocks);
    const allocator_calls spanmap_calls{spanmap_malloc_fn, spanmap_free_fn};
    std::vector<void*> blocks(batch_blocks);
    std::vector<double> spanmap_times;
    std::vector<double> jemalloc_times;
    double t = 0;
    // One untimed round each, so that neither pays for its first pages in the table.
    if (!time_batches(spanmap_calls, blocks, t)) {
        std::printf("  spanmap_malloc failed; skipped\n\n");
        return;
    }
    if (je.loaded()) {
        const allocator_calls jemalloc_calls{je.malloc, je.free};
        if (!time_batches(jemalloc_calls, blocks, t)) {
            std::printf("  jemalloc's malloc failed; skipped\n\n");
            return;
        }
        for (int r = 0; r < rounds; ++r) {
            const bool spanmap_first = r % 2 == 0;
            for (int turn = 0; turn < 2; ++turn) {
                const bool spanmap_turn = (turn == 0) == spanmap_first;
                time_batches(spanmap_turn ? spanmap_calls : jemalloc_calls, blocks, t);
                (spanmap_turn ? spanmap_times : jemalloc_times).push_back(t);
            }
        }
    } else {
        for (int r = 0; r < rounds; ++r) {
            time_batches(spanmap_calls, blocks, t);
            spanmap_times.push_back(t);
        }
    }
    const double s = median(spanmap_times);
    std::printf("  %-20s %8.1f\n", "spanmap", s * 1e9);
    if (je.loaded()) {
        const double j = median(jemalloc_times);
        std::printf("  %-20s %8.1f    jemalloc/spanmap %.2f   (jemalloc %s)\n", "jemalloc", j * 1e9, j / s,
                    je.version.empty() ? "version unknown" : je.version.c_str());
    } else {
        std::printf("  %-20s %8s    not compared: %s\n", "jemalloc", "-", je.error.c_str());
    }
    std::printf("\n");
}

// --- hash maps -------------------------------------------------------------------

constexpr std::size_t map_keys = 1'000'000;

constexpr std::uint64_t mix64(std::uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9;
    x ^= x >> 27;
    x *= 0x94d049bb133111eb;
    return x ^ (x >> 31);
}

struct map_times {
    double insert = 0;  // seconds per key
    double lookup = 0;
};

// Inserts every key into an empty map, then looks every key up in another
// order; the map is destroyed outside the timing. false if a key went missing.
template <class Map>
bool time_map(const std::vector<std::uint64_t>& keys, const std::vector<std::uint64_t>& lookup_order,
              map_times& out) {
    Map m;
    auto start = clock_type::now();
    for (std::size_t i = 0; i < keys.size(); ++i) m.emplace(keys[i], keys[i] ^ i);
    out.insert = seconds_since(start) / static_cast<double>(keys.size());

    std::uint64_t found = 0;
    start = clock_type::now();
    for (std::uint64_t k : lookup_order) {
        const auto it = m.find(k);
        if (it != m.end()) found += 1 + ((*it).second & 1);
    }
    out.lookup = seconds_since(start) / static_cast<double>(lookup_order.size());
    // Read after the clock stops: a check that every key was there, and a use
    // of the lookups that keeps them from being optimised away.
    return found >= keys.size() && m.size() == keys.size();
}

void compare_maps() {
    std::printf("hash map, %zu random uint64_t keys (ns per key)\n", map_keys);
    // splitmix64's finaliser is a bijection on 64-bit words, so these keys are
    // random-looking and certainly distinct: both maps end with map_keys entries.
    std::vector<std::uint64_t> keys(map_keys);
    for (std::size_t i = 0; i < map_keys; ++i) keys[i] = mix64(i + 1);
    std::mt19937_64 rng(42);  // fixed: the same lookup order every run
    std::vector<std::uint64_t> lookup_order = keys;
    std::shuffle(lookup_order.begin(), lookup_order.end(), rng);

    using spanmap_map = spanmap::map<std::uint64_t, std::uint64_t>;
    using std_map = std::unordered_map<std::uint64_t, std::uint64_t>;
    std::vector<double> spanmap_insert, spanmap_lookup, std_insert, std_lookup;
    map_times t;
    const auto start = clock_type::now();
    int done = 0;
    for (int r = 0; r < rounds; ++r) {
        if (r == map_rounds_min && seconds_since(start) / r * rounds > map_budget_seconds) break;
        const bool spanmap_first = r % 2 == 0;
        for (int turn = 0; turn < 2; ++turn) {
            const bool spanmap_turn = (turn == 0) == spanmap_first;
            const bool ok = spanmap_turn ? time_map<spanmap_map>(keys, lookup_order, t)
                                         : time_map<std_map>(keys, lookup_order, t);
            if (!ok) {
                std::printf("  %s lost keys: comparison stopped\n\n",
                            spanmap_turn ? "spanmap::map" : "std::unordered_map");
                return;
            }
            (spanmap_turn ? spanmap_insert : std_insert).push_back(t.insert);
            (spanmap_turn ? spanmap_lookup : std_lookup).push_back(t.lookup);
        }
        done = r + 1;
    }
    const double si = median(spanmap_insert), sl = median(spanmap_lookup);
    const double ui = median(std_insert), ul = median(std_lookup);
    std::printf("  %-20s %8s %8s   (%d rounds each)\n", "", "insert", "lookup", done);
    std::printf("  %-20s %8.1f %8.1f\n", "spanmap::map", si * 1e9, sl * 1e9);
    std::printf("  %-20s %8.1f %8.1f\n", "std::unordered_map", ui * 1e9, ul * 1e9);
    std::printf("  %-20s %8.2f %8.2f\n", "std/spanmap", ui / si, ul / sl);
    std::printf("\n");
}

}  // namespace

int main(int, char** argv) {
    const peers::jemalloc_lib je = peers::load_jemalloc(argv);  // first: it may re-execute the program
    std::printf("side_by_side: spanmap next to jemalloc and std::unordered_map\n\n");
    std::printf("A quick, indicative run: up to %d rounds per contender, taken in turns; medians shown.\n",
                rounds);
    std::printf("Ratios above 1 mean spanmap is faster. A busy or virtual machine moves these numbers;\n");
    std::printf("the full benchmark (every allocator, many cases, repetitions, memory) is bench/run.sh.\n\n");
    std::fflush(stdout);
    compare_malloc(je);
    std::fflush(stdout);
    compare_maps();
    return 0;
}

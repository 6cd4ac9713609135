// map_opcount: one pass of each map operation, for an instruction counter.
//
// Timing on a shared machine wanders by tens of percent; instructions per
// operation do not, so a change to the insert or erase path is judged first
// by this count and then by map_peers_bench's times. Each (map, op) is a
// function of its own, never inlined, so callgrind's inclusive cost of that
// function is the op's whole cost (allocation included):
//
//   valgrind --tool=callgrind --callgrind-out-file=cg.out build/bench/map_opcount 10000
//   callgrind_annotate --inclusive=yes cg.out | grep 'run_'
//
// divided by n gives instructions per op. Ops, on n random u64 keys
// (splitmix64, as map_peers_bench) and n 16-32-byte string keys:
//   insert  a new map, the n keys inserted from empty (destruction not included)
//   hit     each key looked up once, in a shuffled order
//   miss    n absent keys looked up
//   erase   each key erased by key, in the shuffled order
//
// Instructions per op, g++ 12 -O2 (RelWithDebInfo), x86-64 with SSE2: before
// the insert/erase work of issue 14, after it, and on 2026-12-06 (the probe's
// prefetch of the slot lines included, two instructions), with
// absl::flat_hash_map 20220623 beside them:
//
//   n = 1e4          insert   erase   hit    miss
//   u64  before       275.3   113.4   52.4   45.2
//   u64  after        217.7    82.0   52.4   45.2
//   u64  2026-12-06   209.0    83.0   49.4   43.3
//   u64  2026-12-07   211.1   106.8      —      —
//   u64  absl         162.5    73.3   40.1   33.4
//   str  before       633.6   332.5  138.5  100.3
//   str  after        573.9   306.1  138.5  100.3
//   str  2026-12-06   552.3   290.2  128.7   90.5
//   str  2026-12-07   530.7   306.8  130.4   81.2
//   str  absl         723.1   361.9  195.0  132.5
//
//   n = 1e5          insert   erase   hit    miss
//   u64  before       251.5   112.7   52.8   46.8
//   u64  after        194.5    82.0   52.8   46.8
//   u64  2026-12-06   187.0    82.9   49.8   44.8
//   u64  2026-12-07   188.7   107.8   49.9   44.8
//   u64  absl         150.2    70.2   40.5   37.2
//
// On 2026-12-07 erase took 24 more instructions to branch on nothing while
// the array fits the cache (detail::erase_tophash): the branch it replaced
// was missed on a third of the erases, and a shuffled erase-all of 10k u64
// keys went from 10.8 to 7.4 ns an erase. Fewer instructions are not always
// less time; map_peers_bench has the last word.
//
// An insert of a u64 key still pays for evacuation about 100 instructions
// (1.33 entries moved per insert, each hashed again), Abseil's resize about 58.
#include <spanmap/map.h>

#if defined(SPANMAP_BENCH_HAVE_ABSL)
#include <absl/container/flat_hash_map.h>
#endif

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

namespace {

std::uint64_t splitmix64(std::uint64_t& s) {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

template <class K>
K make_key(std::uint64_t x);
template <>
std::uint64_t make_key<std::uint64_t>(std::uint64_t x) {
    return x;
}
template <>
std::string make_key<std::string>(std::uint64_t x) {
    std::string s(16 + x % 17, 'k');
    for (std::size_t i = 0; i < s.size() && x; ++i, x >>= 4) s[i] = static_cast<char>('a' + (x & 15));
    return s;
}

template <class K>
struct keys {
    std::vector<K> present, absent, shuffled;
    explicit keys(std::size_t n) {
        std::uint64_t s1 = 1, s2 = 2, s3 = 3;
        for (std::size_t i = 0; i < n; ++i) present.push_back(make_key<K>(splitmix64(s1)));
        for (std::size_t i = 0; i < n; ++i) absent.push_back(make_key<K>(splitmix64(s2)));
        shuffled = present;
        for (std::size_t i = n; i > 1; --i) std::swap(shuffled[i - 1], shuffled[splitmix64(s3) % i]);
    }
};

volatile std::uint64_t sink;

template <class Map, class K>
[[gnu::noinline]] void run_insert(Map& m, const keys<K>& k) {
    for (std::size_t i = 0; i < k.present.size(); ++i) m.emplace(k.present[i], i);
}
template <class Map, class K>
[[gnu::noinline]] void run_hit(Map& m, const keys<K>& k) {
    std::uint64_t s = 0;
    for (const K& key : k.shuffled) s += m.find(key)->second;
    sink = s;
}
template <class Map, class K>
[[gnu::noinline]] void run_miss(Map& m, const keys<K>& k) {
    std::uint64_t s = 0;
    for (const K& key : k.absent) s += m.find(key) == m.end();
    sink = s;
}
template <class Map, class K>
[[gnu::noinline]] void run_erase(Map& m, const keys<K>& k) {
    std::uint64_t s = 0;
    for (const K& key : k.shuffled) s += m.erase(key);
    sink = s;
}

template <class Map, class K>
void all_ops(const keys<K>& k) {
    Map m;
    run_insert(m, k);
    run_hit(m, k);
    run_miss(m, k);
    run_erase(m, k);
    if (!m.empty()) std::abort();
}

template <class K>
void both(std::size_t n) {
    const keys<K> k(n);
    all_ops<spanmap::map<K, std::uint64_t>>(k);
#if defined(SPANMAP_BENCH_HAVE_ABSL)
    all_ops<absl::flat_hash_map<K, std::uint64_t>>(k);
#endif
}

}  // namespace

int main(int argc, char** argv) {
    const std::size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 10000;
    const std::string which = argc > 2 ? argv[2] : "all";
    if (which != "str") both<std::uint64_t>(n);
    if (which != "u64") both<std::string>(n);
    return 0;
}

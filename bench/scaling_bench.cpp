// scaling_bench: allocator throughput against the number of threads.
//
// A plain malloc/free program, linked with nothing of spanmap's: which
// allocator answers is decided by LD_PRELOAD when it starts (nothing for
// glibc; libspanmap_malloc.so, libjemalloc.so.2, libtcmalloc_minimal.so.4 or
// libmimalloc.so.2), as for alloc_bench, so that the same binary can be copied
// with the libraries to a machine with more cores and no compiler
// (bench/scaling.sh --pack). The context names the file `malloc` came from
// (malloc_library), so a preload that did not take is seen, not believed.
//
// Why a program of its own rather than more Google Benchmark cases: a case
// here is a fixed stretch of wall time during which N threads run free, and
// its figure is operations per second of the whole process. Google
// Benchmark's threaded mode times each thread's iterations separately and
// stops them one by one, which hides exactly the convoys and lock hand-offs
// that scaling is about.
//
// Workloads (the names are read by bench/report.py and bench/scaling.sh: keep
// them). "op" is one allocation, which is also freed once, by someone, so an op
// is a malloc and its free.
//
//   churn     each thread keeps a window of 1024 live blocks of 16 B–2 KiB
//             (log-uniform, so small sizes dominate as in real programs) and
//             replaces one at random per op; one block in 64 is not freed by
//             its thread but pushed onto the next thread's inbox (a lock-free
//             list threaded through the blocks themselves), which that thread
//             empties and frees every 64 ops. The cross-thread free path and
//             the thread cache under a realistic mix.
//   prodcons  threads in pairs: one mallocs 16 B–2 KiB blocks, the other frees
//             them, through a single-producer single-consumer ring of 1024
//             slots (two cache-line-separated indices, each side caching the
//             other's, so a slot costs a store and rarely a shared load: the
//             ring is not the bottleneck). Every free is a remote free; blocks
//             flow one way, so a thread cache that only grows on one side and
//             only shrinks on the other is what is measured. Needs an even
//             thread count (others are skipped).
//   larson    larson-style server: each thread owns a table of 1000 blocks of
//             16 B–1 KiB (uniform, as larson's usual 8–1000) and replaces a
//             random one per op, so lifetimes are random (geometric, 1000
//             ops on average); after every 1000 ops it swaps its whole table
//             for the one another thread left in a shared mailbox (one atomic
//             exchange; there is one table more than threads). A block in a
//             table that changes hands survives a round with probability
//             (1 - 1/1000)^1000 = 1/e, so about 63% of the frees in a round are
//             of blocks another thread allocated (at two threads and more).
//             Larson starts a new thread per round to the same end; swapping
//             tables keeps thread creation out of the figure.
//   large     each thread keeps a window of 8 blocks of 32 KiB–4 MiB
//             (log-uniform) and replaces one at random per op: large objects,
//             the page heap and whatever each allocator does to give memory
//             back, all freed locally.
//
// Every block carries its size in its first word and a check byte in its last,
// both verified before it is freed (a churn block handed to another thread
// carries the inbox link in its second word, so its trailer is checked before
// it is handed over): the first and last cache lines are touched
// as a header and trailer would be, and an allocator that hands out a wrong or
// overlapping block stops the run instead of producing a fast figure. Blocks
// are not filled: the figure is the allocator's, not memset's.
//
// Output: --out FILE gets a JSON document in Google Benchmark's shape (a
// "context" object and a "benchmarks" list), one entry per line so that the
// runner script can read it with awk on a machine without Python:
//   name "<workload>/<threads>", workload, threads, iterations (ops),
//   real_time (ns per op of the process, time_unit "ns"), items_per_second
//   (ops per second; the median over --rounds), rounds, spread
//   ((max - min) / median over the rounds).
// A short table goes to stdout either way.

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
constexpr std::size_t kCacheLine = 64;

// ------------------------------------------------------------------- blocks

struct rng {
    std::uint64_t s;
    std::uint64_t next() {  // splitmix64: fast, and good enough to pick sizes and slots
        std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    std::size_t below(std::size_t n) { return static_cast<std::size_t>(next() % n); }
    // Log-uniform in [lo, hi]: every power of two in range is as likely.
    std::size_t log_uniform(unsigned lo_shift, unsigned hi_shift) {
        const unsigned e = lo_shift + static_cast<unsigned>(below(hi_shift - lo_shift));
        const std::size_t lo = std::size_t{1} << e;
        return lo + below(lo + 1);
    }
};

unsigned char check_byte(std::size_t size) { return static_cast<unsigned char>((size * 0x9d) >> 3 | 1); }

[[noreturn]] void die(const char* what, void* p) {
    std::fprintf(stderr, "scaling_bench: %s (block %p)\n", what, p);
    std::abort();
}

void* make(std::size_t size) {
    auto* p = static_cast<unsigned char*>(std::malloc(size));
    if (p == nullptr) die("malloc returned NULL", p);
    std::memcpy(p, &size, sizeof size);
    p[size - 1] = check_byte(size);
    return p;
}

std::size_t size_of(void* p) {
    std::size_t size;
    std::memcpy(&size, p, sizeof size);
    return size;
}

// Checks the trailer; the header is checked by release, which needs it.
void check_tail(void* p) {
    const std::size_t size = size_of(p);
    if (size < 16 || size > (std::size_t{64} << 20)) die("block header overwritten", p);
    if (static_cast<unsigned char*>(p)[size - 1] != check_byte(size)) die("block trailer overwritten", p);
}

void release(void* p) {
    check_tail(p);
    std::free(p);
}

// --------------------------------------------------------------- a case run

// A thread's op count, published after every batch so that the driver can
// read it while the thread runs (to start the clock after the warm-up).
struct alignas(kCacheLine) thread_result {
    std::atomic<std::uint64_t> ops{0};
    void publish(std::uint64_t n) { ops.store(n, std::memory_order_relaxed); }
};

// What every thread of a case shares: the start and stop signals and the
// latches that frame the timed part. Every thread sets up (fills its window)
// before the start line; the threads then run a warm-up of a fifth of the case's
// time, uncounted, so that first page faults and thread-cache growth are
// not in the figure; the clock runs from the end of the warm-up until every
// thread has seen the stop flag and published its count. Cleanup (draining
// inboxes, freeing windows) comes after.
struct run_control {
    explicit run_control(int threads) : ready(threads), stopped(threads) {}
    std::latch ready, stopped;
    std::atomic<bool> go{false};
    std::atomic<bool> stop{false};

    void start_line() {
        ready.count_down();
        while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
    }
    bool running() const { return !stop.load(std::memory_order_relaxed); }
};

// Spins briefly, then yields: the 2-core machines this also runs on have more
// threads than cores in a loaded moment, and a pure spin would starve the
// thread it waits for.
struct backoff {
    int n = 0;
    void pause() {
        if (++n < 64) return;
        std::this_thread::yield();
    }
};

// ------------------------------------------------------------------ churn

// A thread's inbox: blocks other threads hand it to free. Pushes are a CAS on
// the head; the owner takes the whole list with one exchange, so there is no
// ABA (nothing is ever popped singly). The link lives in the block's second
// word, after its size.
struct alignas(kCacheLine) inbox {
    std::atomic<void*> head{nullptr};

    static void*& link(void* p) { return *reinterpret_cast<void**>(static_cast<char*>(p) + sizeof(std::size_t)); }

    void push(void* p) {
        void* h = head.load(std::memory_order_relaxed);
        do {
            link(p) = h;
        } while (!head.compare_exchange_weak(h, p, std::memory_order_release, std::memory_order_relaxed));
    }
    void free_all() {
        void* p = head.exchange(nullptr, std::memory_order_acquire);
        while (p != nullptr) {
            void* next = link(p);
            std::free(p);  // its trailer was checked before it was handed over
            p = next;
        }
    }
};

void churn_thread(int id, int threads, run_control& rc, std::vector<inbox>& inboxes, thread_result& out) {
    constexpr std::size_t kWindow = 1024;
    constexpr unsigned kHandOff = 64;  // one block in 64 is freed by the next thread
    constexpr unsigned kDrain = 64;    // the inbox is emptied every 64 ops
    rng r{0x5eed0000u + static_cast<std::uint64_t>(id)};
    std::vector<void*> window(kWindow);
    for (auto& p : window) p = make(r.log_uniform(4, 11));
    inbox& next = inboxes[static_cast<std::size_t>((id + 1) % threads)];
    inbox& mine = inboxes[static_cast<std::size_t>(id)];
    std::uint64_t ops = 0;
    rc.start_line();
    while (rc.running()) {
        for (unsigned k = 0; k < kDrain; ++k) {
            void*& slot = window[r.below(kWindow)];
            if ((r.next() & (kHandOff - 1)) == 0) {
                check_tail(slot);
                next.push(slot);
            } else {
                release(slot);
            }
            slot = make(r.log_uniform(4, 11));
        }
        mine.free_all();
        ops += kDrain;
        out.publish(ops);
    }
    rc.stopped.arrive_and_wait();  // nobody pushes any more
    mine.free_all();
    for (void* p : window) release(p);
}

// --------------------------------------------------------------- prodcons

// Single-producer single-consumer ring. Each index is written by one side
// only; each side keeps a private copy of the other's index and reloads it
// only when the ring looks full (producer) or empty (consumer).
struct spsc_ring {
    static constexpr std::size_t kSlots = 1024;
    static_assert((kSlots & (kSlots - 1)) == 0, "index wrap-around uses a mask");
    alignas(kCacheLine) std::atomic<std::size_t> tail{0};  // producer's
    alignas(kCacheLine) std::size_t head_cache = 0;        // producer's copy of head
    alignas(kCacheLine) std::atomic<std::size_t> head{0};  // consumer's
    alignas(kCacheLine) std::size_t tail_cache = 0;        // consumer's copy of tail
    alignas(kCacheLine) std::atomic<bool> done{false};
    alignas(kCacheLine) void* slots[kSlots] = {};

    void push(void* p) {
        const std::size_t t = tail.load(std::memory_order_relaxed);
        backoff b;
        while (t - head_cache == kSlots) {
            head_cache = head.load(std::memory_order_acquire);
            if (t - head_cache == kSlots) b.pause();
        }
        slots[t & (kSlots - 1)] = p;
        tail.store(t + 1, std::memory_order_release);
    }
    // nullptr when empty.
    void* pop() {
        const std::size_t h = head.load(std::memory_order_relaxed);
        if (h == tail_cache) {
            tail_cache = tail.load(std::memory_order_acquire);
            if (h == tail_cache) return nullptr;
        }
        void* p = slots[h & (kSlots - 1)];
        head.store(h + 1, std::memory_order_release);
        return p;
    }
};

void producer_thread(int pair, run_control& rc, spsc_ring& ring, thread_result& out) {
    rng r{0x9d0d0000u + static_cast<std::uint64_t>(pair)};
    std::uint64_t ops = 0;
    rc.start_line();
    while (rc.running()) {
        for (int k = 0; k < 64; ++k) ring.push(make(r.log_uniform(4, 11)));
        ops += 64;
        out.publish(ops);
    }
    ring.done.store(true, std::memory_order_release);
    rc.stopped.arrive_and_wait();
}

void consumer_thread(run_control& rc, spsc_ring& ring) {
    rc.start_line();
    backoff b;
    for (;;) {
        if (void* p = ring.pop()) {
            release(p);
            b.n = 0;
            continue;
        }
        // done is set after the producer's last push, so one more look at the
        // ring after seeing it empties the ring for good.
        if (ring.done.load(std::memory_order_acquire)) {
            while (void* p = ring.pop()) release(p);
            break;
        }
        b.pause();
    }
    rc.stopped.arrive_and_wait();
}

// ----------------------------------------------------------------- larson

struct larson_table {
    static constexpr std::size_t kBlocks = 1000;
    void* blocks[kBlocks];
};

std::size_t larson_size(rng& r) { return 16 + r.below(1024 - 16 + 1); }

void larson_fill(larson_table* t, rng& r) {
    for (auto& p : t->blocks) p = make(larson_size(r));
}

void larson_thread(int id, run_control& rc, std::atomic<larson_table*>& mailbox, larson_table* table,
                   thread_result& out) {
    constexpr unsigned kRound = larson_table::kBlocks;  // ops between two table swaps
    rng r{0x1a750000u + static_cast<std::uint64_t>(id)};
    larson_fill(table, r);
    std::uint64_t ops = 0;
    rc.start_line();
    while (rc.running()) {
        for (unsigned k = 0; k < kRound; ++k) {
            void*& slot = table->blocks[r.below(larson_table::kBlocks)];
            release(slot);
            slot = make(larson_size(r));
        }
        ops += kRound;
        out.publish(ops);
        table = mailbox.exchange(table, std::memory_order_acq_rel);
    }
    rc.stopped.arrive_and_wait();
    for (void* p : table->blocks) release(p);
    delete table;
}

// ------------------------------------------------------------------ large

void large_thread(int id, run_control& rc, thread_result& out) {
    constexpr std::size_t kWindow = 8;
    rng r{0x1a96e000u + static_cast<std::uint64_t>(id)};
    void* window[kWindow];
    for (auto& p : window) p = make(r.log_uniform(15, 22));
    std::uint64_t ops = 0;
    rc.start_line();
    while (rc.running()) {
        for (int k = 0; k < 16; ++k) {
            void*& slot = window[r.below(kWindow)];
            release(slot);
            slot = make(r.log_uniform(15, 22));
        }
        ops += 16;
        out.publish(ops);
    }
    rc.stopped.arrive_and_wait();
    for (void* p : window) release(p);
}

// ----------------------------------------------------------------- driver

// Ops per second of one case, one run; 0 when the case does not apply.
double run_case(std::string_view workload, int threads, double seconds) {
    if (workload == "prodcons" && (threads < 2 || threads % 2 != 0)) return 0;
    run_control rc(threads);
    std::vector<thread_result> results(static_cast<std::size_t>(threads));
    std::vector<std::thread> pool;
    std::vector<inbox> inboxes(workload == "churn" ? static_cast<std::size_t>(threads) : 0);
    std::vector<spsc_ring*> rings;
    std::atomic<larson_table*> mailbox{nullptr};
    if (workload == "larson") {
        rng r{0x1a75ffffu};
        mailbox.store(new larson_table);
        larson_fill(mailbox.load(), r);
    }
    for (int i = 0; i < threads; ++i) {
        auto& res = results[static_cast<std::size_t>(i)];
        if (workload == "churn") {
            pool.emplace_back(churn_thread, i, threads, std::ref(rc), std::ref(inboxes), std::ref(res));
        } else if (workload == "prodcons") {
            if (i % 2 == 0) {
                rings.push_back(new spsc_ring);
                pool.emplace_back(producer_thread, i / 2, std::ref(rc), std::ref(*rings.back()), std::ref(res));
            } else {
                pool.emplace_back(consumer_thread, std::ref(rc), std::ref(*rings.back()));
            }
        } else if (workload == "larson") {
            pool.emplace_back(larson_thread, i, std::ref(rc), std::ref(mailbox), new larson_table, std::ref(res));
        } else {
            pool.emplace_back(large_thread, i, std::ref(rc), std::ref(res));
        }
    }
    const auto count = [&] {
        std::uint64_t n = 0;
        for (const auto& res : results) n += res.ops.load(std::memory_order_relaxed);
        return n;
    };
    rc.ready.wait();
    rc.go.store(true, std::memory_order_release);
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds / 5));
    const std::uint64_t ops0 = count();
    const auto t0 = clock_type::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    rc.stop.store(true, std::memory_order_relaxed);
    rc.stopped.wait();
    const auto t1 = clock_type::now();
    const std::uint64_t ops1 = count();
    for (auto& t : pool) t.join();
    for (auto* ring : rings) delete ring;
    if (larson_table* spare = mailbox.load()) {
        for (void* p : spare->blocks) release(p);
        delete spare;
    }
    return static_cast<double>(ops1 - ops0) / std::chrono::duration<double>(t1 - t0).count();
}

std::string malloc_library() {
    void* sym = dlsym(RTLD_DEFAULT, "malloc");
    Dl_info info{};
    if (sym == nullptr || dladdr(sym, &info) == 0 || info.dli_fname == nullptr) return "unknown";
    return info.dli_fname;
}

// JSON string body: the values here are file names and user-given labels.
std::string json_escape(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out += c;
        }
    }
    return out;
}

std::vector<std::string> split(std::string_view s, char sep) {
    std::vector<std::string> out;
    while (!s.empty()) {
        const auto i = s.find(sep);
        out.emplace_back(s.substr(0, i));
        if (i == std::string_view::npos) break;
        s.remove_prefix(i + 1);
    }
    return out;
}

int usage(FILE* to, int rc) {
    std::fprintf(to,
                 "usage: scaling_bench [options]\n"
                 "  --threads LIST     thread counts (default 1,2,4,... up to nproc, and nproc)\n"
                 "  --workloads LIST   of churn,prodcons,larson,large (default all)\n"
                 "  --time S           seconds per case and round, after a warm-up of a fifth of that\n"
                 "                     (default 0.5)\n"
                 "  --rounds N         runs of every case; the figure is their median (default 1)\n"
                 "  --out FILE         write the results as JSON (Google Benchmark's shape)\n"
                 "  --context K=V,...  extra context keys for the JSON (e.g. run_allocator=jemalloc)\n");
    return rc;
}

struct result {
    std::string workload;
    int threads;
    double ops_per_s;  // median over rounds
    double spread;     // (max - min) / median; 0 with one round
    int rounds;
    double seconds;
};

}  // namespace

int main(int argc, char** argv) {
    const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    const int nproc = ncpu > 0 ? static_cast<int>(ncpu) : 1;
    std::vector<int> threads;
    std::vector<std::string> workloads = {"churn", "prodcons", "larson", "large"};
    double seconds = 0.5;
    int rounds = 1;
    std::string out_path;
    std::vector<std::pair<std::string, std::string>> context;

    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        std::string value;
        if (arg == "-h" || arg == "--help") return usage(stdout, 0);
        if (const auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
            value = std::string(arg.substr(eq + 1));
            arg = arg.substr(0, eq);
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            std::fprintf(stderr, "scaling_bench: %s needs a value\n", argv[i]);
            return usage(stderr, 2);
        }
        if (arg == "--threads") {
            threads.clear();
            for (const auto& t : split(value, ',')) {
                const int n = std::atoi(t.c_str());
                if (n < 1 || n > 1024) {
                    std::fprintf(stderr, "scaling_bench: bad thread count '%s'\n", t.c_str());
                    return 2;
                }
                threads.push_back(n);
            }
        } else if (arg == "--workloads") {
            workloads = split(value, ',');
            for (const auto& w : workloads) {
                if (w != "churn" && w != "prodcons" && w != "larson" && w != "large") {
                    std::fprintf(stderr, "scaling_bench: unknown workload '%s'\n", w.c_str());
                    return 2;
                }
            }
        } else if (arg == "--time") {
            seconds = std::atof(value.c_str());
            if (!(seconds > 0 && seconds < 3600)) {
                std::fprintf(stderr, "scaling_bench: bad --time '%s'\n", value.c_str());
                return 2;
            }
        } else if (arg == "--rounds") {
            rounds = std::atoi(value.c_str());
            if (rounds < 1) {
                std::fprintf(stderr, "scaling_bench: bad --rounds '%s'\n", value.c_str());
                return 2;
            }
        } else if (arg == "--out") {
            out_path = value;
        } else if (arg == "--context") {
            for (const auto& kv : split(value, ',')) {
                const auto eq = kv.find('=');
                if (eq == std::string::npos || eq == 0) {
                    std::fprintf(stderr, "scaling_bench: --context wants KEY=VALUE, not '%s'\n", kv.c_str());
                    return 2;
                }
                context.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
            }
        } else {
            std::fprintf(stderr, "scaling_bench: unknown option %s\n", argv[i]);
            return usage(stderr, 2);
        }
    }
    if (threads.empty()) {
        for (int t = 1; t < nproc; t *= 2) threads.push_back(t);
        threads.push_back(nproc);
    }

    // Rounds go over all the cases in turn, so that a noisy moment of the
    // machine falls on different cases rather than on all rounds of one.
    std::vector<std::vector<double>> samples(workloads.size() * threads.size());
    for (int r = 0; r < rounds; ++r) {
        for (std::size_t w = 0; w < workloads.size(); ++w) {
            for (std::size_t t = 0; t < threads.size(); ++t) {
                const double v = run_case(workloads[w], threads[t], seconds);
                if (v > 0) samples[w * threads.size() + t].push_back(v);
            }
        }
    }
    std::vector<result> results;
    std::printf("%-10s %7s %14s %8s\n", "workload", "threads", "M ops/s", "spread");
    for (std::size_t w = 0; w < workloads.size(); ++w) {
        for (std::size_t t = 0; t < threads.size(); ++t) {
            auto v = samples[w * threads.size() + t];
            if (v.empty()) {
                std::printf("%-10s %7d %14s %8s  (needs an even thread count)\n", workloads[w].c_str(), threads[t],
                            "-", "");
                continue;
            }
            std::sort(v.begin(), v.end());
            const std::size_t n = v.size();
            const double median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
            const double spread = (v.back() - v.front()) / median;
            results.push_back({workloads[w], threads[t], median, spread, static_cast<int>(n), seconds});
            std::printf("%-10s %7d %14.2f %7.0f%%\n", workloads[w].c_str(), threads[t], median / 1e6, spread * 100);
        }
    }

    if (!out_path.empty()) {
        FILE* f = std::fopen(out_path.c_str(), "w");
        if (f == nullptr) {
            std::fprintf(stderr, "scaling_bench: cannot write %s: %s\n", out_path.c_str(), std::strerror(errno));
            return 1;
        }
        std::fprintf(f, "{\n\"context\": {\"program\": \"scaling_bench\", \"malloc_library\": \"%s\", \"num_cpus\": %d",
                     json_escape(malloc_library()).c_str(), nproc);
        for (const auto& [k, v] : context) {
            std::fprintf(f, ", \"%s\": \"%s\"", json_escape(k).c_str(), json_escape(v).c_str());
        }
        std::fprintf(f, "},\n\"benchmarks\": [\n");
        for (std::size_t i = 0; i < results.size(); ++i) {
            const auto& x = results[i];
            std::fprintf(f,
                         "{\"name\": \"%s/%d\", \"run_type\": \"iteration\", \"workload\": \"%s\", "
                         "\"threads\": %d, \"iterations\": %.0f, \"real_time\": %.6g, \"time_unit\": \"ns\", "
                         "\"items_per_second\": %.6g, \"rounds\": %d, \"spread\": %.4f, \"seconds_per_round\": %g}%s\n",
                         x.workload.c_str(), x.threads, x.workload.c_str(), x.threads, x.ops_per_s * x.seconds,
                         1e9 / x.ops_per_s, x.ops_per_s, x.rounds, x.spread, x.seconds,
                         i + 1 < results.size() ? "," : "");
        }
        std::fprintf(f, "]\n}\n");
        if (std::fclose(f) != 0) {
            std::fprintf(stderr, "scaling_bench: cannot write %s\n", out_path.c_str());
            return 1;
        }
    }
    return 0;
}

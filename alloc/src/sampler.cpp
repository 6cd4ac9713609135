// The sampler: the countdowns, the sample points, and the calls up into the
// profiler's recorder. See sampling.h and <sampler.h>.
#include "sampling.h"

#include "conf.h"

#include <bit>
#include <cerrno>

namespace spanmap::detail {
namespace {

struct sampler_state {
    std::atomic<const sampler::recorder*> rec{nullptr};
    std::atomic<bool> on{false};
    std::atomic<std::uint64_t> rate{default_profile_rate};
    std::atomic<std::uint64_t> seed{0};
    std::atomic<std::uint64_t> seed_turn{0};
};
constinit sampler_state st;

std::uint64_t mix(std::uint64_t z) noexcept {  // splitmix64's finaliser
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

std::uint64_t next_random(std::uint64_t& state) noexcept {
    state += 0x9e3779b97f4a7c15ull;
    return mix(state);
}

// ln(u) for u in [2^-53, 1], without libm (a C program linking the static
// library does not link it): u = m * 2^e with m in [1, 2), and
// ln m = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...) for s = (m-1)/(m+1) < 1/3,
// whose terms to s^19 leave an error below 1e-10.
double log_unit(double u) noexcept {
    const auto bits = std::bit_cast<std::uint64_t>(u);
    const int e = static_cast<int>((bits >> 52) & 0x7ff) - 1023;
    const double m = std::bit_cast<double>((bits & ((std::uint64_t{1} << 52) - 1)) | (std::uint64_t{1023} << 52));
    const double s = (m - 1) / (m + 1);
    const double s2 = s * s;
    double term = s;
    double sum = 0;
    for (int k = 1; k <= 19; k += 2) {
        sum += term / k;
        term *= s2;
    }
    return e * 0.69314718055994530942 + 2 * sum;
}

// Bytes until the next sample: exponential with mean `rate`. Rate 1 samples
// every allocation, as Go's MemProfileRate = 1 does.
std::int64_t draw_countdown(cache_profile& cp) noexcept {
    const std::uint64_t rate = st.rate.load(std::memory_order_relaxed);
    if (rate <= 1) return 0;
    const double u = static_cast<double>((next_random(cp.rng) >> 11) + 1) * 0x1p-53;  // (0, 1]
    const double d = -log_unit(u) * static_cast<double>(rate);
    return d < 0x1p62 ? static_cast<std::int64_t>(d) : std::int64_t{1} << 62;
}

// A countdown no allocation reaches: it stands while a sample is recorded,
// so that allocations made meanwhile (an unwinder's) do not come back here.
constexpr std::int64_t countdown_parked = INT64_MAX;

// profiling_redraw -> profiling_on, with a fresh random state and countdown
// (at the rate start() stored before it set the flag).
void redraw(cache_profile& cp) noexcept {
    std::uint8_t expected = profiling_redraw;
    if (!cp.profiling.compare_exchange_strong(expected, profiling_on, std::memory_order_acquire,
                                              std::memory_order_relaxed))
        return;  // stopped (or restarted, and then redraw stays) meanwhile
    const std::uint64_t seed = st.seed.load(std::memory_order_relaxed);
    cp.rng = seed != 0 ? mix(seed + st.seed_turn.fetch_add(1, std::memory_order_relaxed)) : os_random();
    cp.bytes_until_sample.store(draw_countdown(cp), std::memory_order_relaxed);
}

// The countdown went below zero: true when the allocation (of `bytes`) that
// took it there is to be sampled. Otherwise the countdown starts again —
// wound up while sampling is off, drawn at the new rate after a start (and
// this allocation counted against it, so that at rate 1 the first allocation
// after a start is sampled), parked again when a start or stop stored -1
// into it while this thread was recording a sample.
bool at_sample_point(cache_profile& cp, std::size_t bytes) noexcept {
    if (cp.in_profiler) {
        cp.bytes_until_sample.store(countdown_parked, std::memory_order_relaxed);
        return false;
    }
    switch (cp.profiling.load(std::memory_order_relaxed)) {
    case profiling_on:
        return true;
    case profiling_redraw: {
        redraw(cp);
        // A failed redraw (stopped meanwhile) leaves the countdown below
        // zero: the next allocation comes back and finds the flag off.
        const std::int64_t left =
            cp.bytes_until_sample.load(std::memory_order_relaxed) - static_cast<std::int64_t>(bytes);
        cp.bytes_until_sample.store(left, std::memory_order_relaxed);
        return left < 0 && cp.profiling.load(std::memory_order_relaxed) == profiling_on;
    }
    default:
        cp.bytes_until_sample.store(countdown_off, std::memory_order_relaxed);
        return false;
    }
}

// The large-object path's count: an allocation of `bytes` against the
// countdown; true when it is to be sampled.
bool count_down(cache_profile& cp, std::size_t bytes) noexcept {
    const std::int64_t left = cp.bytes_until_sample.load(std::memory_order_relaxed) - static_cast<std::int64_t>(bytes);
    cp.bytes_until_sample.store(left, std::memory_order_relaxed);
    return left < 0 && at_sample_point(cp, bytes);
}

// Flips p's bit in s->sampled_bits. Atomic: two threads may sample or free
// two objects of one span at once; readers (the free path) need no order
// beyond the bit of their own object, set before that object was returned.
void flip_sampled_bit(mspan* s, const void* p) noexcept {
    const std::uint32_t idx = object_index(s, reinterpret_cast<std::uintptr_t>(p));
    s->sampled_bits[idx / 64].fetch_xor(std::uint64_t{1} << (idx % 64), std::memory_order_relaxed);
}

// Hands p (bytes) to the recorder, which marks it in its span. Out of line and in
// spanmap_alloc_text, so its frame is dropped from the stack.
SPANMAP_ALLOC_TEXT __attribute__((noinline)) void record_sample(mcache* mc, void* p, std::size_t bytes) noexcept {
    const sampler::recorder* rec = st.rec.load(std::memory_order_acquire);
    if (rec == nullptr) return;
    cache_profile& cp = mc->prof;
    const int saved_errno = errno;
    cp.in_profiler = true;
    cp.bytes_until_sample.store(countdown_parked, std::memory_order_relaxed);
    rec->record(p, bytes);
    cp.bytes_until_sample.store(draw_countdown(cp), std::memory_order_relaxed);
    cp.in_profiler = false;
    errno = saved_errno;
}

// Every live cache's flag, under caches_lock, which attach() also takes to
// set a new cache's flag from st.on. A start asks each cache to draw its
// countdown again, at the new rate.
void set_running(bool on, std::uint64_t rate) noexcept {
    ensure_init();
    lock_guard lk(g.caches_lock);
    if (on) st.rate.store(rate, std::memory_order_relaxed);
    st.on.store(on, std::memory_order_relaxed);
    const std::uint8_t flag = on ? profiling_redraw : profiling_off;
    for (mcache* mc = g.live; mc != nullptr; mc = mc->next) {
        mc->prof.profiling.store(flag, std::memory_order_release);
        // A sample point at the owner's next allocation, where it reads the flag.
        mc->prof.bytes_until_sample.store(-1, std::memory_order_relaxed);
    }
}

}  // namespace

SPANMAP_ALLOC_TEXT __attribute__((noinline)) void* sample_small(mcache* mc, void* p, unsigned c) noexcept {
    if (at_sample_point(mc->prof, sc::class_size[c]))
        record_sample(mc, p, sc::class_size[c]);
    return p;
}

SPANMAP_ALLOC_TEXT void sample_large(void* p, mspan* s) noexcept {
    mcache* mc = thread_cache();
    if (tls_cache == no_cache_yet) {
        if (!sampling_active()) return;
        const int saved_errno = errno;
        mc = attach();
        errno = saved_errno;
    }
    if (mc == nullptr) return;
    const std::size_t bytes = std::size_t{s->npages} << page_shift;
    if (count_down(mc->prof, bytes)) record_sample(mc, p, bytes);
}

void sampled_free(void* p, mspan* s) noexcept {
    if (!s->is_sampled(object_index(s, reinterpret_cast<std::uintptr_t>(p)))) return;
    const sampler::recorder* rec = st.rec.load(std::memory_order_acquire);
    if (rec != nullptr) rec->forget(p);
}

bool sampling_active() noexcept { return st.on.load(std::memory_order_relaxed); }

void sampler_fork_prepare() noexcept {
    if (const sampler::recorder* rec = st.rec.load(std::memory_order_acquire)) rec->fork_prepare();
}
void sampler_fork_parent() noexcept {
    if (const sampler::recorder* rec = st.rec.load(std::memory_order_acquire)) rec->fork_parent();
}
void sampler_fork_child() noexcept {
    if (const sampler::recorder* rec = st.rec.load(std::memory_order_acquire)) rec->fork_child();
}

}  // namespace spanmap::detail

namespace spanmap::sampler {

using namespace spanmap::detail;

void mark(void* p) noexcept {
    mspan* s = span_of(reinterpret_cast<std::uintptr_t>(p));
    if (s == nullptr) return;  // not reached: p is a live object
    // Under the recorder's lock, these fields' only writer: a load and a store.
    const std::uint16_t live = s->live_samples.load(std::memory_order_relaxed);
    s->live_samples.store(static_cast<std::uint16_t>(live + 1), std::memory_order_relaxed);
    // From now on every free of s takes the checked path (see
    // free_check_word). p's freer sees this as it sees the bit: both are
    // written before p is returned.
    if (live == 0 && s->size_class != 0) flip_free_check_sampled(s);
    flip_sampled_bit(s, p);
}

void unmark(void* p) noexcept {
    mspan* s = span_of(reinterpret_cast<std::uintptr_t>(p));
    if (s == nullptr) return;  // not reached: p is a live object
    // Under the recorder's lock, these fields' only writer: a load and a store.
    const std::uint16_t live = s->live_samples.load(std::memory_order_relaxed);
    s->live_samples.store(static_cast<std::uint16_t>(live - 1), std::memory_order_relaxed);
    // The span's last sample: its frees may take the fast path again.
    if (live == 1 && s->size_class != 0) flip_free_check_sampled(s);
    flip_sampled_bit(s, p);
}

void install(const recorder* r) noexcept {
    const recorder* none = nullptr;
    st.rec.compare_exchange_strong(none, r, std::memory_order_acq_rel);
}

void start(std::uint64_t rate) noexcept {
    if (st.rec.load(std::memory_order_acquire) != nullptr) set_running(true, rate);
}
void stop() noexcept { set_running(false, 0); }
bool active() noexcept { return sampling_active(); }
std::uint64_t rate() noexcept { return st.rate.load(std::memory_order_relaxed); }

void seed(std::uint64_t s) noexcept {
    st.seed_turn.store(0, std::memory_order_relaxed);
    st.seed.store(s, std::memory_order_relaxed);
}

bool initialised() noexcept { return g.init_state.load(std::memory_order_acquire) == 2; }
void init() noexcept { ensure_init(); }
bool conf_prof() noexcept { return conf.prof; }
std::uint64_t conf_prof_rate() noexcept { return conf.prof_rate; }
static_assert(sizeof conf.prof_prefix == max_prof_prefix + 1);
const char* conf_prof_prefix() noexcept { return conf.prof_prefix; }

void* map_metadata(std::size_t bytes, const char* vma_name) noexcept {
    void* p = os_map(bytes);
    if (p == nullptr) return nullptr;
    metadata_sys.fetch_add(bytes, std::memory_order_relaxed);
    os_name(p, bytes, vma_name);
    return p;
}

void unmap_metadata(void* p, std::size_t bytes) noexcept {
    os_unmap(p, bytes);
    metadata_sys.fetch_sub(bytes, std::memory_order_relaxed);
}

object_facts facts(std::uintptr_t p) noexcept {
    object_facts f{};
    const mspan* s = span_of(p);
    if (s == nullptr || s->state == span_state::idle) return f;
    f.in_span = true;
    f.small = s->size_class != 0;
    f.usable = f.small ? s->elem_size : std::size_t{s->npages} << page_shift;
    const std::uint32_t idx = object_index(s, p);
    if (f.small) f.free_in_span = (s->free_bits[idx / 64] >> (idx % 64)) & 1;
    f.sampled_bit = s->is_sampled(idx);
    f.span = s;
    f.span_live_samples = s->live_samples.load(std::memory_order_relaxed);
    for (const auto& w : s->sampled_bits)
        f.span_sampled_bits += static_cast<std::uint32_t>(__builtin_popcountll(w.load(std::memory_order_relaxed)));
    return f;
}

}  // namespace spanmap::sampler

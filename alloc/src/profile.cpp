// The sampling heap profiler: the countdown, stack capture, the two tables and
// the pprof writer. See profile.h for how it hangs off the allocator and
// <spanmap/profile.h> for the API and the output format.
#include "profile.h"

#include "conf.h"

#include <spanmap/profile.h>

#ifdef SPANMAP_HAVE_LIBUNWIND
#define UNW_LOCAL_ONLY
#include <libunwind.h>
// The malloc replacement opens libunwind itself (see load_unwinder below).
#ifdef SPANMAP_LIBUNWIND_SONAME
#define SPANMAP_UNWIND_DLOPEN 1
#include <dlfcn.h>
#include <pthread.h>
#endif
#endif

#include <fcntl.h>
#include <link.h>
#include <sched.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <string_view>

extern "C" {
// The ends of the spanmap_alloc_text section (SPANMAP_ALLOC_TEXT), made by the
// linker because the name is a C identifier.
extern const char __start_spanmap_alloc_text[] __attribute__((visibility("hidden")));
extern const char __stop_spanmap_alloc_text[] __attribute__((visibility("hidden")));
// The ELF header of the executable or shared object this code is linked into.
extern const ElfW(Ehdr) __ehdr_start __attribute__((visibility("hidden")));
}

namespace spanmap::detail {

// True where every function of the object this code is linked into is
// spanmap's: libspanmap_malloc.so defines it so (malloc_override.cpp), and
// then the profiler drops all its frames, the malloc entry points included.
__attribute__((weak)) bool profile_whole_module() noexcept { return false; }

std::atomic<void (*)()> profile_test_hook{nullptr};

namespace {

// --- state ---------------------------------------------------------------------

// One stack and what was sampled from it. Stacks are never removed: their
// cumulative figures outlive their objects. The frames follow the record.
struct stack_record {
    std::uint64_t hash;
    std::uint64_t alloc_objects, alloc_bytes;  // sampled, cumulative
    std::uint64_t free_objects, free_bytes;    // of those, freed since
    std::uint32_t depth;
    std::uintptr_t* frames() noexcept { return reinterpret_cast<std::uintptr_t*>(this + 1); }
    const std::uintptr_t* frames() const noexcept { return reinterpret_cast<const std::uintptr_t*>(this + 1); }
};
static_assert(sizeof(stack_record) % alignof(std::uintptr_t) == 0, "frames follow the record, aligned");

// A sampled object not yet freed.
struct live_sample {
    std::uintptr_t addr;  // 0: an empty slot
    stack_record* stack;
    std::uint64_t bytes;
};

// Stack records are carved from chunks of this size; tables start at these
// sizes (in slots) and double at half full.
constexpr std::size_t record_chunk_bytes = 1 << 20;
constexpr std::size_t initial_stack_slots = 4096;
constexpr std::size_t initial_live_slots = 4096;
// unw_backtrace is asked for this many frames beyond the kept depth, room
// for libunwind's own frame and spanmap's, which are dropped.
constexpr std::size_t dropped_frames_max = 16;
constexpr char profile_vma_name[] = "spanmap: profile";

struct profiler {
    // Guards the two tables (from `stacks` on). A leaf: nothing that holds
    // it allocates or takes another lock.
    mutex lock;

    std::atomic<bool> on{false};
    std::atomic<std::uint64_t> rate{default_profile_rate};
    std::atomic<std::uint64_t> seed{0};
    std::atomic<std::uint64_t> seed_turn{0};
    // The object's executable range when profile_whole_module(); else empty.
    std::atomic<std::uintptr_t> module_lo{0};
    std::atomic<std::uintptr_t> module_hi{0};
    // The fork gate: threads inside libunwind, and whether a fork waits for
    // them to leave (libunwind's own locks would be held forever in the child).
    std::atomic<int> capturing{0};
    std::atomic<bool> fork_pending{false};

    stack_record** stacks = nullptr;  // open addressing on hash, linear probing
    std::size_t stack_slots = 0;
    std::size_t nstacks = 0;
    char* chunk = nullptr;  // unused tail of the newest record chunk
    std::size_t chunk_left = 0;

    live_sample* live = nullptr;  // open addressing on the address, linear probing
    std::size_t live_slots = 0;
    std::size_t nlive = 0;
};

constinit profiler prof;

// --- metadata memory -------------------------------------------------------------

void* map_meta(std::size_t bytes) noexcept {
    void* p = os_map(bytes);
    if (p == nullptr) return nullptr;
    metadata_sys.fetch_add(bytes, std::memory_order_relaxed);
    os_name(p, bytes, profile_vma_name);
    return p;
}

void unmap_meta(void* p, std::size_t bytes) noexcept {
    os_unmap(p, bytes);
    metadata_sys.fetch_sub(bytes, std::memory_order_relaxed);
}

// --- the stack table (under prof.lock) -------------------------------------------

std::uint64_t mix(std::uint64_t z) noexcept {  // splitmix64's finaliser
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

std::uint64_t hash_frames(const std::uintptr_t* f, std::size_t n) noexcept {
    std::uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
    for (std::size_t i = 0; i < n; ++i) h = mix(h ^ f[i]);
    return h;
}

bool grow_stacks() noexcept {
    const std::size_t slots = prof.stack_slots == 0 ? initial_stack_slots : prof.stack_slots * 2;
    auto* t = static_cast<stack_record**>(map_meta(slots * sizeof(stack_record*)));
    if (t == nullptr) return false;
    for (std::size_t i = 0; i < prof.stack_slots; ++i) {
        stack_record* r = prof.stacks[i];
        if (r == nullptr) continue;
        std::size_t j = r->hash & (slots - 1);
        while (t[j] != nullptr) j = (j + 1) & (slots - 1);
        t[j] = r;
    }
    if (prof.stacks != nullptr) unmap_meta(prof.stacks, prof.stack_slots * sizeof(stack_record*));
    prof.stacks = t;
    prof.stack_slots = slots;
    return true;
}

// The record of this stack, added if new; nullptr when no memory could be had.
stack_record* find_or_add_stack(const std::uintptr_t* frames, std::size_t depth) noexcept {
    if ((prof.nstacks + 1) * 2 > prof.stack_slots && !grow_stacks() && prof.nstacks + 1 >= prof.stack_slots)
        return nullptr;
    const std::uint64_t h = hash_frames(frames, depth);
    const std::size_t mask = prof.stack_slots - 1;
    std::size_t i = h & mask;
    for (; prof.stacks[i] != nullptr; i = (i + 1) & mask) {
        stack_record* r = prof.stacks[i];
        if (r->hash == h && r->depth == depth && std::memcmp(r->frames(), frames, depth * sizeof *frames) == 0)
            return r;
    }
    const std::size_t bytes = sizeof(stack_record) + depth * sizeof(std::uintptr_t);
    if (prof.chunk_left < bytes) {
        auto* c = static_cast<char*>(map_meta(record_chunk_bytes));
        if (c == nullptr) return nullptr;
        prof.chunk = c;
        prof.chunk_left = record_chunk_bytes;
    }
    auto* r = reinterpret_cast<stack_record*>(prof.chunk);
    prof.chunk += bytes;
    prof.chunk_left -= bytes;
    r->hash = h;
    r->depth = static_cast<std::uint32_t>(depth);
    std::memcpy(r->frames(), frames, depth * sizeof *frames);
    prof.stacks[i] = r;
    ++prof.nstacks;
    return r;
}

// --- the table of sampled live objects (under prof.lock) ----------------------------

std::size_t live_home(std::uintptr_t addr, std::size_t slots) noexcept {
    return static_cast<std::size_t>(mix(addr)) & (slots - 1);
}

bool grow_live() noexcept {
    const std::size_t slots = prof.live_slots == 0 ? initial_live_slots : prof.live_slots * 2;
    auto* t = static_cast<live_sample*>(map_meta(slots * sizeof(live_sample)));
    if (t == nullptr) return false;
    for (std::size_t i = 0; i < prof.live_slots; ++i) {
        const live_sample& e = prof.live[i];
        if (e.addr == 0) continue;
        std::size_t j = live_home(e.addr, slots);
        while (t[j].addr != 0) j = (j + 1) & (slots - 1);
        t[j] = e;
    }
    if (prof.live != nullptr) unmap_meta(prof.live, prof.live_slots * sizeof(live_sample));
    prof.live = t;
    prof.live_slots = slots;
    return true;
}

bool live_insert(const live_sample& e) noexcept {
    if ((prof.nlive + 1) * 2 > prof.live_slots && !grow_live() && prof.nlive + 1 >= prof.live_slots) return false;
    const std::size_t mask = prof.live_slots - 1;
    std::size_t i = live_home(e.addr, prof.live_slots);
    while (prof.live[i].addr != 0) {
        // The object is allocated, so no entry can hold its address.
        if (prof.live[i].addr == e.addr) fatal("profile", reinterpret_cast<void*>(e.addr), "sampled twice (profiler table corrupted)");
        i = (i + 1) & mask;
    }
    prof.live[i] = e;
    ++prof.nlive;
    return true;
}

// Removes addr's entry into *out; false when addr was not sampled.
bool live_remove(std::uintptr_t addr, live_sample* out) noexcept {
    if (prof.nlive == 0) return false;
    const std::size_t mask = prof.live_slots - 1;
    std::size_t i = live_home(addr, prof.live_slots);
    while (prof.live[i].addr != addr) {
        if (prof.live[i].addr == 0) return false;
        i = (i + 1) & mask;
    }
    *out = prof.live[i];
    // Backward-shift deletion: pull later entries of the probe run into the
    // hole unless their home lies cyclically in (hole, their slot].
    for (std::size_t j = i;;) {
        j = (j + 1) & mask;
        const std::uintptr_t a = prof.live[j].addr;
        if (a == 0) break;
        const std::size_t k = live_home(a, prof.live_slots);
        const bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (stays) continue;
        prof.live[i] = prof.live[j];
        i = j;
    }
    prof.live[i].addr = 0;
    --prof.nlive;
    return true;
}

// --- the countdown (owner thread) ---------------------------------------------------

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
    const std::uint64_t rate = prof.rate.load(std::memory_order_relaxed);
    if (rate <= 1) return 0;
    const double u = static_cast<double>((next_random(cp.rng) >> 11) + 1) * 0x1p-53;  // (0, 1]
    const double d = -log_unit(u) * static_cast<double>(rate);
    return d < 0x1p62 ? static_cast<std::int64_t>(d) : std::int64_t{1} << 62;
}

// A countdown no allocation reaches: it stands while a sample is recorded,
// so that allocations made meanwhile (libunwind's) do not come back here.
constexpr std::int64_t countdown_parked = INT64_MAX;

// profiling_redraw -> profiling_on, with a fresh random state and countdown
// (at the rate profile_start stored before it set the flag).
void redraw(cache_profile& cp) noexcept {
    std::uint8_t expected = profiling_redraw;
    if (!cp.profiling.compare_exchange_strong(expected, profiling_on, std::memory_order_acquire,
                                              std::memory_order_relaxed))
        return;  // stopped (or restarted, and then redraw stays) meanwhile
    const std::uint64_t seed = prof.seed.load(std::memory_order_relaxed);
    cp.rng = seed != 0 ? mix(seed + prof.seed_turn.fetch_add(1, std::memory_order_relaxed)) : os_random();
    cp.bytes_until_sample.store(draw_countdown(cp), std::memory_order_relaxed);
}

// The countdown went below zero: true when the allocation (of `bytes`) that
// took it there is to be sampled. Otherwise the countdown starts again —
// wound up while profiling is off, drawn at the new rate after a start (and
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

// --- recording a sample ------------------------------------------------------------

// Whether the return address ip is in a function of spanmap's: ip - 1 is in
// the call instruction, inside its function even when the call is the last
// instruction there.
bool is_ours(std::uintptr_t ip) noexcept {
    const std::uintptr_t at = ip - 1;
    if (at >= reinterpret_cast<std::uintptr_t>(__start_spanmap_alloc_text) &&
        at < reinterpret_cast<std::uintptr_t>(__stop_spanmap_alloc_text))
        return true;
    return at >= prof.module_lo.load(std::memory_order_relaxed) && at < prof.module_hi.load(std::memory_order_relaxed);
}

// The executable range of the object this code is in, from its own program
// headers (no call into the loader).
void find_module_range() noexcept {
    if (!profile_whole_module() || prof.module_hi.load(std::memory_order_relaxed) != 0) return;
    const auto base = reinterpret_cast<std::uintptr_t>(&__ehdr_start);
    const auto* ph = reinterpret_cast<const ElfW(Phdr)*>(base + __ehdr_start.e_phoff);
    std::uintptr_t bias = base;  // where vaddr 0 is: the header is at offset 0
    for (unsigned i = 0; i < __ehdr_start.e_phnum; ++i)
        if (ph[i].p_type == PT_LOAD && ph[i].p_offset == 0) bias = base - ph[i].p_vaddr;
    std::uintptr_t lo = ~std::uintptr_t{0}, hi = 0;
    for (unsigned i = 0; i < __ehdr_start.e_phnum; ++i) {
        if (ph[i].p_type != PT_LOAD || (ph[i].p_flags & PF_X) == 0) continue;
        const std::uintptr_t start = bias + ph[i].p_vaddr;
        if (start < lo) lo = start;
        if (start + ph[i].p_memsz > hi) hi = start + ph[i].p_memsz;
    }
    if (hi == 0) return;
    prof.module_lo.store(lo, std::memory_order_relaxed);
    prof.module_hi.store(hi, std::memory_order_relaxed);
}

#ifdef SPANMAP_UNWIND_DLOPEN
// libspanmap_malloc.so needs the C library alone, so libunwind is not linked
// into it: the functions the profiler calls are looked up in a dlopen'ed
// copy when profiling starts — from profile_start(), or for
// SPANMAP_CONF=prof:true from the library's constructor (start_from_conf),
// never from inside malloc, where the loader may hold its lock and dlopen
// would allocate. RTLD_LOCAL: libunwind also defines the C++ exception ABI
// and backtrace(), which must not take over the program's.
struct unwinder_functions {
    int (*backtrace)(void**, int);
    int (*getcontext)(unw_context_t*);
    int (*init_local)(unw_cursor_t*, unw_context_t*);
};
constinit unwinder_functions unw{};
std::atomic<bool> unw_loaded{false};  // release: unw is filled in
pthread_mutex_t unw_load_lock = PTHREAD_MUTEX_INITIALIZER;

#define SPANMAP_UNW_NAME2(x) #x
#define SPANMAP_UNW_NAME(x) SPANMAP_UNW_NAME2(x)  // the symbol a libunwind macro expands to

bool load_unwinder() noexcept {
    if (unw_loaded.load(std::memory_order_acquire)) return true;
    pthread_mutex_lock(&unw_load_lock);
    if (!unw_loaded.load(std::memory_order_relaxed)) {
        if (void* h = ::dlopen(SPANMAP_LIBUNWIND_SONAME, RTLD_NOW | RTLD_LOCAL)) {
            unw.backtrace = reinterpret_cast<int (*)(void**, int)>(::dlsym(h, SPANMAP_UNW_NAME(unw_backtrace)));
            unw.getcontext = reinterpret_cast<int (*)(unw_context_t*)>(::dlsym(h, SPANMAP_UNW_NAME(unw_tdep_getcontext)));
            unw.init_local = reinterpret_cast<int (*)(unw_cursor_t*, unw_context_t*)>(
                ::dlsym(h, SPANMAP_UNW_NAME(unw_init_local)));
            if (unw.backtrace != nullptr && unw.getcontext != nullptr && unw.init_local != nullptr)
                unw_loaded.store(true, std::memory_order_release);
            else
                ::dlclose(h);
        }
    }
    pthread_mutex_unlock(&unw_load_lock);
    return unw_loaded.load(std::memory_order_acquire);
}
#else
bool load_unwinder() noexcept { return true; }  // linked in, or absent (have_unwinder())
#endif

// The return addresses of the calling stack, innermost first. (Without
// libunwind profiling never starts and nothing calls this.)
__attribute__((always_inline)) inline int capture_stack(void** out, int max) noexcept {
#if !defined(SPANMAP_HAVE_LIBUNWIND)
    (void)out;
    (void)max;
    return 0;
#elif defined(SPANMAP_UNWIND_DLOPEN)
    return unw.backtrace(out, max);
#elif defined(__SANITIZE_THREAD__)
    // unw_backtrace keeps a per-thread cache that frees itself in the last
    // round of thread-specific-data destructors, through a mutex that
    // ThreadSanitizer intercepts after it has already ended the thread (a
    // crash at thread exit). Frame by frame, libunwind keeps no such cache.
    unw_context_t uc;
    unw_cursor_t cursor;
    if (unw_getcontext(&uc) != 0 || unw_init_local(&cursor, &uc) != 0) return 0;
    int n = 0;
    do {
        unw_word_t ip = 0;
        if (unw_get_reg(&cursor, UNW_REG_IP, &ip) != 0) break;
        out[n++] = reinterpret_cast<void*>(ip);
    } while (n < max && unw_step(&cursor) > 0);
    return n;
#else
    return unw_backtrace(out, max);
#endif
}

// Sets or clears p's bit in s->sampled_bits (under prof.lock, the bits'
// only writer, so a load and a store; atomics for the lock-free readers).
void flip_sampled_bit(mspan* s, const void* p) noexcept {
    const std::uint32_t idx = object_index(s, reinterpret_cast<std::uintptr_t>(p));
    std::atomic<std::uint64_t>& w = s->sampled_bits[idx / 64];
    w.store(w.load(std::memory_order_relaxed) ^ (std::uint64_t{1} << (idx % 64)), std::memory_order_relaxed);
}

// Records p (bytes, in span s) as sampled from the calling stack. Called with
// no lock held; out of line and in spanmap_alloc_text, so its frame is dropped.
SPANMAP_ALLOC_TEXT __attribute__((noinline)) void record_sample(mcache* mc, void* p, mspan* s,
                                                                  std::size_t bytes) noexcept {
    cache_profile& cp = mc->prof;
    const int saved_errno = errno;
    cp.in_profiler = true;
    cp.bytes_until_sample.store(countdown_parked, std::memory_order_relaxed);
    void* raw[max_profile_depth + dropped_frames_max];
    // Through the fork gate: a thread arriving while a fork waits does not
    // wait (it may hold the loader lock the threads inside libunwind need);
    // its sample gets an unknown stack.
    int got = 0;
    prof.capturing.fetch_add(1);
    if (!prof.fork_pending.load()) got = capture_stack(raw, static_cast<int>(sizeof raw / sizeof raw[0]));
    prof.capturing.fetch_sub(1);
    const std::size_t n = got > 0 ? static_cast<std::size_t>(got) : 0;
    // The first frames are libunwind's and then ours (this function, the
    // allocation path, the entry point); the program's come after them.
    std::size_t first = 0;
    while (first < n && first < dropped_frames_max && !is_ours(reinterpret_cast<std::uintptr_t>(raw[first]))) ++first;
    if (first == n || first == dropped_frames_max) first = 0;  // none of ours found: keep them all
    while (first < n && is_ours(reinterpret_cast<std::uintptr_t>(raw[first]))) ++first;
    std::uintptr_t frames[max_profile_depth];
    std::size_t depth = 0;
    for (std::size_t i = first; i < n && depth < max_profile_depth; ++i)
        frames[depth++] = reinterpret_cast<std::uintptr_t>(raw[i]);
    if (depth == 0) frames[depth++] = 0;  // pprof wants a frame: an unknown one
    if (void (*hook)() = profile_test_hook.load(std::memory_order_relaxed)) hook();
    {
        lock_guard lk(prof.lock);
        stack_record* r = find_or_add_stack(frames, depth);
        if (r != nullptr && live_insert({reinterpret_cast<std::uintptr_t>(p), r, bytes})) {
            ++r->alloc_objects;
            r->alloc_bytes += bytes;
            s->live_samples.store(static_cast<std::uint16_t>(s->live_samples.load(std::memory_order_relaxed) + 1),
                                  std::memory_order_relaxed);
            flip_sampled_bit(s, p);
        }
    }
    cp.bytes_until_sample.store(draw_countdown(cp), std::memory_order_relaxed);
    cp.in_profiler = false;
    errno = saved_errno;
}

// libunwind initialises itself at first use behind a plain flag, and then
// other threads read what it set up (a signal mask) without its lock: a race
// when two threads sample first at once. Done here, before any cache is told
// to sample, the flag's release store (and the owner's acquire in redraw())
// orders it before every use. unw_init_local does it without touching the
// loader's tables, so this is safe under init_lock (SPANMAP_CONF's start).
void warm_up_unwinder() noexcept {
#if defined(SPANMAP_UNWIND_DLOPEN)
    unw_context_t uc;
    unw_cursor_t cursor;
    if (unw.getcontext(&uc) == 0) unw.init_local(&cursor, &uc);
#elif defined(SPANMAP_HAVE_LIBUNWIND)
    unw_context_t uc;
    unw_cursor_t cursor;
    if (unw_getcontext(&uc) == 0) unw_init_local(&cursor, &uc);
#endif
}

// Starts or stops sampling: every live cache's flag, under caches_lock, which
// attach() also takes to set a new cache's flag from prof.on. A start asks
// each cache to draw its countdown again, at the new rate.
void set_running(bool on, std::uint64_t rate) noexcept {
    if (on) {
        find_module_range();
        warm_up_unwinder();
    }
    lock_guard lk(g.caches_lock);
    if (on) prof.rate.store(rate, std::memory_order_relaxed);
    prof.on.store(on, std::memory_order_relaxed);
    const std::uint8_t flag = on ? profiling_redraw : profiling_off;
    for (mcache* mc = g.live; mc != nullptr; mc = mc->next) {
        mc->prof.profiling.store(flag, std::memory_order_release);
        // A sample point at the owner's next allocation, where it reads the flag.
        mc->prof.bytes_until_sample.store(-1, std::memory_order_relaxed);
    }
}

constexpr bool have_unwinder() {
#ifdef SPANMAP_HAVE_LIBUNWIND
    return true;
#else
    return false;
#endif
}

// --- writing the profile -------------------------------------------------------------

// Formats into a fixed buffer and writes it out with write(2): no stdio, no malloc.
class fd_writer {
public:
    explicit fd_writer(int fd) noexcept : fd_(fd) {}
    fd_writer(const fd_writer&) = delete;
    fd_writer& operator=(const fd_writer&) = delete;

    void bytes(const char* s, std::size_t n) noexcept {
        while (n > 0) {
            if (len_ == sizeof buf_) flush();
            std::size_t k = sizeof buf_ - len_;
            if (k > n) k = n;
            std::memcpy(buf_ + len_, s, k);
            len_ += k;
            s += k;
            n -= k;
        }
    }
    fd_writer& operator<<(std::string_view s) noexcept {
        bytes(s.data(), s.size());
        return *this;
    }
    fd_writer& operator<<(std::uint64_t v) noexcept {
        char tmp[20];
        int i = 0;
        do {
            tmp[i++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v != 0);
        while (i > 0) bytes(&tmp[--i], 1);
        return *this;
    }
    void hex(std::uint64_t v) noexcept {
        static constexpr char digits[] = "0123456789abcdef";
        char tmp[18];
        int i = 0;
        do {
            tmp[i++] = digits[v & 15];
            v >>= 4;
        } while (v != 0);
        bytes("0x", 2);
        while (i > 0) bytes(&tmp[--i], 1);
    }
    // false once any write failed (errno says why).
    bool flush() noexcept {
        std::size_t done = 0;
        while (ok_ && done < len_) {
            const ssize_t w = ::write(fd_, buf_ + done, len_ - done);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                if (w == 0) errno = EIO;
                ok_ = false;
                break;
            }
            done += static_cast<std::size_t>(w);
        }
        len_ = 0;
        return ok_;
    }

private:
    int fd_;
    bool ok_ = true;
    std::size_t len_ = 0;
    char buf_[8192];
};

// Copies /proc/self/maps into w; without it pprof cannot place the addresses
// of a position-independent executable.
void copy_maps(fd_writer& w) noexcept {
    const int fd = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    char buf[4096];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        w.bytes(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
}

profile_totals totals_locked() noexcept {
    profile_totals t{};
    t.stacks = prof.nstacks;
    t.live_samples = prof.nlive;
    for (std::size_t i = 0; i < prof.stack_slots; ++i) {
        const stack_record* r = prof.stacks[i];
        if (r == nullptr) continue;
        t.inuse_objects += r->alloc_objects - r->free_objects;
        t.inuse_bytes += r->alloc_bytes - r->free_bytes;
        t.alloc_objects += r->alloc_objects;
        t.alloc_bytes += r->alloc_bytes;
    }
    return t;
}

bool dump(const char* path) noexcept {
    const int fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return false;
    bool ok = false;
    {
        fd_writer w(fd);
        {
            lock_guard lk(prof.lock);
            const profile_totals t = totals_locked();
            w << "heap profile: " << t.inuse_objects << ": " << t.inuse_bytes << " [" << t.alloc_objects << ": "
              << t.alloc_bytes << "] @ heap_v2/" << prof.rate.load(std::memory_order_relaxed) << "\n";
            for (std::size_t i = 0; i < prof.stack_slots; ++i) {
                const stack_record* r = prof.stacks[i];
                if (r == nullptr) continue;
                w << (r->alloc_objects - r->free_objects) << ": " << (r->alloc_bytes - r->free_bytes) << " ["
                  << r->alloc_objects << ": " << r->alloc_bytes << "] @";
                for (std::uint32_t f = 0; f < r->depth; ++f) {
                    w << " ";
                    w.hex(r->frames()[f]);
                }
                w << "\n";
            }
        }
        w << "\nMAPPED_LIBRARIES:\n";
        copy_maps(w);
        ok = w.flush();
    }
    const int saved = errno;
    if (::close(fd) != 0 && ok) return false;
    errno = saved;
    return ok;
}

// SPANMAP_CONF=prof:true: the profile at exit, to <prof_prefix>.<pid>.heap. A
// destructor function, as the statistics report at exit (see conf.cpp): it
// runs after the program's static destructors, and registering it allocates
// nothing. This object is always linked: alloc_small refers to it.
__attribute__((destructor)) void dump_at_exit() {
    if (g.init_state.load(std::memory_order_acquire) != 2 || !conf.prof || !have_unwinder()) return;
    // "<prefix>.<pid>.heap", spelled by hand: nothing here may allocate.
    char path[sizeof conf.prof_prefix + 32];
    std::size_t n = std::strlen(conf.prof_prefix);
    std::memcpy(path, conf.prof_prefix, n);
    path[n++] = '.';
    char digits[20];
    int k = 0;
    for (auto pid = static_cast<unsigned long>(::getpid()); k == 0 || pid != 0; pid /= 10)
        digits[k++] = static_cast<char>('0' + pid % 10);
    while (k > 0) path[n++] = digits[--k];
    std::memcpy(path + n, ".heap", sizeof ".heap");
    if (!dump(path)) {
        write_stderr("spanmap: SPANMAP_CONF=prof:true: cannot write the heap profile ");
        write_stderr(path);
        write_stderr("\n");
    }
}

}  // namespace

// --- hooks --------------------------------------------------------------------------

bool profile_active() noexcept { return prof.on.load(std::memory_order_relaxed); }

void profile_fork_prepare() noexcept {
    prof.fork_pending.store(true);
    while (prof.capturing.load() != 0) ::sched_yield();
    prof.lock.lock();
}

void profile_fork_parent() noexcept {
    prof.lock.unlock();
    prof.fork_pending.store(false);
}

void profile_fork_child() noexcept {
    // The one thread here is not capturing; a thread that was turned back
    // at the gate while fork went on left its count behind.
    prof.capturing.store(0);
}

void profile_init_from_conf() noexcept {
    if (!conf.prof) return;
    if (!have_unwinder()) {
        write_stderr("spanmap: SPANMAP_CONF: prof:true, but spanmap was built without libunwind: no profile\n");
        return;
    }
#ifdef SPANMAP_UNWIND_DLOPEN
    // Possibly inside the first malloc: start_from_conf opens libunwind and starts.
    if (!unw_loaded.load(std::memory_order_acquire)) return;
#endif
    set_running(true, conf.prof_rate);
}

#ifdef SPANMAP_UNWIND_DLOPEN
namespace {
// SPANMAP_CONF=prof:true in the malloc replacement: profiling starts once the
// library's constructor has opened libunwind, before the program's own
// constructors and main; the loader's allocations before it go unsampled.
__attribute__((constructor)) void start_from_conf() {
    // A process that has not allocated yet is left uninitialised unless it
    // may ask for profiling: preloading must not cost /bin/true a heap.
    if (g.init_state.load(std::memory_order_acquire) != 2) {
        const char* text = ::secure_getenv("SPANMAP_CONF");
        if (text == nullptr || std::strstr(text, "prof") == nullptr) return;
    }
    ensure_init();
    if (!conf.prof || prof.on.load(std::memory_order_relaxed)) return;
    if (load_unwinder()) {
        set_running(true, conf.prof_rate);
    } else {
        write_stderr("spanmap: SPANMAP_CONF: prof:true, but " SPANMAP_LIBUNWIND_SONAME " cannot be opened: no profile\n");
    }
}
}  // namespace
#endif

SPANMAP_ALLOC_TEXT __attribute__((noinline)) void* profile_small(mcache* mc, void* p, unsigned c) noexcept {
    if (at_sample_point(mc->prof, sc::class_size[c])) record_sample(mc, p, span_of(reinterpret_cast<std::uintptr_t>(p)), sc::class_size[c]);
    return p;
}

SPANMAP_ALLOC_TEXT void profile_large(void* p, mspan* s) noexcept {
    mcache* mc = tls_cache;
    if (mc == nullptr) {
        if (!profile_active()) return;
        const int saved_errno = errno;
        mc = attach();
        errno = saved_errno;
        if (mc == nullptr) return;
    }
    if (!cache_usable(mc)) return;
    const std::size_t bytes = std::size_t{s->npages} << page_shift;
    if (count_down(mc->prof, bytes)) record_sample(mc, p, s, bytes);
}

void profile_on_free(void* p, mspan* s) noexcept {
    lock_guard lk(prof.lock);
    live_sample e{};
    if (!live_remove(reinterpret_cast<std::uintptr_t>(p), &e)) return;
    ++e.stack->free_objects;
    e.stack->free_bytes += e.bytes;
    s->live_samples.store(static_cast<std::uint16_t>(s->live_samples.load(std::memory_order_relaxed) - 1),
                          std::memory_order_relaxed);
    flip_sampled_bit(s, p);
}

// --- for tests ------------------------------------------------------------------------

void profile_seed(std::uint64_t seed) noexcept {
    prof.seed_turn.store(0, std::memory_order_relaxed);
    prof.seed.store(seed, std::memory_order_relaxed);
}

profile_totals read_profile_totals() noexcept {
    lock_guard lk(prof.lock);
    return totals_locked();
}

bool profile_check_invariants(char* why, std::size_t why_len) noexcept {
    const auto fail = [&](const char* msg, std::uintptr_t addr) {
        std::snprintf(why, why_len, "%s (object %#lx)", msg, static_cast<unsigned long>(addr));
        return false;
    };
    lock_guard lk(prof.lock);
    const profile_totals t = totals_locked();
    if (t.inuse_objects != prof.nlive) return fail("the stacks' in-use objects differ from the live table", 0);
    std::uint64_t bytes = 0;
    std::size_t seen = 0;
    for (std::size_t i = 0; i < prof.live_slots; ++i) {
        const live_sample& e = prof.live[i];
        if (e.addr == 0) continue;
        ++seen;
        bytes += e.bytes;
        const mspan* s = span_of(e.addr);
        if (s == nullptr || s->state == span_state::idle) return fail("a sampled live object is in no span", e.addr);
        const std::size_t usable = s->size_class != 0 ? s->elem_size : std::size_t{s->npages} << page_shift;
        if (s->size_class != 0 && e.bytes != usable) return fail("a sample's size is not its class size", e.addr);
        if (s->size_class != 0) {
            const std::uintptr_t idx = (e.addr - s->base) / s->elem_size;
            if (s->free_bits[idx / 64] >> (idx % 64) & 1) return fail("a sampled live object is free in its span", e.addr);
        }
        if (!s->is_sampled(object_index(s, e.addr))) return fail("a sampled live object's bit is clear in its span", e.addr);
        // The span's count is the number of live entries in it (quadratic;
        // tests keep the table small).
        if (prof.nlive <= 20000) {
            std::size_t in_span = 0;
            for (std::size_t j = 0; j < prof.live_slots; ++j)
                if (prof.live[j].addr != 0 && span_of(prof.live[j].addr) == s) ++in_span;
            if (in_span != s->live_samples.load(std::memory_order_relaxed))
                return fail("a span's live_samples is not the number of its sampled live objects", e.addr);
            std::size_t bits = 0;
            for (const auto& w : s->sampled_bits) bits += static_cast<std::size_t>(__builtin_popcountll(w.load()));
            if (bits != in_span) return fail("a span's sampled bits are not its sampled live objects", e.addr);
        }
    }
    if (seen != prof.nlive) return fail("the live table's count is off", 0);
    if (bytes != t.inuse_bytes) return fail("the stacks' in-use bytes differ from the live table", 0);
    return true;
}

}  // namespace spanmap::detail

// --- API --------------------------------------------------------------------------------

namespace spanmap {

bool profile_start(std::size_t rate) noexcept {
    if (rate == 0) {
        errno = EINVAL;
        return false;
    }
    if (!detail::have_unwinder()) {
        errno = ENOSYS;
        return false;
    }
    detail::ensure_init();
    if (!detail::load_unwinder()) {
        errno = ENOSYS;
        return false;
    }
    detail::set_running(true, rate);
    return true;
}

void profile_stop() noexcept {
    detail::ensure_init();
    detail::set_running(false, 0);
}

bool profile_dump(const char* path) noexcept {
    if (path == nullptr) {
        errno = EINVAL;
        return false;
    }
    if (!detail::have_unwinder()) {
        errno = ENOSYS;
        return false;
    }
    return detail::dump(path);
}

}  // namespace spanmap

extern "C" {

int spanmap_profile_start(size_t rate) noexcept { return spanmap::profile_start(rate) ? 1 : 0; }
void spanmap_profile_stop(void) noexcept { spanmap::profile_stop(); }
int spanmap_profile_dump(const char* path) noexcept { return spanmap::profile_dump(path) ? 1 : 0; }

}  // extern "C"

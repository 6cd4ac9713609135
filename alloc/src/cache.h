// mcache: the per-thread cache. The process-wide state it hangs from is in
// runtime.h.
// See DESIGN.md for the overview.
//
// Each thread owns one mcache, reached through a single initial-exec TLS
// pointer (no TLS wrapper calls, no thread_local destructor that could call
// back into malloc). For each size class it keeps a bin: a stack of free
// object pointers. malloc pops, free pushes — on the owning thread, with no
// lock and no atomic read-modify-write. The stack holds pointers, not links
// through the objects, so a free object's first word is free for a mark (see
// fastpath.h, where both fast paths live): every object in a bin carries it,
// which makes a free of it visible at once, wherever the object is.
//
// A bin is bounded by its cap: an empty bin refills `batch` objects from the
// transfer tier or mcentral; a full one returns its `batch` newest. An object
// freed by another thread simply enters that thread's cache — caches hold any
// object of their class — and goes back through mcentral from there.
//
// Caps size themselves (TCMalloc's dynamic per-thread cache), on the slow
// paths only: the fast paths compare the count against the cap and nothing
// more. A bin starts at bin_start_cap. When a free finds it full and it has
// refilled since it last gave objects back — it both runs dry and overflows,
// so the thread's working set of the class does not fit — its cap doubles, up
// to bin_max_cap, instead of a batch leaving; 1000 objects allocated and then
// freed then cycle through the bin alone. A bin that only overflows (a thread
// that frees what others allocate) keeps its cap and passes batches on. The
// caps of one thread add up to at most thread_cache_bytes: a bin that grows
// past that takes capacity from the thread's other grown bins, round robin,
// halving them and flushing what no longer fits (TCMalloc steals the same
// way). And every sizing_period slow-path events the thread looks over its
// bins: a grown bin that saw no malloc and no free since the last look is
// halved back towards its start.
//
// When a thread exits, a pthread key destructor returns every cached object to
// mcentral and parks the mcache on a free list for the next thread. Calls that
// arrive after that (later key destructors, the C library's own teardown) find
// the TLS pointer set to `cache_exited` and go straight to mcentral.
#pragma once

#include "runtime.h"

namespace spanmap::detail {

// Bin bounds. A bin starts able to hold 32 KiB of objects, but never fewer
// than 2 nor more than 256 of them; refills and flushes move half that (at
// most 64), a batch, which is also the transfer tier's unit. A bin may grow to
// 1 MiB of objects, or to 1024 objects for classes of up to 4 KiB, and to at
// most 2048 objects: 1000 objects of up to 4 KiB fit.
//   Below 1 MiB, a working set of 1000 objects of 4 KiB overflowed the bin by
// three quarters, in batches of four objects through the transfer tier and
// mcentral to the page heap and back — a span of two objects carved and freed
// for every two objects — and two threads doing so queued on those locks:
// 40 and 260-530 ns a pair, against 13 and 27-30 once the bin holds it.
// Larger classes keep 1 MiB: a bin of 4 MiB of 32 KiB objects keeps that much
// of a fragmented heap out of the page heap, where a growing realloc wants
// the pages after its block free (a realloc loop after 32 MiB of 32 KiB
// blocks freed at random: 850 ns a call, against 465 with 1 MiB).
inline constexpr std::uint32_t bin_bytes = 32 << 10;
inline constexpr std::uint32_t bin_max_objects = 256;
inline constexpr std::uint32_t bin_min_objects = 2;
inline constexpr std::uint32_t bin_grown_bytes = 1 << 20;
inline constexpr std::uint32_t bin_grown_objects = 2048;
inline constexpr std::uint32_t bin_grown_min_objects = 1024;  // for classes up to bin_grown_min_size
inline constexpr std::uint32_t bin_grown_min_size = 4096;
// Slow-path events (refills and full bins) between two looks for idle bins.
inline constexpr std::uint32_t sizing_period = 64;

constexpr std::uint32_t bin_start_cap(unsigned c) {
    if (c == 0) return 0;
    const std::uint32_t n = bin_bytes / sc::class_size[c];
    return n < bin_min_objects ? bin_min_objects : n > bin_max_objects ? bin_max_objects : n;
}
constexpr std::uint32_t bin_max_cap(unsigned c) {
    if (c == 0) return 0;
    std::uint32_t n = bin_grown_bytes / sc::class_size[c];
    if (sc::class_size[c] <= bin_grown_min_size && n < bin_grown_min_objects) n = bin_grown_min_objects;
    const std::uint32_t m = n > bin_grown_objects ? bin_grown_objects : n;
    return m < bin_start_cap(c) ? bin_start_cap(c) : m;
}
constexpr std::uint32_t bin_batch(unsigned c) {
    const std::uint32_t half = bin_start_cap(c) / 2;
    return half == 0 ? 1 : half > 64 ? 64 : half;
}
// Objects a refill, or a flush, moves for bin c at cap: a batch, or for a
// grown bin of a class whose batch is under 64 objects (over 256 B), up to
// half the cap, a quarter MiB and 64 objects. mcentral carves and gives back
// the spans of such a move under one hold of the heap's lock
// (max_fresh_spans), so a thread whose working set of 32 KiB objects — a
// span each, a batch of one — overflows its bin takes the locks below once
// per eight objects, not once per object. The transfer tier's unit stays
// the batch; a move is whole batches of it.
inline constexpr std::uint32_t bin_move_bytes = 256 << 10;
constexpr std::uint32_t bin_move(unsigned c, std::uint32_t cap) {
    std::uint32_t n = cap / 2;
    const std::uint32_t by_bytes = bin_move_bytes / sc::class_size[c];
    if (n > by_bytes) n = by_bytes;
    if (n > 64) n = 64;
    return n < bin_batch(c) ? bin_batch(c) : n;
}
// What a bin's first refill from mcentral takes: a page of objects (at least
// one, at most a move). Later refills double it up to bin_move. A refill
// marks every object it hands the bin (fastpath.h), so it writes to each
// one's page; a move taken at once made a thread that allocated one object of
// each of 24 classes resident in 300 KiB of arena pages, 172 KiB of them
// only for objects that sat in its bins (TCMalloc's thread cache ramps its
// fetches up the same way).
constexpr std::uint32_t bin_first_fill(unsigned c) {
    if (c == 0) return 0;
    const std::uint32_t n = static_cast<std::uint32_t>(os_page_size / sc::class_size[c]);
    const std::uint32_t cap = bin_move(c, bin_start_cap(c));
    return n < 1 ? 1 : n > cap ? cap : n;
}
// Where each bin's slots lie in its cache. A bin at its start cap uses a
// region of start_cap slots, and these regions are packed together: a thread
// that touches every class touches 40 KiB of them. A bin that grows moves,
// once, into a region of bin_max_cap slots of its own (grow_bin), reserved in
// the cache's mapping but touched only by bins that grow; with every bin's
// slots at their largest (16 KiB for the small classes) side by side, a
// thread touched a page or two for every class it ever allocated.
struct bin_slot_layout {
    std::uint32_t start_at[num_classes];
    std::uint32_t grown_at[num_classes];
    std::uint32_t start_slots;
    std::uint32_t grown_slots;
};
inline constexpr bin_slot_layout bin_slots = [] {
    bin_slot_layout l{};
    for (unsigned c = 1; c < num_classes; ++c) {
        l.start_at[c] = l.start_slots;
        l.start_slots += bin_start_cap(c);
        l.grown_at[c] = l.grown_slots;
        l.grown_slots += bin_max_cap(c);
    }
    return l;
}();
// The caps' bytes when every bin is at its start.
constexpr std::size_t start_cap_bytes() {
    std::size_t n = 0;
    for (unsigned c = 1; c < num_classes; ++c) n += std::size_t{bin_start_cap(c)} * sc::class_size[c];
    return n;
}
// The largest a bin may grow, in bytes of objects (4 MiB: 1024 of 4 KiB).
constexpr std::size_t largest_bin_bytes() {
    std::size_t n = 0;
    for (unsigned c = 1; c < num_classes; ++c) {
        const std::size_t b = std::size_t{bin_max_cap(c)} * sc::class_size[c];
        n = b > n ? b : n;
    }
    return n;
}
// What the caps of one thread's bins add up to, in bytes of objects: room for
// every bin at its start and one grown to its largest, so that a thread
// whose working set is one class holds it without taking from its other
// bins (rounded up to whole MiB: 6 MiB).
inline constexpr std::size_t thread_cache_bytes = round_up(start_cap_bytes() + largest_bin_bytes(), std::size_t{1} << 20);
static_assert(thread_cache_bytes <= std::size_t{8} << 20, "a thread's cache stays within 8 MiB");
// The transfer tier's storage, every class's slots (transfer.h).
constexpr std::uint32_t class_transfer_slots(unsigned c) {
    return c == 0 ? 0 : transfer_slots(bin_batch(c), sc::class_size[c]);
}
constexpr std::size_t total_transfer_slots() {
    std::size_t n = 0;
    for (unsigned c = 1; c < num_classes; ++c) n += class_transfer_slots(c);
    return n;
}
constexpr std::uint32_t max_transfer_slots() {
    std::uint32_t n = 0;
    for (unsigned c = 1; c < num_classes; ++c) n = class_transfer_slots(c) > n ? class_transfer_slots(c) : n;
    return n;
}
// The most the transfer tiers hold together.
constexpr std::size_t max_transfer_bytes() {
    std::size_t n = 0;
    for (unsigned c = 1; c < num_classes; ++c) n += std::size_t{class_transfer_slots(c)} * sc::class_size[c];
    return n;
}
// The most one thread can hoard: its caps' bytes, every bin full.
constexpr std::size_t max_cached_bytes() { return thread_cache_bytes; }

// A value only its owner thread writes, which others read: the owner writes
// it, and others read it, atomically (load, store, as std::atomic's), while
// the owner's own reads are plain (owner_read), since no write can race with
// them. A plain read is one the compiler may fold into the instruction that
// uses it, as free's fast path folds the cap into its compare.
template <class T>
class owner_written {
public:
    T load(std::memory_order order) const noexcept { return std::atomic_ref<T>(const_cast<T&>(value_)).load(order); }
    void store(T v, std::memory_order order) noexcept { std::atomic_ref<T>(value_).store(v, order); }
    T owner_read() const noexcept { return value_; }

private:
    alignas(std::atomic_ref<T>::required_alignment) T value_{};
};

// 32 bytes, so that a class number is a bin's offset by one shift.
struct cache_bin {
    owner_written<std::uint32_t> count;  // slots[0..count) hold free objects
    // count <= cap <= bin_max_cap: the owner lowers the count before the cap
    // and raises the cap before the count.
    owner_written<std::uint32_t> cap;
    // Room for cap objects: the bin's start region while its cap is at the
    // start, its grown region once it has grown (bin_slots). Written by the
    // owner alone; other threads read it with acquire (bin_slots_of).
    void** slots;
    // The free path's statistics counter, written by the owner only: a free
    // bumps it, a malloc only pops. The mallocs follow from what went
    // through the bin (bin_nmalloc), so a malloc costs no counter update.
    std::atomic<std::uint64_t> nfree;
    // What free's object-start test needs of the class (start_index32): the
    // inverse of the class size's odd part modulo 2^32, and its power of
    // two. Here, in the line free reads anyway, rather than in a table of
    // the classes that free would have to address first.
    std::uint32_t start_inv;
    // sc::class_size of the bin's class in a live cache (0, as the rest, in
    // the two empty fronts, cache_states, whose bins no pop reaches): malloc
    // subtracts it from the profiler's countdown from the bin it has in
    // hand, not from a table it would address first.
    std::uint16_t size;
    std::uint8_t start_shift;
};
static_assert(sizeof(cache_bin) == 32, "a bin's offset is its class shifted by 5");

// The heap profiler's per-thread state (see sampling.h), right after the bins
// in the cache's front.
struct cache_profile {
    // Bytes until the next sample point: every small allocation subtracts its
    // size, and the one that takes it below zero goes out of line
    // (sample_small). Profiling off, it counts down from countdown_off and
    // the out-of-line call only winds it up again, so off and on pay the same
    // subtract-and-branch. Written by the owner with relaxed loads and stores
    // (a plain mov, no read-modify-write); sampler::start/stop also
    // store -1 into it, so that the owner's next allocation looks at
    // `profiling` (a store of theirs lost to the owner's racing write only
    // delays that to the end of the current countdown).
    std::atomic<std::int64_t> bytes_until_sample;
    // profiling_off, profiling_on, or profiling_redraw (on, and the countdown
    // is to be drawn afresh: the rate may have changed). Set for every live
    // cache by sampler::start/stop and for a cache when it is
    // attached, under caches_lock; the owner turns redraw into on. Read only
    // at sample points.
    std::atomic<std::uint8_t> profiling;
    // The rest belongs to the owner thread alone.
    bool in_profiler;     // recording a sample: allocations now are the profiler's own
    std::uint64_t rng;    // the countdown's random state
};
inline constexpr std::uint8_t profiling_off = 0;
inline constexpr std::uint8_t profiling_on = 1;
inline constexpr std::uint8_t profiling_redraw = 2;
// The countdown while profiling is off. A thread that allocates this much
// takes one out-of-line call that winds the countdown up again: a sixteenth
// of a call per MiB is nothing against the allocations that paid for it, and
// it bounds how long a thread can miss a profile_start whose store lost a race.
inline constexpr std::int64_t countdown_off = std::int64_t{16} << 20;

// How the owner sizes its bins (see the essay above); the owner's alone.
struct bin_sizing {
    std::uint64_t traffic;  // nfree + nmalloc at the last look for idle bins
    bool refilled;          // refilled since the bin last gave objects back
    std::uint32_t fill;     // objects the next refill from mcentral takes at most (bin_first_fill)
};
struct cache_sizing {
    std::size_t cap_bytes;  // sum of cap × class size over the bins, <= thread_cache_bytes
    std::uint32_t events;   // slow-path events since the last look for idle bins
    unsigned next_victim;   // the class a grow takes capacity from first
    bin_sizing bins[num_classes];
};

// What the fast paths read of a cache: the bins and the countdown. The bins
// come first, so that bin c lies at c << 5 from the TLS pointer: one shift,
// no add, between a class and its bin on both fast paths.
struct cache_front {
    cache_bin bins[num_classes];
    cache_profile prof;
    // The arena the last refill's objects came from, and its index (address
    // >> arena_shift): free tries it before the arena index, whose two loads
    // would otherwise stand between a pointer and its page's class byte on
    // the chain free's push waits for (fastpath.h). An arena's address for an
    // index never changes once published, so the pair is only ever a correct
    // answer or no answer; ~0 matches no address. Owner only.
    std::uintptr_t arena_index = ~std::uintptr_t{0};
    heap_arena* arena = nullptr;
};

struct mcache : cache_front {
    // Per bin, objects refilled from mcentral less those flushed back (modulo
    // 2^64), written by the owner only, on the slow paths:
    //   nmalloc == nfree + moved_in - count.
    std::atomic<std::uint64_t> moved_in[num_classes];
    cache_sizing sizing;
    mcache* next;  // on the live or the parked list
    mcache* prev;
    void* start_slots[bin_slots.start_slots];
    void* grown_slots[bin_slots.grown_slots];
    // Recently freed large spans, the thread's own (large.h).
    thread_large_slots large;
};

// Bin c's mallocs so far (see mcache::moved_in). Read by another thread
// while the owner runs, a blur of the operations in flight: count is read
// first, with acquire, and the owner bumps nfree before its release store of
// count, so a free seen in count is seen in nfree.
inline std::uint64_t bin_nmalloc(const mcache* mc, unsigned c) noexcept {
    const cache_bin& b = mc->bins[c];
    const std::uint32_t n = b.count.load(std::memory_order_acquire);
    return b.nfree.load(std::memory_order_relaxed) + mc->moved_in[c].load(std::memory_order_relaxed) - n;
}

// Bin c's slots and how many of them there are, as a thread other than the
// owner may read them (statistics, the heap walkers): the owner moves the
// slots once, when the bin first grows, after copying them.
struct bin_view {
    void* const* slots;
    std::uint32_t room;
};
inline bin_view bin_slots_of(const mcache* mc, unsigned c) noexcept {
    void* const* s = std::atomic_ref<void** const>(mc->bins[c].slots).load(std::memory_order_acquire);
    return {s, s == &mc->start_slots[bin_slots.start_at[c]] ? bin_start_cap(c) : bin_max_cap(c)};
}

// The TLS pointer is never null. Before its thread has a cache, and after the
// thread handed it back, it points at one of two empty fronts whose bins hold
// no object and have no room for one: a pop finds its bin empty and a push
// finds it full, as with a live cache, and both go to their slow paths, which
// tell the states apart. So the fast paths pay no test for "no cache" (as
// mimalloc's empty heap). Nothing writes to these two: they are read by every
// thread without one, and the fast paths write to a bin only past the test
// that no empty front passes.
extern cache_front cache_states[2];
inline cache_front* const no_cache_yet = &cache_states[0];
inline cache_front* const cache_exited = &cache_states[1];
extern __thread cache_front* tls_cache __attribute__((tls_model("initial-exec")));

// Whether f is a live cache, not one of the two states above.
inline bool cache_usable(const cache_front* f) {
    return reinterpret_cast<std::uintptr_t>(f) - reinterpret_cast<std::uintptr_t>(cache_states) >= sizeof(cache_states);
}

// The calling thread's cache, or nullptr while it has none (yet, or any more).
inline mcache* thread_cache() {
    cache_front* f = tls_cache;
    return cache_usable(f) ? static_cast<mcache*>(f) : nullptr;
}

// Where the fast paths go when a pop or a push is not enough (no cache yet,
// an empty or a full bin): the only ways into the tiers below.
void* alloc_small_slow(unsigned c) noexcept;
// p: a live object of class c, checked by the caller; it leaves marked free.
void free_small_slow(unsigned c, void* p) noexcept;
// A small allocation p (class c) whose size took mc's countdown below zero:
// a sample when sampling is on, else the countdown starts again (sampler.cpp).
void* sample_small(mcache* mc, void* p, unsigned c) noexcept;
// Refills mc's empty bin c from mcentral and pops an object from it; nullptr
// when the heap could get no memory.
void* refill_and_pop(mcache* mc, unsigned c) noexcept;
// The calling thread's cache, made on first use; nullptr if the thread has
// exited its cache or no memory could be had for one.
mcache* attach() noexcept;
// Returns every object in the calling thread's cache to mcentral.
void flush_thread_cache() noexcept;
// Moves bin c's newest objects, all but `keep`, back to mcentral.
void flush_bin(mcache* mc, unsigned c, std::uint32_t keep) noexcept;
// Moves every object of the transfer tiers back to mcentral.
void drain_transfer() noexcept;
// The pthread key destructor of a thread's cache (runtime.cpp registers it):
// the thread allocates straight from mcentral from now on.
void cache_thread_exit(void* arg) noexcept;
// Hands every object of mc back to mcentral, folds its counters into the
// retired totals and parks it for the next thread.
void retire(mcache* mc) noexcept;

// Takes the newest object of bin b (class c), which holds n > 0 of them.
inline void* bin_pop(cache_bin& b, std::uint32_t n, std::size_t c) noexcept {
    void* p = b.slots[n - 1];
    b.count.store(n - 1, std::memory_order_relaxed);
    unpoison(p, sc::class_size[c]);
    *static_cast<std::uintptr_t*>(p) = 0;  // erase the free mark
    return p;
}

}  // namespace spanmap::detail

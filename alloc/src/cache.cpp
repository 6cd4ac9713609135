#include "fastpath.h"
#include "conf.h"
#include "scavenge.h"
#include "sampling.h"

#include <cerrno>
#include <cstring>

namespace spanmap::detail {

constinit cache_front cache_states[2]{};
// An address in the initial image of a TLS block: the dynamic linker
// relocates the image before it copies it into a thread's block.
__thread cache_front* tls_cache __attribute__((tls_model("initial-exec"))) = no_cache_yet;

namespace {

// Every bin back at its start, in its start region; the bins must be empty.
void reset_sizing(mcache* mc) noexcept {
    cache_sizing& z = mc->sizing;
    for (unsigned c = 1; c < num_classes; ++c) {
        std::atomic_ref<void**>(mc->bins[c].slots).store(&mc->start_slots[bin_slots.start_at[c]], std::memory_order_release);
        mc->bins[c].cap.store(bin_start_cap(c), std::memory_order_relaxed);
        mc->bins[c].size = static_cast<std::uint16_t>(sc::class_size[c]);
        mc->bins[c].start_inv = class_span_shapes[c].start_inv;
        mc->bins[c].start_shift = class_span_shapes[c].start_shift;
        z.bins[c] = bin_sizing{0, false, bin_first_fill(c)};
    }
    z.cap_bytes = start_cap_bytes();
    z.events = 0;
    z.next_victim = 1;
}

mcache* new_cache() noexcept {
    mcache* mc = nullptr;
    {
        lock_guard lk(g.caches_lock);
        if (g.parked != nullptr) {
            mc = g.parked;
            g.parked = mc->next;
            --g.nparked;
        }
    }
    if (mc == nullptr) {
        constexpr std::size_t bytes = round_up(sizeof(mcache), os_page_size);
        mc = static_cast<mcache*>(os_map(bytes));
        if (mc == nullptr) return nullptr;
        // Not under the heap's lock like the other writers: a real add.
        metadata_sys.fetch_add(bytes, std::memory_order_relaxed);
        reset_sizing(mc);
        mc->arena_index = ~std::uintptr_t{0};  // the mapping's zero is page 0's index
        lock_guard lk(g.caches_lock);
        ++g.caches_mapped;
    }
    lock_guard lk(g.caches_lock);
    // Under the lock sampler::start/stop take to set every live cache.
    // A parked cache may have left its thread inside the profiler (a fork
    // child parks the caches of the threads that did not come along).
    const bool profiling = sampling_active();
    mc->prof.profiling.store(profiling ? profiling_redraw : profiling_off, std::memory_order_release);
    // On: the first allocation is a sample point, which draws the countdown.
    mc->prof.bytes_until_sample.store(profiling ? -1 : countdown_off, std::memory_order_relaxed);
    mc->prof.in_profiler = false;
    mc->prev = nullptr;
    mc->next = g.live;
    if (g.live != nullptr) g.live->prev = mc;
    g.live = mc;
    ++g.nlive;
    return mc;
}

}  // namespace

mcache* attach() noexcept {
    if (tls_cache != no_cache_yet) return thread_cache();
    ensure_init();
    mcache* mc = new_cache();
    if (mc == nullptr) return nullptr;
    tls_cache = mc;
    // Our key was made at first use, among the first 32, so glibc keeps its
    // value in the thread descriptor and this does not allocate.
    pthread_setspecific(g.exit_key, mc);
    return mc;
}

void retire(mcache* mc) noexcept {
    large_slots_retire(mc->large);
    for (unsigned c = 1; c < num_classes; ++c) {
        flush_bin(mc, c, 0);
        cache_bin& b = mc->bins[c];
        // Threads may exit together: these two need a real read-modify-write.
        g.retired_nmalloc[c].fetch_add(bin_nmalloc(mc, c), std::memory_order_relaxed);
        g.retired_nfree[c].fetch_add(b.nfree.load(std::memory_order_relaxed), std::memory_order_relaxed);
        b.nfree.store(0, std::memory_order_relaxed);
        mc->moved_in[c].store(0, std::memory_order_relaxed);
    }
    // The next thread starts small again.
    reset_sizing(mc);
    lock_guard lk(g.caches_lock);
    if (mc->prev != nullptr)
        mc->prev->next = mc->next;
    else
        g.live = mc->next;
    if (mc->next != nullptr) mc->next->prev = mc->prev;
    --g.nlive;
    mc->prev = nullptr;
    mc->next = g.parked;
    g.parked = mc;
    ++g.nparked;
}

void cache_thread_exit(void* arg) noexcept {
    // From here on this thread allocates straight from mcentral.
    tls_cache = cache_exited;
    retire(static_cast<mcache*>(arg));
}

namespace {

// Moves bin c's newest objects, all but `keep`, out of the bin: as many whole
// batches as the transfer tier has room for when `via_transfer`, the rest to
// mcentral.
void flush_bin_to(mcache* mc, unsigned c, std::uint32_t keep, bool via_transfer) noexcept {
    cache_bin& b = mc->bins[c];
    const std::uint32_t n = b.count.load(std::memory_order_relaxed);
    if (n <= keep) return;
    const std::uint32_t out = n - keep;
    // The newest objects leave, from the top of the stack, so nothing moves.
    // The bin gives them up before mcentral takes them, so that at no instant
    // is an object in both: a fork taken in between (the child keeps this
    // thread's cache but not this thread) must not see it twice. The slots
    // past the count stay as they are until this thread writes them again.
    bump(mc->moved_in[c], std::uint64_t{0} - out);
    b.count.store(keep, std::memory_order_release);
    const std::uint32_t parked = via_transfer ? g.transfer[c].put(b.slots + keep, out) : 0;
    if (parked != out) g.central[c].release(b.slots + keep + parked, out - parked);
}

// Halves bin c's cap, down to its start, flushing what no longer fits.
void shrink_bin(mcache* mc, unsigned c) noexcept {
    cache_bin& b = mc->bins[c];
    const std::uint32_t cap = b.cap.load(std::memory_order_relaxed);
    const std::uint32_t half = cap / 2 < bin_start_cap(c) ? bin_start_cap(c) : cap / 2;
    if (half == cap) return;
    // The count comes down first: count <= cap at every instant.
    flush_bin_to(mc, c, half, false);
    b.cap.store(half, std::memory_order_release);
    mc->sizing.cap_bytes -= std::size_t{cap - half} * sc::class_size[c];
}

// Makes room for `bytes` more of cap for bin c, within thread_cache_bytes, by
// shrinking the thread's other grown bins, round robin; false when they
// cannot give that much.
bool make_room(mcache* mc, unsigned c, std::size_t bytes) noexcept {
    cache_sizing& z = mc->sizing;
    // One round over the other bins without one that could give ends it.
    unsigned fruitless = 0;
    while (z.cap_bytes + bytes > thread_cache_bytes && fruitless < num_classes - 1) {
        const unsigned v = z.next_victim;
        z.next_victim = v + 1 < num_classes ? v + 1 : 1;
        if (v == c || mc->bins[v].cap.load(std::memory_order_relaxed) == bin_start_cap(v)) {
            ++fruitless;
            continue;
        }
        shrink_bin(mc, v);
        fruitless = 0;
    }
    return z.cap_bytes + bytes <= thread_cache_bytes;
}

// Bin c is full and a free wants in: doubles its cap when its working set
// does not fit (see cache.h); false when it keeps its cap.
bool grow_bin(mcache* mc, unsigned c) noexcept {
    cache_bin& b = mc->bins[c];
    if (!mc->sizing.bins[c].refilled) return false;
    const std::uint32_t cap = b.cap.load(std::memory_order_relaxed);
    const std::uint32_t want = 2 * cap < bin_max_cap(c) ? 2 * cap : bin_max_cap(c);
    if (want == cap) return false;
    const std::size_t bytes = std::size_t{want - cap} * sc::class_size[c];
    if (!make_room(mc, c, bytes)) return false;
    mc->sizing.cap_bytes += bytes;
    void** const grown = &mc->grown_slots[bin_slots.grown_at[c]];
    if (b.slots != grown) {
        // The first growth: the objects move to the bin's own region before
        // the bin points there (a fork child, or a reader, sees them in one
        // place or the other, never in neither).
        std::memcpy(static_cast<void*>(grown), b.slots, b.count.load(std::memory_order_relaxed) * sizeof(void*));
        std::atomic_ref<void**>(b.slots).store(grown, std::memory_order_release);
    }
    b.cap.store(want, std::memory_order_release);
    return true;
}

// Counts a slow-path event; every sizing_period of them, halves the grown
// bins that saw neither a malloc nor a free since the last time.
void note_slow_event(mcache* mc) noexcept {
    cache_sizing& z = mc->sizing;
    if (++z.events < sizing_period) return;
    z.events = 0;
    for (unsigned c = 1; c < num_classes; ++c) {
        const cache_bin& b = mc->bins[c];
        // Both only grow, so their sum changes exactly when either does.
        const std::uint64_t traffic = b.nfree.load(std::memory_order_relaxed) + bin_nmalloc(mc, c);
        if (traffic == z.bins[c].traffic && b.cap.load(std::memory_order_relaxed) != bin_start_cap(c))
            shrink_bin(mc, c);
        z.bins[c].traffic = traffic;
    }
}

}  // namespace

void flush_bin(mcache* mc, unsigned c, std::uint32_t keep) noexcept { flush_bin_to(mc, c, keep, false); }

void drain_transfer() noexcept {
    void* objs[max_transfer_slots()];
    for (unsigned c = 1; c < num_classes; ++c) {
        const std::uint32_t n = g.transfer[c].take_all(objs);
        if (n != 0) g.central[c].release(objs, n);
    }
}

SPANMAP_ALLOC_TEXT void* alloc_small_slow(unsigned c) noexcept {
    const int saved_errno = errno;
    mcache* mc = attach();
    errno = saved_errno;
    if (mc == nullptr) {
        void* p = nullptr;
        if (g.central[c].fill(&p, 1) == 0) return nullptr;
        // Counted with a read-modify-write: there is no owner thread here.
        g.retired_nmalloc[c].fetch_add(1, std::memory_order_relaxed);
        unpoison(p, sc::class_size[c]);
        *static_cast<std::uintptr_t*>(p) = 0;
        return p;
    }
    cache_bin& b = mc->bins[c];
    const std::uint32_t n = b.count.load(std::memory_order_relaxed);
    void* p = n != 0 ? bin_pop(b, n, c) : refill_and_pop(mc, c);
    return p != nullptr ? count_for_profile(mc, b, p) : nullptr;
}

void* refill_and_pop(mcache* mc, unsigned c) noexcept {
    cache_bin& b = mc->bins[c];
    const std::uint32_t move = bin_move(c, b.cap.load(std::memory_order_relaxed));
    // Batches another cache gave up come marked (transfer.h).
    std::size_t got = g.transfer[c].take(b.slots, move);
    if (got == 0) {
        maybe_start_scavenger();
        // Fresh objects ramp up (bin_first_fill); batches from the transfer
        // tier are marked already, so they come whole.
        std::uint32_t& fill = mc->sizing.bins[c].fill;
        got = g.central[c].fill(b.slots, fill < move ? fill : move);
        if (got == 0) return nullptr;
        if (fill < move) fill = 2 * fill < move ? 2 * fill : move;
        // Out of their span's free set, the objects are marked free before
        // the bin exposes them (fastpath.h), outside mcentral's lock; the one
        // about to be popped needs none.
        for (std::size_t i = 0; i + 1 < got; ++i) {
            *static_cast<std::uintptr_t*>(b.slots[i]) = free_mark(reinterpret_cast<std::uintptr_t>(b.slots[i]));
            poison_free_object(b.slots[i], sc::class_size[c]);
        }
    }
    bump(mc->moved_in[c], std::uint64_t{got});
    b.count.store(static_cast<std::uint32_t>(got), std::memory_order_release);
    mc->sizing.bins[c].refilled = true;
    // Frees mostly return what was recently handed out: the batch's arena
    // is the next free's likeliest (cache_front::arena).
    const auto first = reinterpret_cast<std::uintptr_t>(b.slots[0]);
    mc->arena = arena_of(first);
    mc->arena_index = first >> arena_shift;
    void* p = bin_pop(b, static_cast<std::uint32_t>(got), c);
    // After the pop, which is traffic: the look for idle bins passes this one.
    note_slow_event(mc);
    return p;
}

void free_small_slow(unsigned c, void* p) noexcept {
    const std::uintptr_t mark = free_mark(reinterpret_cast<std::uintptr_t>(p));
    const int saved_errno = errno;
    mcache* mc = attach();
    errno = saved_errno;
    if (mc == nullptr) {
        *static_cast<std::uintptr_t*>(p) = mark;
        poison_free_object(p, sc::class_size[c]);
        g.central[c].release(&p, 1);
        g.retired_nfree[c].fetch_add(1, std::memory_order_relaxed);
        return;
    }
    cache_bin& b = mc->bins[c];
    const std::uint32_t cap = b.cap.load(std::memory_order_relaxed);
    const bool full = b.count.load(std::memory_order_relaxed) == cap;
    if (full && !grow_bin(mc, c)) {
        flush_bin_to(mc, c, cap - bin_move(c, cap), true);
        mc->sizing.bins[c].refilled = false;
        // Frees that empty spans are what the scavenger is for; it may be due.
        maybe_start_scavenger();
    }
    mark_and_push(b, b.count.load(std::memory_order_relaxed), p, mark, c);
    // After the push, which is traffic: the look for idle bins passes this one.
    if (full) note_slow_event(mc);
}

void flush_thread_cache() noexcept {
    drain_transfer();
    mcache* mc = thread_cache();
    if (mc == nullptr) return;
    for (unsigned c = 1; c < num_classes; ++c) flush_bin(mc, c, 0);
    maybe_start_scavenger();
}

}  // namespace spanmap::detail

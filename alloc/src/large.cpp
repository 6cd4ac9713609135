#include "large.h"

#include "cache.h"
#include "scavenge.h"

#include <sched.h>

namespace spanmap::detail {

void large_cache::unlink(mspan* s, std::uint32_t npages) noexcept {
    if (s->prev != nullptr)
        s->prev->next = s->next;
    else
        heads_[npages] = s->next;
    if (s->next != nullptr) s->next->prev = s->prev;
    if (heads_[npages] == nullptr) nonempty_[npages / 64] &= ~(std::uint64_t{1} << (npages % 64));
    s->next = nullptr;
    s->prev = nullptr;
    bump(pages_, -std::size_t{npages});
    bump(spans_, std::size_t(-1));
}

std::uint32_t large_cache::first_nonempty(std::size_t npages) const noexcept {
    if (npages > max_pages) return 0;
    std::size_t w = npages / 64;
    std::uint64_t bits = nonempty_[w] & (~std::uint64_t{0} << (npages % 64));
    while (bits == 0) {
        if (++w == nonempty_words) return 0;
        bits = nonempty_[w];
    }
    return static_cast<std::uint32_t>(w * 64 + static_cast<std::size_t>(__builtin_ctzll(bits)));
}

mspan* large_cache::take_fit(std::size_t npages) noexcept {
    if (npages > max_pages) return nullptr;
    lock_guard lk(lock_);
    const std::uint32_t np = first_nonempty(npages);
    if (np == 0) return nullptr;
    mspan* s = heads_[np];
    unlink(s, np);
    s->parked.store(false, std::memory_order_relaxed);
    bump(ntake_);
    bump(bytes_taken_, std::uint64_t{np} * page_size);
    return s;
}

bool large_cache::put(mspan* s, const void* ptr) noexcept {
    lock_guard lk(lock_);
    if (s->parked.load(std::memory_order_relaxed)) fatal("free", ptr, "double free (the large block is already free)");
    const std::uint32_t n = s->npages;
    if (n > max_pages || (pages_.load(std::memory_order_relaxed) + n) * page_size > max_bytes) return false;
    s->parked.store(true, std::memory_order_relaxed);
    s->parked_tick = g.heap.tick();
    s->needzero = true;
    s->prev = nullptr;
    s->next = heads_[n];
    if (heads_[n] != nullptr) heads_[n]->prev = s;
    heads_[n] = s;
    nonempty_[n / 64] |= std::uint64_t{1} << (n % 64);
    bump(pages_, std::size_t{n});
    bump(spans_);
    bump(nput_);
    bump(bytes_put_, std::uint64_t{n} * page_size);
    return true;
}

std::size_t large_cache::take_old(std::uint32_t now, std::uint32_t min_age, mspan** out, std::size_t room) noexcept {
    lock_guard lk(lock_);
    std::size_t n = 0;
    for (std::uint32_t np = first_nonempty(1); np != 0 && n < room; np = first_nonempty(np + 1)) {
        for (mspan* s = heads_[np]; s != nullptr && n < room;) {
            mspan* next = s->next;
            if (min_age == 0 || now - s->parked_tick >= min_age) {
                unlink(s, np);
                s->parked.store(false, std::memory_order_relaxed);
                bump(nreturned_);
                bump(bytes_returned_, std::uint64_t{np} * page_size);
                out[n++] = s;
            }
            s = next;
        }
    }
    return n;
}

namespace {

// Central spans back to the heap: those older than min_age ticks (0: all).
void central_trim(std::uint32_t now, std::uint32_t min_age) noexcept {
    // A few spans per round, each given back under the heap's lock alone.
    mspan* spans[32];
    for (;;) {
        const std::size_t n = g.large.take_old(now, min_age, spans, sizeof spans / sizeof spans[0]);
        g.heap.free_spans(spans, n);
        if (n < sizeof spans / sizeof spans[0]) return;
    }
}

// A span that left a thread's slot other than by its owner's malloc: the
// tier it goes to counts it freed again, so the slots count it returned.
void left_slot(mspan* s) noexcept {
    s->parked.store(false, std::memory_order_relaxed);
    slot_totals.nreturned.fetch_add(1, std::memory_order_relaxed);
    slot_totals.bytes_returned.fetch_add(std::uint64_t{s->npages} * page_size, std::memory_order_relaxed);
}

// The owner empties slot i into the central cache (the heap when it is full).
void evict(thread_large_slots& t, unsigned i) noexcept {
    t.held -= t.pages[i].load(std::memory_order_relaxed);
    t.pages[i].store(0, std::memory_order_relaxed);
    mspan* s = slot_take(t, i);
    if (s == nullptr) return;
    left_slot(s);
    if (!g.large.put(s, reinterpret_cast<void*>(s->base))) g.heap.free_span(s);
}

// Whether membarrier took, so that owners may take with plain stores while
// no trimmer runs (large.h). Written at initialisation and in a fork child.
std::atomic<bool> heavy_fence_ok{false};

bool slot_due(const thread_large_slots& t, unsigned i, std::uint32_t now, std::uint32_t min_age) noexcept {
    return t.span[i].load(std::memory_order_relaxed) != nullptr &&
           (min_age == 0 || now - t.tick[i].load(std::memory_order_relaxed) >= min_age);
}

// Whether some thread's slot holds a span to trim: the handshake below costs
// a membarrier, which most ticks need not pay. Racy, and that is enough: a
// span parked after this look waits for the next.
bool any_slot_due(std::uint32_t now, std::uint32_t min_age) noexcept {
    lock_guard lk(g.caches_lock);
    for (const mcache* mc = g.live; mc != nullptr; mc = mc->next)
        for (unsigned i = 0; i < thread_large_slots::nslots; ++i)
            if (slot_due(mc->large, i, now, min_age)) return true;
    return false;
}

// The trimmer's side of the handshake (large.h): from its return on, every
// owner exchanges. False when the barrier failed where it had been granted;
// the owners then exchange for good, and this trim leaves the slots alone.
bool enter_slot_trim() noexcept {
    slot_trimmers.fetch_add(1, std::memory_order_seq_cst);
    if (!heavy_fence_ok.load(std::memory_order_relaxed)) return true;  // owners have exchanged all along
    if (!os_heavy_fence()) {
        heavy_fence_ok.store(false, std::memory_order_relaxed);  // and the count above is never taken back
        return false;
    }
    lock_guard lk(g.caches_lock);
    for (const mcache* mc = g.live; mc != nullptr; mc = mc->next) {
        // An owner inside a take is a few instructions from its end, unless
        // it was preempted there.
        for (unsigned spins = 0; mc->large.in_take.load(std::memory_order_acquire) != 0; ++spins)
            if (spins >= 64) sched_yield();
    }
    return true;
}

// Every thread's slots: spans parked before `now - min_age` (all, min_age 0)
// to the heap. The span words are exchanged under caches_lock, which keeps
// the caches from being handed back meanwhile; the heap's lock comes after it
// in the lock order, so the spans are freed once it is dropped.
void slots_trim(std::uint32_t now, std::uint32_t min_age) noexcept {
    if (!any_slot_due(now, min_age)) return;
    if (!enter_slot_trim()) return;
    mspan* spans[32];
    constexpr std::size_t room = sizeof spans / sizeof spans[0];
    for (bool more = true; more;) {
        std::size_t n = 0;
        more = false;
        {
            lock_guard lk(g.caches_lock);
            for (mcache* mc = g.live; mc != nullptr && !more; mc = mc->next) {
                thread_large_slots& t = mc->large;
                for (unsigned i = 0; i < thread_large_slots::nslots; ++i) {
                    if (!slot_due(t, i, now, min_age)) continue;
                    if (n == room) {
                        more = true;
                        break;
                    }
                    if (mspan* s = t.span[i].exchange(nullptr, std::memory_order_acquire)) spans[n++] = s;
                }
            }
        }
        for (std::size_t i = 0; i < n; ++i) {
            left_slot(spans[i]);
            g.heap.free_span(spans[i]);
        }
    }
    slot_trimmers.fetch_sub(1, std::memory_order_release);
}

// The slow side of a put: the slots a trimmer emptied are forgotten, then
// the slots are pushed out in turn, the oldest first (a slot is refilled
// where it was emptied, so the turn follows the parking order closely
// enough), until n pages fit; returns the free slot to use.
unsigned large_slots_make_room(thread_large_slots& t, std::uint32_t n) noexcept {
    unsigned slot = thread_large_slots::nslots;
    for (unsigned i = 0; i < thread_large_slots::nslots; ++i) {
        const std::uint32_t np = t.pages[i].load(std::memory_order_relaxed);
        if (np != 0 && t.span[i].load(std::memory_order_relaxed) == nullptr) {
            t.held -= np;
            t.pages[i].store(0, std::memory_order_relaxed);
        }
        if (t.pages[i].load(std::memory_order_relaxed) == 0 && slot == thread_large_slots::nslots) slot = i;
    }
    while (slot == thread_large_slots::nslots || t.held + n > thread_large_slots::max_pages) {
        const unsigned v = t.victim;
        t.victim = (v + 1) % thread_large_slots::nslots;
        if (t.pages[v].load(std::memory_order_relaxed) == 0) continue;
        evict(t, v);
        if (slot == thread_large_slots::nslots) slot = v;
    }
    return slot;
}

}  // namespace

constinit large_slot_totals slot_totals;
constinit std::atomic<std::uint32_t> slot_trimmers{1};

void large_slots_init() noexcept {
#ifndef SPANMAP_TSAN
    heavy_fence_ok.store(os_heavy_fence_register(), std::memory_order_relaxed);
    if (heavy_fence_ok.load(std::memory_order_relaxed)) slot_trimmers.fetch_sub(1, std::memory_order_release);
#endif
}

void large_slots_after_fork_child() noexcept {
    // The one thread left: no owner is inside a take, and a trimmer counted
    // in slot_trimmers may have stayed behind in the parent.
#ifndef SPANMAP_TSAN
    const bool ok = heavy_fence_ok.load(std::memory_order_relaxed) && os_heavy_fence_register();
    heavy_fence_ok.store(ok, std::memory_order_relaxed);
    slot_trimmers.store(ok ? 0 : 1, std::memory_order_release);
#endif
    for (mcache* mc = g.live; mc != nullptr; mc = mc->next) mc->large.in_take.store(0, std::memory_order_relaxed);
}

bool large_slots_put(thread_large_slots& t, mspan* s) noexcept {
    const std::uint32_t n = s->npages;
    if (n > thread_large_slots::max_pages) return false;
    unsigned slot = thread_large_slots::nslots;
    // The common case: room, and a slot the owner emptied.
    if (t.held + n <= thread_large_slots::max_pages) {
        for (unsigned i = 0; i < thread_large_slots::nslots; ++i)
            if (t.pages[i].load(std::memory_order_relaxed) == 0) {
                slot = i;
                break;
            }
    }
    if (slot == thread_large_slots::nslots) slot = large_slots_make_room(t, n);
    s->parked.store(true, std::memory_order_relaxed);
    s->needzero = true;
    t.tick[slot].store(g.heap.tick(), std::memory_order_relaxed);
    t.pages[slot].store(n, std::memory_order_relaxed);
    t.held += n;
    // Release: a trimmer that exchanges the span out sees it parked.
    t.span[slot].store(s, std::memory_order_release);
    bump(t.nput);
    bump(t.bytes_put, std::uint64_t{n} * page_size);
    return true;
}

mspan* large_slots_take_fit(thread_large_slots& t, std::size_t npages) noexcept {
    unsigned best = thread_large_slots::nslots;
    std::uint32_t best_pages = ~std::uint32_t{0};
    for (unsigned i = 0; i < thread_large_slots::nslots; ++i) {
        const std::uint32_t np = t.pages[i].load(std::memory_order_relaxed);
        if (np >= npages && np < best_pages) {
            best = i;
            best_pages = np;
        }
    }
    // A trimmer may have emptied it: then it is a miss.
    return best == thread_large_slots::nslots ? nullptr : large_slot_take_back(t, best, best_pages);
}

void large_slots_flush(thread_large_slots& t) noexcept {
    for (unsigned i = 0; i < thread_large_slots::nslots; ++i) evict(t, i);
}

void large_slots_retire(thread_large_slots& t) noexcept {
    large_slots_flush(t);
    t.victim = 0;
    // Threads may exit together: real read-modify-writes.
    slot_totals.nput.fetch_add(t.nput.load(std::memory_order_relaxed), std::memory_order_relaxed);
    slot_totals.ntake.fetch_add(t.ntake.load(std::memory_order_relaxed), std::memory_order_relaxed);
    slot_totals.bytes_put.fetch_add(t.bytes_put.load(std::memory_order_relaxed), std::memory_order_relaxed);
    slot_totals.bytes_taken.fetch_add(t.bytes_taken.load(std::memory_order_relaxed), std::memory_order_relaxed);
    t.nput.store(0, std::memory_order_relaxed);
    t.ntake.store(0, std::memory_order_relaxed);
    t.bytes_put.store(0, std::memory_order_relaxed);
    t.bytes_taken.store(0, std::memory_order_relaxed);
}

slot_census large_slots_census_locked() noexcept {
    constexpr auto r = std::memory_order_relaxed;
    slot_census c{0, 0, slot_totals.nput.load(r), slot_totals.ntake.load(r), slot_totals.bytes_put.load(r),
                  slot_totals.bytes_taken.load(r)};
    for (const mcache* mc = g.live; mc != nullptr; mc = mc->next) {
        const thread_large_slots& t = mc->large;
        c.nput += t.nput.load(r);
        c.ntake += t.ntake.load(r);
        c.bytes_put += t.bytes_put.load(r);
        c.bytes_taken += t.bytes_taken.load(r);
        // From the slots themselves rather than the counters: a fork child
        // may inherit another thread's counters caught between two writes.
        for (unsigned i = 0; i < thread_large_slots::nslots; ++i) {
            if (t.span[i].load(r) == nullptr) continue;
            ++c.spans;
            c.pages += t.pages[i].load(r);
        }
    }
    return c;
}

void large_cache_trim(std::uint32_t now, std::uint32_t min_age) noexcept {
    central_trim(now, min_age);
    slots_trim(now, min_age);
}

mspan* large_alloc_span(std::size_t npages, std::size_t align_pages, thread_large_slots* t) noexcept {
    // No exact fit in the thread's slots (alloc_large tried): the smallest
    // parked span that fits, the thread's own first, cut to size. The cut
    // takes the heap's lock, never with the cache's held.
    if (align_pages <= 1) {
        mspan* s = t != nullptr ? large_slots_take_fit(*t, npages) : nullptr;
        if (s == nullptr) s = g.large.take_fit(npages);
        if (s != nullptr) {
            if (s->npages > npages) g.heap.shrink_span(s, npages);
            return s;
        }
    }
    // Nothing parked fits alone: if all of it together could serve the
    // request, it goes back to the heap first, where it coalesces, so that
    // the heap reuses those pages rather than growing.
    const std::size_t held = t != nullptr ? large_slots_pages(*t) : 0;
    if (held != 0 && held + g.large.pages() >= npages) large_slots_flush(*t);
    if (g.large.pages() >= npages) central_trim(0, 0);
    return g.heap.alloc_span(npages, align_pages, 0);
}

void large_free_span(mspan* s, void* ptr) noexcept {
    if (!g.large.put(s, ptr)) g.heap.free_span(s);
    maybe_start_scavenger();
}

}  // namespace spanmap::detail

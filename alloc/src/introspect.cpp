// The allocator's side of introspect.h: its figures copied out under its own
// locks. The lock order is the allocator's (runtime.h): every mcentral in
// class order, then mheap, then the cache list; a walk takes them all.
#include "introspect.h"

#include "cache.h"
#include "conf.h"

#include <cstring>

namespace spanmap::introspect {

using namespace spanmap::detail;

static_assert(num_classes == detail::num_classes);
static_assert(page_size == detail::page_size);
static_assert(arena_bytes == detail::arena_bytes);
static_assert(sizeof(arena_pages_copy::free_bits) == sizeof(heap_arena::free_bits));
static_assert(std::string_view(arena_vma_name) == std::string_view(detail::arena_vma_name));

namespace {

// Counters of running threads are read while they run: a difference that
// would go below zero is a blur of operations in flight, shown as 0.
constexpr std::uint64_t sub_sat(std::uint64_t a, std::uint64_t b) { return a > b ? a - b : 0; }

std::uint64_t load(const std::atomic<std::uint64_t>& v) { return v.load(std::memory_order_relaxed); }

constexpr std::uint64_t objects_per_span(unsigned c) {
    return std::uint64_t{sc::class_pages[c]} * detail::page_size / sc::class_size[c];
}

// The size a thread cache's mapping is rounded to (cache.cpp's new_cache).
constexpr std::size_t mcache_mapped_bytes = round_up(sizeof(mcache), os_page_size);

// Under caches_lock.
void read_caches_locked(counters& k) {
    for (const mcache* mc = g.live; mc != nullptr; mc = mc->next) {
        for (unsigned c = 1; c < num_classes; ++c) {
            k.nmalloc[c] += bin_nmalloc(mc, c);
            k.nfree[c] += load(mc->bins[c].nfree);
        }
    }
    // The threads' large slots, counted as the large cache is (below): a
    // span that left a slot other than by its owner's malloc was counted
    // freed again where it went.
    const slot_census slots = large_slots_census_locked();
    k.nmalloc[0] += slots.ntake;
    k.nfree[0] += slots.nput - load(slot_totals.nreturned);
    k.large_bytes_alloc += slots.bytes_taken;
    k.large_bytes_freed += slots.bytes_put - load(slot_totals.bytes_returned);
    k.live_caches = g.nlive;
    k.parked_caches = g.nparked;
    k.caches_mapped = g.caches_mapped;
}

// Under caches_lock.
void cached_objects_locked(heap_shape& h) {
    for (unsigned c = 0; c < num_classes; ++c) h.cached[c] = 0;
    for (const mcache* mc = g.live; mc != nullptr; mc = mc->next)
        for (unsigned c = 1; c < num_classes; ++c) h.cached[c] += mc->bins[c].count.load(std::memory_order_relaxed);
    // Objects in transit between caches are cached too (transfer.h).
    for (unsigned c = 1; c < num_classes; ++c) h.cached[c] += g.transfer[c].size();
}

// Everything but what needs the heap's or the cache list's lock.
void read_unlocked_counters(counters& k) {
    k = counters{};
    // Threads without a cache, and caches handed back, count here.
    for (unsigned c = 1; c < num_classes; ++c) {
        k.nmalloc[c] = load(g.retired_nmalloc[c]);
        k.nfree[c] = load(g.retired_nfree[c]);
    }
    // A large span parked in the large cache was freed by the program when
    // it was parked and allocated again when taken; the heap counts a freed
    // span only when it comes back from the cache, which the cache already
    // counted.
    k.nmalloc[0] = g.heap.large_nmalloc() + g.large.ntake();
    k.nfree[0] = g.heap.large_nfree() + g.large.nput() - g.large.nreturned();
    k.large_bytes_alloc = g.heap.large_bytes_alloc() + g.large.bytes_taken();
    k.large_bytes_freed = g.heap.large_bytes_freed() + g.large.bytes_put() - g.large.bytes_returned();
    k.pages_released = g.heap.pages_released();
    k.metadata_sys = metadata_sys.load(std::memory_order_relaxed);
    k.span_record_bytes = sizeof(mspan);
    k.cache_record_bytes = sizeof(mcache);
    k.cache_mapped_bytes = mcache_mapped_bytes;
}

// Walks every arena page, span and live cache; the caller holds lock_all().
void shape_from_walk(heap_shape& h) {
    h = heap_shape{};
    const std::size_t n = g.heap.arenas();
    heap_arena* const* arenas = g.heap.arena_list();
    h.arenas = n;
    // The end of the last large span seen: the page map names only its first
    // page (heap.h), and it may run on into the next arena.
    std::uintptr_t large_end = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const heap_arena* a = arenas[i];
        for (std::size_t pg = 0; pg < a->reserved_pages; ++pg) {
            const std::uintptr_t addr = a->base + pg * detail::page_size;
            const mspan* s = a->spans[pg].load(std::memory_order_relaxed);
            if (s == nullptr) {
                ++(addr < large_end ? h.pages_in_use : h.pages_idle);
                continue;
            }
            ++h.pages_in_use;
            // A span is counted at its first page.
            if (s->base != addr) continue;
            if (s->state != span_state::small) large_end = s->end();
            ++h.span_records;
            if (s->state == span_state::small) {
                ++h.spans[s->size_class];
                h.free[s->size_class] += s->nfree;
            } else if (s->parked.load(std::memory_order_relaxed)) {
                ++h.parked_spans;
                h.parked_bytes += std::uint64_t{s->npages} * detail::page_size;
            } else {
                ++h.spans[0];
                h.large_bytes += std::uint64_t{s->npages} * detail::page_size;
            }
        }
    }
    cached_objects_locked(h);
    for (unsigned c = 1; c < num_classes; ++c)
        h.live[c] = sub_sat(h.spans[c] * objects_per_span(c), h.free[c] + h.cached[c]);
    h.live[0] = h.spans[0];
}

bool in_some_cache(unsigned c, std::uintptr_t obj) {
    for (const mcache* mc = g.live; mc != nullptr; mc = mc->next) {
        const std::uint32_t n = mc->bins[c].count.load(std::memory_order_relaxed);
        const bin_view v = bin_slots_of(mc, c);
        for (std::uint32_t i = 0; i < n && i < v.room; ++i)
            if (reinterpret_cast<std::uintptr_t>(v.slots[i]) == obj) return true;
    }
    return false;
}

void describe_span(const mspan* s, address_facts& r) {
    r.span_start = s->base;
    r.span_end = s->end();
    r.pages = s->npages;
    r.size_class = s->size_class;
}

}  // namespace

std::uint32_t class_size(unsigned c) noexcept { return c < num_classes ? sc::class_size[c] : 0; }
std::uint32_t class_pages(unsigned c) noexcept { return c < num_classes ? sc::class_pages[c] : 0; }

void ensure_init() noexcept { detail::ensure_init(); }

bool stats_print_requested() noexcept {
    detail::ensure_init();
    return conf.stats_print;
}

void read_counters(counters& k) noexcept {
    detail::ensure_init();
    read_unlocked_counters(k);
    // One lock at a time: the heap's for the span pool, the list's for caches.
    {
        lock_guard lk(g.heap.lock());
        k.span_records_mapped = g.heap.spans().mapped_bytes();
    }
    lock_guard lk(g.caches_lock);
    read_caches_locked(k);
}

void shape_from_counters(const counters& k, heap_shape& h) noexcept {
    h = heap_shape{};
    h.arenas = g.heap.arenas();
    h.pages_in_use = g.heap.pages_in_use();
    h.pages_idle = sub_sat(g.heap.pages_reserved(), h.pages_in_use);
    {
        lock_guard lk(g.heap.lock());
        h.span_records = g.heap.spans().in_use();
    }
    slot_census slots{};
    {
        lock_guard lk(g.caches_lock);
        cached_objects_locked(h);
        slots = large_slots_census_locked();
    }
    for (unsigned c = 1; c < num_classes; ++c) {
        h.spans[c] = g.heap.class_spans(c);
        h.live[c] = sub_sat(k.nmalloc[c], k.nfree[c]);
        h.free[c] = sub_sat(h.spans[c] * objects_per_span(c), h.live[c] + h.cached[c]);
    }
    h.parked_spans = g.large.spans() + slots.spans;
    h.parked_bytes = (std::uint64_t{g.large.pages()} + slots.pages) * detail::page_size;
    h.spans[0] = sub_sat(g.heap.large_spans(), h.parked_spans);
    h.live[0] = sub_sat(k.nmalloc[0], k.nfree[0]);
    h.large_bytes = sub_sat(k.large_bytes_alloc, k.large_bytes_freed);
}

void walk(counters& k, heap_shape& h) noexcept {
    detail::ensure_init();
    lock_all();
    read_unlocked_counters(k);
    k.span_records_mapped = g.heap.spans().mapped_bytes();
    read_caches_locked(k);
    shape_from_walk(h);
    unlock_all();
}

std::size_t read_caches(void (*fn)(void* ctx, const cache_row& row), void* ctx) noexcept {
    detail::ensure_init();
    const mcache* self = thread_cache();
    lock_guard lk(g.caches_lock);
    std::size_t n = 0;
    for (const mcache* mc = g.live; mc != nullptr; mc = mc->next, ++n) {
        cache_row r{mc, mc == self, 0, 0};
        for (unsigned c = 1; c < num_classes; ++c) {
            const std::uint64_t count = mc->bins[c].count.load(std::memory_order_relaxed);
            r.objects += count;
            r.bytes += count * sc::class_size[c];
        }
        fn(ctx, r);
    }
    return n;
}

[[gnu::cold]] address_facts look_up(const void* ptr) noexcept {
    const auto p = reinterpret_cast<std::uintptr_t>(ptr);
    address_facts r{};
    r.where = place::not_in_heap;
    const heap_arena* a = arena_of(p);
    if (a == nullptr) return r;
    {
        // The arena's unreserved top is not the heap's yet.
        lock_guard heap(g.heap.lock());
        if (p - a->base >= std::uintptr_t{a->reserved_pages} * detail::page_size) return r;
    }
    r.arena = a->base;

    // Which class? The page map is read under the heap's lock; a small span's
    // bitmap needs its mcentral's lock too, which comes first in the lock
    // order — so take it, then check the span is still the one seen.
    for (;;) {
        unsigned c = 0;
        {
            lock_guard heap(g.heap.lock());
            // A free page first: then span_containing's walk back over the
            // page map, which may cross a long free run, is not needed.
            const std::size_t pg = (p - a->base) >> detail::page_shift;
            const bool page_free = (a->free_bits[pg / 64] >> (pg % 64)) & 1;
            const mspan* s = page_free ? nullptr : span_containing(p);
            if (s == nullptr) {
                r.where = place::idle_page;
                return r;
            }
            if (s->state == span_state::large) {
                describe_span(s, r);
                r.object_size = std::size_t{s->npages} * detail::page_size;
                r.object_start = s->base;
                r.interior = p != s->base;
                // A parked span is free, in the large cache.
                r.where = s->parked.load(std::memory_order_relaxed) ? place::cached : place::allocated;
                return r;
            }
            c = s->size_class;
        }
        lock_guard central(g.central[c].lock());
        lock_guard heap(g.heap.lock());
        const mspan* s = span_of(p);
        if (s == nullptr || s->state != span_state::small || s->size_class != c) continue;  // changed meanwhile
        describe_span(s, r);
        r.object_size = s->elem_size;
        const std::uint32_t idx = object_index(s, p);
        r.object_index = idx;
        r.object_start = s->base + std::uintptr_t{idx} * s->elem_size;
        r.interior = p != r.object_start;
        if (idx >= s->nelems) {
            r.where = place::span_tail;
            r.object_start = 0;
            r.interior = false;
            return r;
        }
        if ((s->free_bits[idx / 64] >> (idx % 64)) & 1) {
            r.where = place::free;
            return r;
        }
        lock_guard caches(g.caches_lock);
        r.where = in_some_cache(c, r.object_start) ? place::cached : place::allocated;
        return r;
    }
}

void for_each_arena(void (*fn)(void* ctx, std::uintptr_t base, std::uint32_t reserved_pages), void* ctx) noexcept {
    detail::ensure_init();
    lock_guard lk(g.heap.lock());
    const std::size_t n = g.heap.arenas();
    heap_arena* const* list = g.heap.arena_list();
    for (std::size_t i = 0; i < n; ++i) fn(ctx, list[i]->base, list[i]->reserved_pages);
}

bool copy_arena(std::uintptr_t base, arena_pages_copy& out) noexcept {
    lock_guard lk(g.heap.lock());
    const heap_arena* a = arena_of(base);
    if (a == nullptr || a->base != base) return false;
    out.base = base;
    out.named = a->named;
    out.reserved_pages = a->reserved_pages;
    std::memcpy(out.free_bits, a->free_bits, sizeof out.free_bits);
    return true;
}

heap_totals read_heap_totals() noexcept {
    return {g.heap.arenas(), g.heap.pages_reserved(), g.heap.pages_released(), g.heap.name_errno()};
}

}  // namespace spanmap::introspect

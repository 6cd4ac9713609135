// The snapshot: counters and the heap's shape, summed into mem_stats and the
// per-class table. See collect.h for the two ways the shape is found.
#include "collect.h"

#include <spanmap/spanmap.h>

#include <cstddef>

namespace spanmap::detail {
namespace {

// Counters of running threads are read while they run: a difference that
// would go below zero is a blur of operations in flight, shown as 0.
constexpr std::uint64_t sub_sat(std::uint64_t a, std::uint64_t b) { return a > b ? a - b : 0; }

std::uint64_t load(const std::atomic<std::uint64_t>& v) { return v.load(std::memory_order_relaxed); }

// Every field of mem_stats is in SPANMAP_MEM_STATS_FIELDS: the reports and
// the tests walk that list, so a field left out of it would go unseen.
#define SPANMAP_COUNT_FIELD(name) +1
constexpr std::size_t listed_fields = 0 SPANMAP_MEM_STATS_FIELDS(SPANMAP_COUNT_FIELD);
#undef SPANMAP_COUNT_FIELD
static_assert(sizeof(mem_stats) == listed_fields * sizeof(std::uint64_t) + sizeof(mem_stats::by_size),
              "a field of spanmap_mem_stats is missing from SPANMAP_MEM_STATS_FIELDS");

void read_caches_locked(counters& k) {
    for (const mcache* mc = g.live; mc != nullptr; mc = mc->next) {
        for (unsigned c = 1; c < num_classes; ++c) {
            k.nmalloc[c] += bin_nmalloc(mc->bins[c]);
            k.nfree[c] += load(mc->bins[c].nfree);
        }
    }
    k.live_caches = g.nlive;
    k.parked_caches = g.nparked;
    k.caches_mapped = g.caches_mapped;
}

void cached_objects_locked(heap_shape& h) {
    for (unsigned c = 0; c < num_classes; ++c) h.cached[c] = 0;
    for (const mcache* mc = g.live; mc != nullptr; mc = mc->next)
        for (unsigned c = 1; c < num_classes; ++c) h.cached[c] += mc->bins[c].count.load(std::memory_order_relaxed);
    // Objects in transit between caches are cached too (transfer.h).
    for (unsigned c = 1; c < num_classes; ++c) h.cached[c] += g.transfer[c].size();
}

}  // namespace

void read_counters(counters& k, bool take_locks) noexcept {
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
    // One lock at a time: the heap's for the span pool, the list's for caches.
    if (take_locks) g.heap.lock().lock();
    k.span_records_mapped = g.heap.spans().mapped_bytes();
    if (take_locks) g.heap.lock().unlock();
    if (take_locks) g.caches_lock.lock();
    read_caches_locked(k);
    if (take_locks) g.caches_lock.unlock();
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
    {
        lock_guard lk(g.caches_lock);
        cached_objects_locked(h);
    }
    for (unsigned c = 1; c < num_classes; ++c) {
        h.spans[c] = g.heap.class_spans(c);
        h.live[c] = sub_sat(k.nmalloc[c], k.nfree[c]);
        h.free[c] = sub_sat(h.spans[c] * class_objects_per_span(c), h.live[c] + h.cached[c]);
    }
    h.parked_spans = g.large.spans();
    h.parked_bytes = std::uint64_t{g.large.pages()} * page_size;
    h.spans[0] = sub_sat(g.heap.large_spans(), h.parked_spans);
    h.live[0] = sub_sat(k.nmalloc[0], k.nfree[0]);
    h.large_bytes = sub_sat(k.large_bytes_alloc, k.large_bytes_freed);
}

void shape_from_walk(heap_shape& h) noexcept {
    h = heap_shape{};
    const std::size_t n = g.heap.arenas();
    heap_arena* const* arenas = g.heap.arena_list();
    h.arenas = n;
    for (std::size_t i = 0; i < n; ++i) {
        const heap_arena* a = arenas[i];
        for (std::size_t pg = 0; pg < a->reserved_pages; ++pg) {
            const mspan* s = a->spans[pg].load(std::memory_order_relaxed);
            if (s == nullptr) {
                ++h.pages_idle;
                continue;
            }
            ++h.pages_in_use;
            // A span is counted at its first page (a large one may start in
            // the arena before).
            if (s->base != a->base + pg * page_size) continue;
            ++h.span_records;
            if (s->state == span_state::small) {
                ++h.spans[s->size_class];
                h.free[s->size_class] += s->nfree;
            } else if (s->parked.load(std::memory_order_relaxed)) {
                ++h.parked_spans;
                h.parked_bytes += std::uint64_t{s->npages} * page_size;
            } else {
                ++h.spans[0];
                h.large_bytes += std::uint64_t{s->npages} * page_size;
            }
        }
    }
    cached_objects_locked(h);
    for (unsigned c = 1; c < num_classes; ++c)
        h.live[c] = sub_sat(h.spans[c] * class_objects_per_span(c), h.free[c] + h.cached[c]);
    h.live[0] = h.spans[0];
}

void build_mem_stats(const counters& k, const heap_shape& h, mem_stats& m) noexcept {
    m = mem_stats{};
    for (unsigned c = 0; c < num_classes; ++c) {
        const std::uint64_t size = sc::class_size[c];
        m.by_size[c] = {size, k.nmalloc[c], k.nfree[c]};
        m.mallocs += k.nmalloc[c];
        m.frees += k.nfree[c];
        m.heap_objects += h.live[c];
        if (c == 0) continue;
        m.total_alloc += k.nmalloc[c] * size;
        m.alloc += h.live[c] * size;
        m.cached_objects += h.cached[c];
        m.cached_bytes += h.cached[c] * size;
        m.span_free += h.free[c] * size;
        m.span_waste += h.spans[c] * (class_span_bytes(c) - class_objects_per_span(c) * size);
        m.small_spans += h.spans[c];
    }
    m.cached_objects += h.parked_spans;
    m.cached_bytes += h.parked_bytes;
    m.total_alloc += k.large_bytes_alloc;
    m.alloc += h.large_bytes;
    m.heap_alloc = m.alloc;
    m.large_objects = h.live[0];
    m.large_bytes = h.large_bytes;

    m.arenas = h.arenas;
    m.heap_sys = (h.pages_in_use + h.pages_idle) * page_size;  // the arenas' reserved pages
    m.heap_inuse = h.pages_in_use * page_size;
    m.heap_idle = h.pages_idle * page_size;
    m.heap_released = k.pages_released * page_size;

    m.mspan_inuse = h.span_records * sizeof(mspan);
    m.mspan_sys = k.span_records_mapped;
    m.mcache_inuse = k.live_caches * sizeof(mcache);
    m.mcache_sys = k.caches_mapped * mcache_mapped_bytes;
    // Whatever else the allocator mapped for itself: the arena records, the
    // arena list and the heap profiler's tables (a test checks the first two
    // exactly, in a process that never profiles).
    m.other_sys = sub_sat(k.metadata_sys, m.mspan_sys + m.mcache_sys);
    m.sys = m.heap_sys + m.mspan_sys + m.mcache_sys + m.other_sys;
}

void build_class_stats(const counters& k, const heap_shape& h, class_stats (&out)[num_classes]) noexcept {
    for (unsigned c = 0; c < num_classes; ++c) {
        class_stats& s = out[c];
        s = class_stats{};
        s.size = sc::class_size[c];
        s.pages_per_span = sc::class_pages[c];
        s.objects_per_span = c == 0 ? 1 : static_cast<std::uint32_t>(class_objects_per_span(c));
        // Row 0: the large cache's parked spans are free objects in a cache.
        s.spans = c == 0 ? h.spans[0] + h.parked_spans : h.spans[c];
        s.objects = s.spans * s.objects_per_span;
        s.in_use = h.live[c];
        s.cached = c == 0 ? h.parked_spans : h.cached[c];
        s.free = h.free[c];
        s.mallocs = k.nmalloc[c];
        s.frees = k.nfree[c];
    }
}

void walk_snapshot(counters& k, heap_shape& h) noexcept {
    ensure_init();
    lock_all();
    read_counters(k, false);
    shape_from_walk(h);
    unlock_all();
}

}  // namespace spanmap::detail

namespace spanmap {

using namespace spanmap::detail;

mem_stats read_mem_stats() noexcept {
    ensure_init();
    counters k;
    heap_shape h;
    read_counters(k, true);
    shape_from_counters(k, h);
    mem_stats m;
    build_mem_stats(k, h, m);
    return m;
}

mem_stats recompute_mem_stats() noexcept {
    counters k;
    heap_shape h;
    walk_snapshot(k, h);
    mem_stats m;
    build_mem_stats(k, h, m);
    return m;
}

void read_class_stats(class_stats (&out)[num_size_classes]) noexcept {
    counters k;
    heap_shape h;
    walk_snapshot(k, h);
    build_class_stats(k, h, out);
}

std::size_t read_cache_stats(cache_stats* out, std::size_t max) noexcept {
    ensure_init();
    const mcache* self = tls_cache;
    lock_guard lk(g.caches_lock);
    std::size_t n = 0;
    for (const mcache* mc = g.live; mc != nullptr; mc = mc->next, ++n) {
        if (n >= max) continue;
        cache_stats& s = out[n];
        s = cache_stats{mc, mc == self, 0, 0};
        for (unsigned c = 1; c < num_classes; ++c) {
            const std::uint64_t count = mc->bins[c].count.load(std::memory_order_relaxed);
            s.objects += count;
            s.bytes += count * sc::class_size[c];
        }
    }
    return n;
}

}  // namespace spanmap

extern "C" void spanmap_read_mem_stats(struct spanmap_mem_stats* out) noexcept {
    if (out != nullptr) *out = spanmap::read_mem_stats();
}

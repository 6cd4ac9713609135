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

// Every field of mem_stats is in SPANMAP_MEM_STATS_FIELDS: the reports and
// the tests walk that list, so a field left out of it would go unseen.
#define SPANMAP_COUNT_FIELD(name) +1
constexpr std::size_t listed_fields = 0 SPANMAP_MEM_STATS_FIELDS(SPANMAP_COUNT_FIELD);
#undef SPANMAP_COUNT_FIELD
static_assert(sizeof(mem_stats) == listed_fields * sizeof(std::uint64_t) + sizeof(mem_stats::by_size),
              "a field of spanmap_mem_stats is missing from SPANMAP_MEM_STATS_FIELDS");

}  // namespace

void build_mem_stats(const counters& k, const heap_shape& h, mem_stats& m) noexcept {
    m = mem_stats{};
    for (unsigned c = 0; c < num_classes; ++c) {
        const std::uint64_t size = introspect::class_size(c);
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

    m.mspan_inuse = h.span_records * k.span_record_bytes;
    m.mspan_sys = k.span_records_mapped;
    m.mcache_inuse = k.live_caches * k.cache_record_bytes;
    m.mcache_sys = k.caches_mapped * k.cache_mapped_bytes;
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
        s.size = introspect::class_size(c);
        s.pages_per_span = introspect::class_pages(c);
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

}  // namespace spanmap::detail

namespace spanmap {

using namespace spanmap::detail;

mem_stats read_mem_stats() noexcept {
    counters k;
    heap_shape h;
    introspect::read_counters(k);
    introspect::shape_from_counters(k, h);
    mem_stats m;
    build_mem_stats(k, h, m);
    return m;
}

mem_stats recompute_mem_stats() noexcept {
    counters k;
    heap_shape h;
    introspect::walk(k, h);
    mem_stats m;
    build_mem_stats(k, h, m);
    return m;
}

void read_class_stats(class_stats (&out)[num_size_classes]) noexcept {
    counters k;
    heap_shape h;
    introspect::walk(k, h);
    build_class_stats(k, h, out);
}

std::size_t read_cache_stats(cache_stats* out, std::size_t max) noexcept {
    struct sink {
        cache_stats* out;
        std::size_t max, n;
    } filled{out, max, 0};
    return introspect::read_caches(
        [](void* ctx, const introspect::cache_row& r) {
            auto& f = *static_cast<sink*>(ctx);
            if (f.n < f.max) f.out[f.n++] = cache_stats{r.id, r.own, r.objects, r.bytes};
        },
        &filled);
}

}  // namespace spanmap

extern "C" void spanmap_read_mem_stats(struct spanmap_mem_stats* out) noexcept {
    if (out != nullptr) *out = spanmap::read_mem_stats();
}

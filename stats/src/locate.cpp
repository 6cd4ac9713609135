// locate(): what the heap knows about one address — arena, span, object, and
// whether the object is out with the program, cached or free.
#include "collect.h"

namespace spanmap::detail {
namespace {

bool in_some_cache(unsigned c, std::uintptr_t obj) {
    for (const mcache* mc = g.live; mc != nullptr; mc = mc->next) {
        const cache_bin& b = mc->bins[c];
        const std::uint32_t n = b.count.load(std::memory_order_relaxed);
        for (std::uint32_t i = 0; i < n && i < b.cap; ++i)
            if (reinterpret_cast<std::uintptr_t>(b.slots[i]) == obj) return true;
    }
    return false;
}

void describe_span(const mspan* s, location& r) {
    r.span_start = s->base;
    r.span_end = s->end();
    r.pages = s->npages;
    r.size_class = s->size_class;
}

}  // namespace
}  // namespace spanmap::detail

namespace spanmap {

using namespace spanmap::detail;

location locate(const void* ptr) noexcept {
    const auto p = reinterpret_cast<std::uintptr_t>(ptr);
    location r{};
    r.state = object_state::not_in_heap;
    const heap_arena* a = arena_of(p);
    if (a == nullptr) return r;
    {
        // The arena's unreserved top is not the heap's yet.
        lock_guard heap(g.heap.lock());
        if (p - a->base >= std::uintptr_t{a->reserved_pages} * page_size) return r;
    }
    r.arena = a->base;

    // Which class? The page map is read under the heap's lock; a small span's
    // bitmap needs its mcentral's lock too, which comes first in the lock
    // order — so take it, then check the span is still the one seen.
    for (;;) {
        unsigned c = 0;
        {
            lock_guard heap(g.heap.lock());
            const mspan* s = span_of(p);
            if (s == nullptr) {
                r.state = object_state::idle_page;
                return r;
            }
            if (s->state == span_state::large) {
                describe_span(s, r);
                r.object_size = std::size_t{s->npages} * page_size;
                r.object_start = s->base;
                r.interior = p != s->base;
                // A parked span is free, in the large cache.
                r.state = s->parked.load(std::memory_order_relaxed) ? object_state::cached : object_state::allocated;
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
        const std::uintptr_t off = p - s->base;
        const auto idx = static_cast<std::uint32_t>((off * s->div_mul) >> 32);
        r.object_index = idx;
        r.object_start = s->base + std::uintptr_t{idx} * s->elem_size;
        r.interior = p != r.object_start;
        if (idx >= s->nelems) {
            r.state = object_state::span_tail;
            r.object_start = 0;
            r.interior = false;
            return r;
        }
        if ((s->free_bits[idx / 64] >> (idx % 64)) & 1) {
            r.state = object_state::free;
            return r;
        }
        lock_guard caches(g.caches_lock);
        r.state = in_some_cache(c, r.object_start) ? object_state::cached : object_state::allocated;
        return r;
    }
}

const char* to_string(object_state s) noexcept {
    switch (s) {
        case object_state::not_in_heap: return "not in the heap";
        case object_state::idle_page: return "idle page (no span)";
        case object_state::span_tail: return "span tail (no object)";
        case object_state::allocated: return "allocated";
        case object_state::cached: return "free (in a thread cache)";
        case object_state::free: return "free (in its span)";
    }
    return "?";
}

}  // namespace spanmap

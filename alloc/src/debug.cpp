// Introspection: counters for tests and tools, and the invariant checker that
// walks every tier. Nothing here allocates; the checker's scratch space is
// mapped from the OS and given back.
#include "fastpath.h"

#include <spanmap/alloc.h>

#include <algorithm>
#include <cstdio>

namespace spanmap::detail {
namespace {

// Formats a violation into the caller's buffer. snprintf with these
// conversions does not allocate in glibc.
class report {
public:
    report(char* buf, std::size_t len) : buf_(buf), len_(len) {}
    template <class... A>
    bool fail(const char* fmt, A... args) {
        if (buf_ != nullptr && len_ > 0) std::snprintf(buf_, len_, fmt, args...);
        return false;
    }

private:
    char* buf_;
    std::size_t len_;
};

bool check_arenas(report& r, const mheap& h, std::size_t& pages_in_spans) {
    heap_arena* const* arenas = h.arena_list();
    const std::size_t n = h.arenas();
    pages_in_spans = 0;
    std::size_t released_total = 0;
    std::size_t reserved_total = 0;
    std::size_t inflight_total = 0;
    // The large span whose pages the walk is inside, past its first (their
    // entries are null: heap.h); it may run on into the next arena.
    const mspan* large = nullptr;
    for (std::size_t i = 0; i < n; ++i) {
        const heap_arena* a = arenas[i];
        if (i > 0 && arenas[i - 1]->base >= a->base) return r.fail("arena list not sorted at %zu", i);
        if (arena_of(a->base) != a) return r.fail("arena %p missing from the page map", (void*)a->base);
        std::size_t free_pages = 0;
        std::size_t released = 0;
        for (std::size_t w = 0; w < arena_bitmap_words; ++w) {
            free_pages += static_cast<std::size_t>(__builtin_popcountll(a->free_bits[w]));
            released += static_cast<std::size_t>(__builtin_popcountll(a->released_bits[w]));
            if (a->released_bits[w] & ~a->free_bits[w])
                return r.fail("arena %p: a released page is not free", (void*)a->base);
            if (w < a->search_word && a->free_bits[w] != 0)
                return r.fail("arena %p: free page below the search hint", (void*)a->base);
        }
        if (free_pages != a->free_pages) return r.fail("arena %p: free_pages %u, bitmap says %zu", (void*)a->base, a->free_pages, free_pages);
        if (released != a->released_pages)
            return r.fail("arena %p: released_pages %u, bitmap says %zu", (void*)a->base, a->released_pages, released);
        released_total += released;
        reserved_total += a->reserved_pages;
        for (std::size_t w = 0; w < arena_bitmap_words; ++w)
            inflight_total += static_cast<std::size_t>(__builtin_popcountll(a->inflight_bits[w]));
        for (std::size_t pg = 0; pg < pages_per_arena; ++pg) {
            const std::uintptr_t addr = a->base + pg * page_size;
            const mspan* s = a->spans[pg].load(std::memory_order_relaxed);
            const bool is_free = (a->free_bits[pg / 64] >> (pg % 64)) & 1;
            const bool inflight = (a->inflight_bits[pg / 64] >> (pg % 64)) & 1;
            const unsigned cls = a->page_class[pg].load(std::memory_order_relaxed);
            const std::uint32_t check = a->free_check[pg].load(std::memory_order_relaxed);
            if (large != nullptr && addr >= large->end()) large = nullptr;
            if (large != nullptr) {
                // Inside a large block: no entry, no class, not free.
                if (s != nullptr) return r.fail("page %p inside large span %p names a span", (void*)addr, (void*)large->base);
                if (is_free || inflight || cls != 0 || check != 0 || pg >= a->reserved_pages)
                    return r.fail("page %p inside large span %p is free, released or unreserved", (void*)addr, (void*)large->base);
                if (pg >= a->zeroed_base) return r.fail("page %p in use above the arena's zeroed base", (void*)addr);
                ++pages_in_spans;
                continue;
            }
            if (pg >= a->reserved_pages && (is_free || inflight || s != nullptr))
                return r.fail("page %p: past the arena's reserved pages but not empty", (void*)addr);
            if (inflight && (is_free || s != nullptr)) return r.fail("page %p: being released but free or in a span", (void*)addr);
            if (is_free != (s == nullptr) && pg < a->reserved_pages && !inflight)
                return r.fail("page %p: free bit and span entry disagree", (void*)addr);
            if (cls != (s != nullptr ? s->size_class : 0u))
                return r.fail("page %p: page_class %u, its span's class %u", (void*)addr, cls, s != nullptr ? s->size_class : 0u);
            // Only a small span's pages pass free's fast path.
            if ((s == nullptr || s->size_class == 0) && check != 0)
                return r.fail("page %p of no small span has a free-path word %#x", (void*)addr, check);
            if (s == nullptr) continue;
            ++pages_in_spans;
            if (s->size_class != 0 && ((check ^ free_check_word(s->base, 0)) & free_check_offset_mask & ~free_check_sampled) != 0)
                return r.fail("page %p: its free-path word puts span %p's base elsewhere", (void*)addr, (void*)s->base);
            if (addr < s->base || addr >= s->end()) return r.fail("page %p maps to span %p not covering it", (void*)addr, (void*)s->base);
            if (s->state == span_state::idle) return r.fail("page %p maps to an idle span", (void*)addr);
            if (pg >= a->zeroed_base) return r.fail("page %p in use above the arena's zeroed base", (void*)addr);
            if (s->state == span_state::large) {
                if (addr != s->base) return r.fail("page %p of large span %p past its first names it", (void*)addr, (void*)s->base);
                large = s;
            }
        }
    }
    if (released_total != h.pages_released())
        return r.fail("heap counts %zu pages released, the arenas %zu", h.pages_released(), released_total);
    if (inflight_total != h.pages_inflight())
        return r.fail("heap counts %zu pages being released, the arenas %zu", h.pages_inflight(), inflight_total);
    if (reserved_total != h.pages_reserved())
        return r.fail("heap counts %zu pages reserved, the arenas %zu", h.pages_reserved(), reserved_total);
    if (pages_in_spans != h.pages_in_use())
        return r.fail("heap counts %zu pages in use, the page map %zu", h.pages_in_use(), pages_in_spans);
    return true;
}

bool check_span(report& r, const mspan* s, unsigned c, span_list_id list) {
    if (s->state != span_state::small || s->size_class != c) return r.fail("span %p on class %u's list is not a small span of it", (void*)s->base, c);
    if (s->list != list) return r.fail("span %p: list tag disagrees with its list", (void*)s->base);
    if (span_of(s->base) != s || span_of(s->end() - 1) != s) return r.fail("span %p: page map does not point back", (void*)s->base);
    std::size_t bits = 0;
    for (std::size_t w = 0; w < span_bitmap_words; ++w) {
        bits += static_cast<std::size_t>(__builtin_popcountll(s->free_bits[w]));
        if (w < s->scan_word && s->free_bits[w] != 0) return r.fail("span %p: free object below scan_word", (void*)s->base);
    }
    for (std::size_t i = s->nelems; i < max_objects_per_span; ++i)
        if ((s->free_bits[i / 64] >> (i % 64)) & 1) return r.fail("span %p: free bit past the last object", (void*)s->base);
    // Objects never handed out are the span's top, all free.
    const std::uint64_t handed = s->handed.load(std::memory_order_relaxed);
    if (handed > s->nelems) return r.fail("span %p: %llu objects handed out of %u", (void*)s->base, (unsigned long long)handed, s->nelems);
    // The free path's copy of the count, in every page's word. (The sampled
    // bit is written under the recorder's lock, not held here: a sample
    // taken or freed meanwhile may leave either value.)
    bool copies_agree = true;
    for_each_free_check(s, [&](const std::atomic<std::uint32_t>& w) {
        copies_agree &= free_check_handed(w.load(std::memory_order_relaxed)) == handed;
    });
    if (!copies_agree) return r.fail("span %p: a page's free-path word has another handed count", (void*)s->base);
    for (std::size_t i = handed; i < s->nelems; ++i)
        if (!((s->free_bits[i / 64] >> (i % 64)) & 1)) return r.fail("span %p: object %zu is out but was never handed out", (void*)s->base, i);
    // allocated + free == objects, with allocated = nelems - nfree held by caches or the program.
    if (bits != s->nfree || s->nfree > s->nelems) return r.fail("span %p: nfree %u, bitmap %zu, objects %u", (void*)s->base, s->nfree, bits, s->nelems);
    if ((s->nfree == 0) != (list == span_list_id::full)) return r.fail("span %p: on the wrong list for nfree %u", (void*)s->base, s->nfree);
    return true;
}

// The small spans in h's page map that are on no mcentral list, of class
// `only` (every class when 0): a full span is checked and counted in
// full[its class]; one neither full nor in the empty-span cache is lost.
bool check_unlisted(report& r, const mheap& h, unsigned only, std::size_t (&full)[num_classes]) {
    heap_arena* const* arenas = h.arena_list();
    for (std::size_t i = 0; i < h.arenas(); ++i) {
        const heap_arena* a = arenas[i];
        for (std::size_t pg = 0; pg < pages_per_arena; ++pg) {
            const mspan* s = a->spans[pg].load(std::memory_order_relaxed);
            // Each span once, at its first page.
            if (s == nullptr || s->base != a->base + pg * page_size || s->state != span_state::small) continue;
            if ((only != 0 && s->size_class != only) || s->list == span_list_id::partial || s->parked.load(std::memory_order_relaxed))
                continue;
            if (s->list != span_list_id::full) return r.fail("span %p of class %u: on no list and not cached", (void*)s->base, s->size_class);
            if (!check_span(r, s, s->size_class, span_list_id::full)) return false;
            ++full[s->size_class];
        }
    }
    return true;
}

// m's partial list, and the count of its full spans against the page map's
// (full_found, from check_unlisted).
bool check_central(report& r, const mcentral& m, unsigned c, std::size_t full_found) {
    std::size_t empty = 0;
    std::size_t count = 0;
    for (const mspan* s = m.partial().head(); s != nullptr; s = s->next, ++count) {
        if (!check_span(r, s, c, span_list_id::partial)) return false;
        empty += s->nfree == s->nelems;
    }
    if (count != m.partial().size()) return r.fail("class %u: partial list length", c);
    if (full_found != m.full_spans()) return r.fail("class %u: %zu full spans in the page map, counted %zu", c, full_found, m.full_spans());
    if (empty != m.empty_spans() || empty > 1) return r.fail("class %u: %zu empty spans, counted %zu", c, empty, m.empty_spans());
    return true;
}

// The heap's empty-span cache: wholly free spans of their class, linked
// both ways, and its totals agree with its lists.
bool check_span_cache(report& r, const mheap& h) {
    std::size_t cached = 0;
    std::size_t cached_pages = 0;
    for (unsigned c = 1; c < num_classes; ++c) {
        const mspan* prev = nullptr;
        for (const mspan* s = h.cached_newest(c); s != nullptr; prev = s, s = s->next, ++cached) {
            if (s->prev != prev) return r.fail("span cache: span %p is badly linked", (void*)s->base);
            if (!check_span(r, s, c, span_list_id::none)) return false;
            if (!s->parked.load(std::memory_order_relaxed)) return r.fail("span cache: span %p is not marked cached", (void*)s->base);
            if (s->nfree != s->nelems) return r.fail("span cache: span %p has %u of %u objects out", (void*)s->base, s->nelems - s->nfree, s->nelems);
            cached_pages += s->npages;
        }
    }
    if (cached != h.cached_spans() || cached_pages != h.cached_pages())
        return r.fail("span cache: lists hold %zu spans of %zu pages, counted %zu of %zu", cached, cached_pages, h.cached_spans(), h.cached_pages());
    return true;
}

bool check_centrals(report& r, std::size_t& small_spans) {
    std::size_t full[num_classes] = {};
    if (!check_unlisted(r, g.heap, 0, full)) return false;
    small_spans = 0;
    for (unsigned c = 1; c < num_classes; ++c) {
        const mcentral& m = g.central[c];
        if (!check_central(r, m, c, full[c])) return false;
        small_spans += m.partial().size() + m.full_spans();
    }
    small_spans += g.heap.cached_spans();
    if (small_spans != g.heap.small_spans()) return r.fail("centrals and the span cache hold %zu spans, heap counts %zu", small_spans, g.heap.small_spans());
    return true;
}

// The large cache: each list holds parked large spans of its page count, and
// the totals agree with the lists.
bool check_large(report& r) {
    std::size_t spans = 0;
    std::size_t pages = 0;
    for (std::uint32_t np = 1; np <= large_cache::max_pages; ++np) {
        const mspan* prev = nullptr;
        for (const mspan* s = g.large.newest(np); s != nullptr; prev = s, s = s->next) {
            if (s->prev != prev) return r.fail("large cache: span %p is badly linked", (void*)s->base);
            if (!s->parked.load(std::memory_order_relaxed) || s->state != span_state::large || s->size_class != 0)
                return r.fail("large cache: span %p is not a parked large span", (void*)s->base);
            if (s->npages != np) return r.fail("large cache: span %p of %u pages on the list of %u", (void*)s->base, s->npages, np);
            if (span_of(s->base) != s) return r.fail("large cache: span %p is not in the page map", (void*)s->base);
            ++spans;
            pages += np;
        }
    }
    if (spans != g.large.spans() || pages != g.large.pages())
        return r.fail("large cache: lists hold %zu spans of %zu pages, counts say %zu of %zu", spans, pages, g.large.spans(), g.large.pages());
    if (pages * page_size > large_cache::max_bytes) return r.fail("large cache over its bound: %zu pages", pages);
    return true;
}

// The threads' large slots: each holds a parked large span within the bound,
// in the page map, of the page count its owner noted. The owners write their
// slots without a lock: exact at a quiet point only.
bool check_large_slots(report& r) {
    std::size_t spans = 0;
    std::size_t pages = 0;
    for (const mcache* mc = g.live; mc != nullptr; mc = mc->next) {
        std::size_t held = 0;
        for (unsigned i = 0; i < thread_large_slots::nslots; ++i) {
            const mspan* s = mc->large.span[i].load(std::memory_order_relaxed);
            if (s == nullptr) continue;
            if (!s->parked.load(std::memory_order_relaxed) || s->state != span_state::large || s->size_class != 0)
                return r.fail("large slots: span %p is not a parked large span", (void*)s->base);
            if (span_of(s->base) != s) return r.fail("large slots: span %p is not in the page map", (void*)s->base);
            const std::uint32_t np = mc->large.pages[i].load(std::memory_order_relaxed);
            if (np != s->npages)
                return r.fail("large slots: span %p of %u pages where the owner parked %u", (void*)s->base, s->npages, np);
            held += s->npages;
            ++spans;
        }
        if (held > thread_large_slots::max_pages) return r.fail("large slots: a thread holds %zu pages", held);
        pages += held;
    }
    const slot_census c = large_slots_census_locked();
    if (c.spans != spans || c.pages != pages)
        return r.fail("large slots: %zu spans of %zu pages, the census says %llu of %llu", spans, pages,
                      (unsigned long long)c.spans, (unsigned long long)c.pages);
    return true;
}

bool check_caches(report& r) {
    std::size_t total = 0;
    for (const mcache* mc = g.live; mc != nullptr; mc = mc->next)
        for (unsigned c = 1; c < num_classes; ++c) total += mc->bins[c].count.load(std::memory_order_relaxed);
    for (unsigned c = 1; c < num_classes; ++c) {
        if (g.transfer[c].size() > g.transfer[c].capacity()) return r.fail("transfer tier of class %u over capacity", c);
        total += g.transfer[c].size();
    }
    for (const mcache* mc = g.parked; mc != nullptr; mc = mc->next)
        for (unsigned c = 1; c < num_classes; ++c)
            if (mc->bins[c].count.load(std::memory_order_relaxed) != 0) return r.fail("a parked cache still holds objects of class %u", c);
    if (total == 0) return true;
    const std::size_t bytes = round_up(total * sizeof(void*), os_page_size);
    auto* all = static_cast<std::uintptr_t*>(os_map(bytes));
    if (all == nullptr) return r.fail("no memory for the cache check");
    std::size_t k = 0;
    bool ok = true;
    // Every free object a cache or a transfer tier holds: an object start of
    // its class, marked free, not free in its span, and held once.
    auto check_held = [&](void* const* objs, std::uint32_t n, unsigned c) {
            for (std::uint32_t i = 0; ok && i < n; ++i) {
                const auto p = reinterpret_cast<std::uintptr_t>(objs[i]);
                const mspan* s = span_of(p);
                if (s == nullptr || s->state != span_state::small || s->size_class != c) {
                    ok = r.fail("cached object %p of class %u is not in a span of that class", (void*)p, c);
                    break;
                }
                const std::uintptr_t off = p - s->base;
                const std::uintptr_t idx = off / s->elem_size;
                if (off % s->elem_size != 0 || idx >= s->nelems)
                    ok = r.fail("cached object %p is not an object start", (void*)p);
                else if ((s->free_bits[idx / 64] >> (idx % 64)) & 1)
                    ok = r.fail("cached object %p is also free in its span", (void*)p);
                else if (*reinterpret_cast<const std::uintptr_t*>(p) != free_mark(p))
                    ok = r.fail("cached object %p does not carry the free mark", (void*)p);
                all[k++] = p;
            }
    };
    for (const mcache* mc = g.live; ok && mc != nullptr; mc = mc->next) {
        for (unsigned c = 1; ok && c < num_classes; ++c) {
            const cache_bin& b = mc->bins[c];
            const std::uint32_t n = b.count.load(std::memory_order_relaxed);
            // Against the slots' bound, not the cap: the owner may be moving
            // its cap and its count while this reads them.
            const std::uint32_t cap = b.cap.load(std::memory_order_acquire);
            if (cap < bin_start_cap(c) || cap > bin_max_cap(c))
                ok = r.fail("bin of class %u has cap %u outside [%u, %u]", c, cap, bin_start_cap(c), bin_max_cap(c));
            else if (const bin_view v = bin_slots_of(mc, c); n > v.room)
                ok = r.fail("bin of class %u holds %u > its slots %u", c, n, v.room);
            else if (cap > v.room)
                ok = r.fail("bin of class %u has cap %u in a region of %u slots", c, cap, v.room);
            else
                check_held(v.slots, n, c);
        }
    }
    for (unsigned c = 1; ok && c < num_classes; ++c) check_held(g.transfer[c].objects(), g.transfer[c].size(), c);
    if (ok) {
        std::sort(all, all + k);
        for (std::size_t i = 1; ok && i < k; ++i)
            if (all[i] == all[i - 1]) ok = r.fail("object %p sits in thread caches twice", (void*)all[i]);
    }
    os_unmap(all, bytes);
    return ok;
}

}  // namespace

bool check_heap(const mheap& h, char* why, std::size_t why_len) noexcept {
    report r(why, why_len);
    std::size_t pages = 0;
    return check_arenas(r, h, pages) && check_span_cache(r, h);
}

bool check_central(const mcentral& m, unsigned size_class, char* why, std::size_t why_len) noexcept {
    report r(why, why_len);
    std::size_t full[num_classes] = {};
    return check_unlisted(r, *m.heap(), size_class, full) && check_central(r, m, size_class, full[size_class]);
}

}  // namespace spanmap::detail

namespace spanmap::debug {

using namespace spanmap::detail;

[[gnu::cold]] heap_info read_heap_info() noexcept {
    ensure_init();
    heap_info info{};
    info.arenas = g.heap.arenas();
    info.pages_in_use = g.heap.pages_in_use();
    info.pages_free = g.heap.pages_reserved() - info.pages_in_use;
    info.small_spans = g.heap.small_spans();
    info.cached_spans = g.heap.cached_spans();
    info.cached_span_bytes = g.heap.cached_pages() * page_size;
    // The heap counts the parked spans (the large cache's, the threads'
    // slots') as its own.
    const std::size_t large = g.heap.large_spans();
    lock_guard lk(g.caches_lock);
    const slot_census slots = large_slots_census_locked();
    const std::size_t parked = g.large.spans() + slots.spans;
    info.large_objects = large > parked ? large - parked : 0;
    info.large_cached_objects = parked;
    info.large_cached_bytes = (g.large.pages() + slots.pages) * page_size;
    info.live_caches = g.nlive;
    info.pooled_caches = g.nparked;
    for (const mcache* mc = g.live; mc != nullptr; mc = mc->next) {
        for (unsigned c = 1; c < num_classes; ++c) {
            const std::size_t n = mc->bins[c].count.load(std::memory_order_relaxed);
            info.cached_objects += n;
            info.cached_bytes += n * sc::class_size[c];
        }
    }
    for (unsigned c = 1; c < num_classes; ++c) {
        info.transfer_objects += g.transfer[c].size();
        info.transfer_bytes += std::size_t{g.transfer[c].size()} * sc::class_size[c];
    }
    return info;
}

[[gnu::cold]] bool check_invariants(char* why, std::size_t why_len) noexcept {
    ensure_init();
    report r(why, why_len);
    lock_all();
    std::size_t pages = 0;
    std::size_t spans = 0;
    const bool ok = check_arenas(r, g.heap, pages) && check_span_cache(r, g.heap) && check_centrals(r, spans) && check_caches(r) && check_large(r) &&
                    check_large_slots(r);
    unlock_all();
    if (ok && why != nullptr && why_len > 0) why[0] = '\0';
    return ok;
}

}  // namespace spanmap::debug

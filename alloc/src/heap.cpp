#include "heap.h"

#include "scavenge.h"

#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>

namespace spanmap::detail {

constinit const arena_leaf* arena_root[arena_root_entries] = {};

void set_state(mspan* s, span_state to) noexcept {
    const bool ok = s->state == span_state::idle ? to != span_state::idle : to == span_state::idle;
    if (!ok) fatal("span", reinterpret_cast<void*>(s->base), "illegal span state transition (heap corrupted)");
    s->state = to;
}

// --- span_pool ---------------------------------------------------------------

mspan* span_pool::get() noexcept {
    mspan* s = free_;
    if (s != nullptr) {
        free_ = s->next;
    } else {
        if (chunk_left_ < sizeof(mspan)) {
            chunk_ = static_cast<char*>(os_map(chunk_bytes));
            if (chunk_ == nullptr) return nullptr;
            chunk_left_ = chunk_bytes;
            capacity_ += chunk_bytes / sizeof(mspan);
            mapped_ += chunk_bytes;
            metadata_sys.fetch_add(chunk_bytes, std::memory_order_relaxed);
        }
        s = reinterpret_cast<mspan*>(chunk_);
        chunk_ += sizeof(mspan);
        chunk_left_ -= sizeof(mspan);
    }
    ++in_use_;
    std::memset(static_cast<void*>(s), 0, sizeof *s);
    return s;
}

void span_pool::put(mspan* s) noexcept {
    s->next = free_;
    free_ = s;
    --in_use_;
}

// --- mheap -------------------------------------------------------------------

namespace {

heap_arena* arena_of_page(std::uintptr_t page) { return arena_of(page << page_shift); }

// Bit p of the result is set where bits p .. p+k-1 of `bits` are all set
// (1 <= k <= 64): each step doubles the length a set bit vouches for, so a
// word's runs are searched in log2(k) shifts, however many there are.
std::uint64_t run_starts(std::uint64_t bits, unsigned k) noexcept {
    for (unsigned have = 1; have < k;) {
        const unsigned step = have < k - have ? have : k - have;
        bits &= bits >> step;
        have += step;
    }
    return bits;
}

// The bits of a bitmap word whose pages are multiples of align (a power of
// two), in a word whose first page is one: every align-th bit below 64, bit 0
// alone above. A word whose first page is not has none (align > 64 only).
std::uint64_t aligned_in_word(std::size_t align) noexcept {
    return align < 64 ? ~std::uint64_t{0} / ((std::uint64_t{1} << align) - 1) : 1;
}

}  // namespace

std::uintptr_t mheap::find_run(std::size_t npages, std::size_t align_pages) const noexcept {
    // A run of free pages may continue from one arena into the next when they
    // are adjacent in memory; run_len carries it across.
    std::uintptr_t run_start = 0;
    std::uintptr_t run_len = 0;
    std::uintptr_t prev_end = 0;
    const auto fits = [&]() -> std::uintptr_t {
        const std::uintptr_t start = round_up(run_start, align_pages);
        return start + npages <= run_start + run_len ? start : 0;
    };
    // A word that is not all free ends the run carried in from below with its
    // low ones, and starts the next with its top ones; a request of at most
    // 64 pages may also fit between, and run_starts finds where in one go. A
    // longer run passes through a word's top bit, so for it the runs between
    // are skipped without a look: on a heap cut up by small spans, a search
    // would otherwise visit each of them.
    const bool wide = npages > 64;
    const std::uint64_t aligned = aligned_in_word(align_pages);  // a division: once, not per word
    const std::size_t n = narenas_.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < n; ++i) {
        const heap_arena* a = arenas_[i];
        const std::uintptr_t first = a->base >> page_shift;
        if (first != prev_end) run_len = 0;
        prev_end = first + pages_per_arena;
        if (a->free_pages == 0) {
            run_len = 0;
            continue;
        }
        std::size_t w = run_len != 0 ? 0 : a->search_word;
        for (; w < arena_bitmap_words; ++w) {
            const std::uint64_t bits = a->free_bits[w];
            // Full words are the common case past search_word (a small free
            // run below holds it back), so they leave first.
            if (bits == 0) {
                run_len = 0;
                continue;
            }
            const std::uintptr_t word_first = first + w * 64;
            if (bits == ~std::uint64_t{0}) {
                if (run_len == 0) run_start = word_first;
                run_len += 64;
                if (const std::uintptr_t at = fits()) return at;
                continue;
            }
            if (run_len != 0) {
                run_len += static_cast<unsigned>(__builtin_ctzll(~bits));
                if (const std::uintptr_t at = fits()) return at;
            }
            // The lowest aligned page starting npages free ones is the first
            // fit: a run carried in from below starts lower, and did not fit.
            if (!wide) {
                const std::uint64_t here = (word_first & (align_pages - 1)) == 0 ? aligned : 0;
                if (const std::uint64_t starts = run_starts(bits, static_cast<unsigned>(npages)) & here)
                    return word_first + static_cast<unsigned>(__builtin_ctzll(starts));
            }
            const auto top = static_cast<unsigned>(__builtin_clzll(~bits));
            run_len = top;
            run_start = word_first + 64 - top;
        }
    }
    return 0;
}

namespace {

// Sets bits [lo, hi) of a bitmap.
void set_bits(std::uint64_t* bits, std::uint32_t lo, std::uint32_t hi) noexcept {
    for (std::uint32_t i = lo; i < hi;) {
        if (i % 64 == 0 && hi - i >= 64) {
            bits[i / 64] = ~std::uint64_t{0};
            i += 64;
        } else {
            bits[i / 64] |= std::uint64_t{1} << (i % 64);
            ++i;
        }
    }
}

}  // namespace

void mheap::add_pages(heap_arena* a, std::uint32_t lo, std::uint32_t hi) noexcept {
    // Fresh pages hold no memory yet, so they count as released, as in Go.
    set_bits(a->free_bits, lo, hi);
    set_bits(a->released_bits, lo, hi);
    a->free_pages += hi - lo;
    a->released_pages += hi - lo;
    a->reserved_pages = hi;
    if ((lo >> 6) < a->search_word) a->search_word = lo >> 6;
    bump(pages_released_, std::size_t{hi - lo});
    bump(pages_reserved_, std::size_t{hi - lo});
    void* start = reinterpret_cast<void*>(a->base + std::uintptr_t{lo} * page_size);
    const std::size_t bytes = std::size_t{hi - lo} * page_size;
    os_huge_page_advice(start, bytes);
    // A kernel without CONFIG_ANON_VMA_NAME refuses with EINVAL; the arena
    // works all the same, and the statistics report the refusal. errno is
    // kept: the malloc that reserved these pages succeeds.
    const int saved_errno = errno;
    const bool named = os_name(start, bytes, arena_vma_name);
    if (lo == 0) a->named = named;
    if (!named && name_errno_.load(std::memory_order_relaxed) == 0)
        name_errno_.store(errno != 0 ? errno : EINVAL, std::memory_order_relaxed);
    errno = saved_errno;
}

heap_arena* mheap::add_arena(std::uintptr_t base, std::uint32_t reserved_pages) noexcept {
    const std::size_t n = narenas_.load(std::memory_order_relaxed);
    if (n == max_arenas) return nullptr;
    if (arenas_ == nullptr) {
        arenas_ = static_cast<heap_arena**>(os_map(max_arenas * sizeof(heap_arena*)));
        if (arenas_ == nullptr) return nullptr;
        metadata_sys.fetch_add(max_arenas * sizeof(heap_arena*), std::memory_order_relaxed);
    }
    std::atomic_ref<const arena_leaf*> root(arena_root[base >> (arena_shift + arena_leaf_bits)]);
    auto* leaf = const_cast<arena_leaf*>(root.load(std::memory_order_relaxed));
    if (leaf == nullptr) {
        leaf = static_cast<arena_leaf*>(os_map(sizeof(arena_leaf)));
        if (leaf == nullptr) return nullptr;
        metadata_sys.fetch_add(sizeof(arena_leaf), std::memory_order_relaxed);
        root.store(leaf, std::memory_order_release);
    }
    constexpr std::size_t meta_bytes = round_up(sizeof(heap_arena), os_page_size);
    auto* a = static_cast<heap_arena*>(os_map(meta_bytes));
    if (a == nullptr) return nullptr;
    metadata_sys.fetch_add(meta_bytes, std::memory_order_relaxed);
    // Fresh mappings read as zero: spans[] is all null, counters are 0.
    a->base = base;
    add_pages(a, 0, reserved_pages);

    std::size_t at = n;
    while (at > 0 && arenas_[at - 1]->base > base) {
        arenas_[at] = arenas_[at - 1];
        --at;
    }
    arenas_[at] = a;
    narenas_.store(n + 1, std::memory_order_relaxed);
    leaf->arena[(base >> arena_shift) & (arena_leaf_entries - 1)].store(a, std::memory_order_release);
    return a;
}

std::uintptr_t mheap::reserve_region(std::size_t bytes, std::size_t align) noexcept {
    // Without over-reserving: a region of bytes + align, trimmed, would cost
    // a whole arena of address space for a moment, which is what a program
    // near its `ulimit -v` has not got. Candidates in order: right after the
    // newest region (the heap stays contiguous, and runs may cross from one
    // arena into the next); then, below wherever the kernel would put the
    // region now (it fills the address space top-down, so the space below its
    // choice is usually free), a few aligned addresses; then over-reserving.
    const auto fits = [&](std::uintptr_t at) { return at != 0 && ((at + bytes - 1) >> address_bits) == 0; };
    if (top_ != nullptr) {
        const std::uintptr_t next = round_up(top_->base + arena_bytes, align);
        if (fits(next) && os_map_at(reinterpret_cast<void*>(next), bytes) != nullptr) return next;
    }
#if !defined(__SANITIZE_ADDRESS__) && !defined(SPANMAP_TSAN)
    // The first region: at a random arena boundary far below the kernel's
    // own choices (heap_hint_*), as Go puts its arenas at a fixed hint. The
    // kernel fills the address space top-down from just below the stack, so
    // a region placed at its choice had the program's libraries, and then our
    // own metadata, right above it: the arena could not grow past them in
    // place, and under `ulimit -v` a heap so cut in two ended 15% short (in
    // one run in 13 of a `ulimit -v 120000` fill). Down here every later
    // region continues the last one. (The sanitizers keep fixed shadow
    // ranges of their own: their builds leave the hint out.)
    if (top_ == nullptr) {
        for (int i = 0; i < 4; ++i) {
            const std::uintptr_t at = round_up(heap_hint_base + os_random() % heap_hint_arenas * arena_bytes, align);
            if (fits(at) && os_map_at(reinterpret_cast<void*>(at), bytes) != nullptr) return at;
        }
    }
#endif
    if (void* probe = os_map(bytes)) {
        const auto at = reinterpret_cast<std::uintptr_t>(probe);
        if (at % align == 0 && fits(at)) return at;
        os_unmap(probe, bytes);
        std::uintptr_t cand = at & ~(std::uintptr_t{align} - 1);
        for (int i = 0; i < 8 && cand >= align; ++i, cand -= align)
            if (fits(cand) && os_map_at(reinterpret_cast<void*>(cand), bytes) != nullptr) return cand;
    }
    void* region = os_map_aligned(bytes, align);
    if (region == nullptr) return 0;
    const auto at = reinterpret_cast<std::uintptr_t>(region);
    if (!fits(at)) {
        os_unmap(region, bytes);
        return 0;
    }
    return at;
}

bool mheap::grow(std::size_t npages, std::size_t align_pages) noexcept {
    // As Go's mheap.grow: the heap releases as many free pages as it grows
    // by, so that a program whose heap keeps growing (a map doubling its
    // bucket array, each old array freed as the next comes) does not also
    // keep every earlier, freed generation resident until the decay passes.
    // Go does it inline; here the scavenger thread is asked to, so that this
    // allocation (an insert, say) does not wait for the madvise calls.
    const std::size_t before = pages_reserved_.load(std::memory_order_relaxed);
    const std::size_t free_now = before - pages_in_use_.load(std::memory_order_relaxed) -
                                 pages_inflight_.load(std::memory_order_relaxed);
    const std::size_t released = pages_released_.load(std::memory_order_relaxed);
    if (!reserve(npages, align_pages)) return false;
    const std::size_t grown = pages_reserved_.load(std::memory_order_relaxed) - before;
    const std::size_t unreleased = free_now > released ? free_now - released : 0;
    if (unreleased != 0) scavenge_after_growth(grown < unreleased ? grown : unreleased);
    return true;
}

bool mheap::reserve(std::size_t npages, std::size_t align_pages) noexcept {
    // Address space is reserved as the heap grows, in steps of an eighth of
    // what it holds (at least grow_step_pages), so that a small program holds
    // little more address space than it uses and a large one makes few mmap
    // calls. Each step extends the newest arena in place while it has room;
    // past its end, a new region starts at the next arena boundary.
    const std::size_t reserved = pages_reserved_.load(std::memory_order_relaxed);
    std::size_t step = reserved / 8 > grow_step_pages ? reserved / 8 : grow_step_pages;
    step = round_up(step, grow_step_pages);
    if (npages * page_size >= arena_bytes && !os_can_commit(npages * page_size)) return false;

    if (heap_arena* a = top_; a != nullptr && a->reserved_pages < pages_per_arena && align_pages <= pages_per_arena) {
        // The new pages continue the free run at the arena's reserved end, if any.
        std::uint32_t tail = a->reserved_pages;
        while (tail > 0 && (a->free_bits[(tail - 1) / 64] >> ((tail - 1) % 64) & 1)) --tail;
        const std::uintptr_t first = a->base >> page_shift;
        const std::uintptr_t start = round_up(first + tail, align_pages) - first;
        const std::uintptr_t need = start + npages;
        if (need <= pages_per_arena) {
            for (std::uintptr_t want : {std::uintptr_t{a->reserved_pages} + step, need}) {
                if (want < need) want = need;
                if (want > pages_per_arena) want = pages_per_arena;
                if (os_map_at(reinterpret_cast<void*>(a->base + std::uintptr_t{a->reserved_pages} * page_size),
                              (want - a->reserved_pages) * page_size) != nullptr) {
                    add_pages(a, a->reserved_pages, static_cast<std::uint32_t>(want));
                    return true;
                }
            }
        }
    }

    std::size_t align = align_pages * page_size;
    if (align < arena_bytes) align = arena_bytes;
    // A fresh region: the request rounded up to a step, or just the request
    // when the OS has no more than that.
    for (std::size_t want : {round_up(npages, step), npages}) {
        if (want < npages) continue;
        const std::size_t bytes = want * page_size;
        const std::uintptr_t base = reserve_region(bytes, align);
        if (base == 0) continue;
        for (std::size_t off = 0; off < bytes; off += arena_bytes) {
            const std::size_t left = (bytes - off) / page_size;
            heap_arena* a = add_arena(base + off, static_cast<std::uint32_t>(left < pages_per_arena ? left : pages_per_arena));
            if (a == nullptr) {
                // Arenas already registered stay (their pages are free); the rest goes back.
                os_unmap(reinterpret_cast<void*>(base + off), bytes - off);
                return false;
            }
            top_ = a;
        }
        return true;
    }
    return false;
}

namespace {
// The low n bits set (n <= 64; above 64, all of them).
constexpr std::uint64_t bits_below(std::uint32_t n) noexcept {
    return n >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << n) - 1;
}
}  // namespace

namespace {

// The OS pages wholly inside [from, to), zero again, back to the OS: their
// page-map entries read as null and class 0 after madvise(MADV_DONTNEED), as
// they do now. The page map costs 13 bytes per heap page, so a freed giant
// object would otherwise keep 0.16% of its size resident for nothing.
void release_zeroed(const void* from, const void* to) noexcept {
    const auto os_page = static_cast<std::uintptr_t>(::getpagesize());
    const std::uintptr_t lo = (reinterpret_cast<std::uintptr_t>(from) + os_page - 1) & ~(os_page - 1);
    const std::uintptr_t hi = reinterpret_cast<std::uintptr_t>(to) & ~(os_page - 1);
    if (hi > lo) os_discard(reinterpret_cast<void*>(lo), hi - lo);
}

}  // namespace

void mheap::release_page_map(heap_arena* a, std::uint32_t lo, std::uint32_t hi) noexcept {
    // Only for runs long enough to cover a whole (4 KiB) OS page of class
    // bytes, 32 MiB: smaller frees would pay a syscall for nothing.
    if (hi - lo < 4096) return;
    release_zeroed(&a->spans[lo], &a->spans[hi]);
    release_zeroed(&a->page_class[lo], &a->page_class[hi]);
    release_zeroed(&a->free_check[lo], &a->free_check[hi]);
}

namespace {
// The pages of s that the page map names (heap.h): all of a small span's, a
// large span's first.
std::size_t named_pages(const mspan* s) noexcept { return s->size_class != 0 ? s->npages : 1; }
}  // namespace

mspan* span_containing(std::uintptr_t addr) noexcept {
    if (mspan* s = span_of(addr)) return s;
    const heap_arena* a = arena_of(addr);
    if (a == nullptr) return nullptr;
    // Back to the nearest named page, across arenas while they are adjacent
    // (a large span may start in the arena below).
    std::uintptr_t pg = (addr - a->base) >> page_shift;
    for (;;) {
        while (pg > 0) {
            mspan* s = a->spans[--pg].load(std::memory_order_relaxed);
            if (s == nullptr) continue;
            const bool holds = s->size_class == 0 && addr >= s->base && addr - s->base < std::uintptr_t{s->npages} << page_shift;
            return holds ? s : nullptr;
        }
        a = arena_of(a->base - 1);
        if (a == nullptr) return nullptr;
        pg = pages_per_arena;
    }
}

namespace {

// Calls f(a, lo, hi, map_hi) for each arena's share [lo, hi) of pages
// [first, first + n) (arena page numbers), of which [lo, map_hi) lie in the
// first `mapped` pages. A run crosses into the next arena only when the two
// are adjacent in memory.
template <class F>
void for_each_arena_part(std::uintptr_t first, std::size_t n, std::size_t mapped, F f) noexcept {
    const std::uintptr_t end = first + n;
    const std::uintptr_t map_end = first + mapped;
    for (std::uintptr_t page = first; page < end;) {
        heap_arena* a = arena_of_page(page);
        const std::uintptr_t arena_first = a->base >> page_shift;
        const std::uintptr_t stop = std::min(end, arena_first + pages_per_arena);
        f(a, static_cast<std::uint32_t>(page - arena_first), static_cast<std::uint32_t>(stop - arena_first),
          static_cast<std::uint32_t>(std::clamp(map_end, page, stop) - arena_first));
        page = stop;
    }
}

// Calls f(w, mask) for each bitmap word w that pages [lo, hi) of an arena
// touch, mask the bits they cover. A small span's pages lie in one word: that
// case is a straight line, with no loop for the compiler to split up.
template <class F>
void for_each_word(std::uint32_t lo, std::uint32_t hi, F f) noexcept {
    const std::uint32_t w_lo = lo >> 6;
    const std::uint32_t w_hi = (hi - 1) >> 6;
    if (w_lo == w_hi) {
        f(w_lo, bits_below(hi - w_lo * 64) & ~bits_below(lo - w_lo * 64));
        return;
    }
    f(w_lo, ~bits_below(lo - w_lo * 64));
    for (std::uint32_t w = w_lo + 1; w < w_hi; ++w) f(w, ~std::uint64_t{0});
    f(w_hi, bits_below(hi - w_hi * 64));
}

}  // namespace

// Taking and giving back are two functions, not one with a null span for
// "give": each is a straight line the compiler keeps tight, and small spans
// come and go through them on every mcentral miss.
bool mheap::take_pages(std::uintptr_t first, std::size_t n, mspan* s, std::size_t mapped) noexcept {
    // A page is known to be zero if the heap never handed it out, or if its
    // memory went back to the OS with an advice that zero-fills (see scavenge.h).
    const bool released_is_zero = os_release_zeroes();
    const std::uint8_t cls = s->size_class;
    bool dirty = false;
    std::size_t reused = 0;
    for_each_arena_part(first, n, mapped, [&](heap_arena* a, std::uint32_t lo, std::uint32_t hi, std::uint32_t map_hi) {
        // The span before the free path's word and the class: a free racing
        // with this (of a pointer that is not out) never finds a class
        // without a span.
        for (std::uint32_t i = lo; i < map_hi; ++i) a->spans[i].store(s, std::memory_order_relaxed);
        if (cls != 0) {
            const std::uint32_t check = free_check_word(s->base, s->handed.load(std::memory_order_relaxed));
            for (std::uint32_t i = lo; i < map_hi; ++i) a->free_check[i].store(check, std::memory_order_relaxed);
            for (std::uint32_t i = lo; i < map_hi; ++i) a->page_class[i].store(cls, std::memory_order_relaxed);
        }
        // The bitmaps a word (64 pages) at a time: a large span costs one
        // store per page above, not a read-modify-write of three bitmaps.
        const auto take_word = [&](std::uint32_t w, std::uint64_t mask) {
            a->free_bits[w] &= ~mask;
            const std::uint64_t was_released = a->released_bits[w] & mask;
            if (was_released != 0) {
                a->released_bits[w] &= ~was_released;
                const auto count = static_cast<std::uint32_t>(__builtin_popcountll(was_released));
                a->released_pages -= count;
                reused += count;
            }
            const std::uint64_t handed_out_before = a->zeroed_base > w * 64 ? bits_below(a->zeroed_base - w * 64) : 0;
            dirty |= (mask & handed_out_before & ~(released_is_zero ? was_released : 0)) != 0;
        };
        for_each_word(lo, hi, take_word);
        a->free_pages -= hi - lo;
        if (hi > a->zeroed_base) a->zeroed_base = hi;
        while (a->search_word < arena_bitmap_words && a->free_bits[a->search_word] == 0) ++a->search_word;
    });
    if (reused != 0) bump(pages_released_, -reused);
    return dirty;
}

void mheap::give_pages(std::uintptr_t first, std::size_t n, bool released, std::size_t mapped, std::uint32_t freed_at) noexcept {
    std::size_t newly_released = 0;
    for_each_arena_part(first, n, mapped, [&](heap_arena* a, std::uint32_t lo, std::uint32_t hi, std::uint32_t map_hi) {
        // The class and the word before the span (see take_pages).
        for (std::uint32_t i = lo; i < map_hi; ++i) a->page_class[i].store(0, std::memory_order_relaxed);
        for (std::uint32_t i = lo; i < map_hi; ++i) a->free_check[i].store(0, std::memory_order_relaxed);
        for (std::uint32_t i = lo; i < map_hi; ++i) a->spans[i].store(nullptr, std::memory_order_relaxed);
        for_each_word(lo, hi, [&](std::uint32_t w, std::uint64_t mask) {
            a->free_bits[w] |= mask;
            // The word's latest free counts (ticks wrap: compared as a difference).
            if (static_cast<std::int32_t>(freed_at - a->freed_tick[w]) > 0) a->freed_tick[w] = freed_at;
            if (released) {
                a->released_bits[w] |= mask;
                const auto count = static_cast<std::uint32_t>(__builtin_popcountll(mask));
                a->released_pages += count;
                newly_released += count;
            }
        });
        release_page_map(a, lo, hi);
        a->free_pages += hi - lo;
        if ((lo >> 6) < a->search_word) a->search_word = lo >> 6;
    });
    if (newly_released != 0) bump(pages_released_, newly_released);
    bump(pages_ever_freed_, n);
}

std::size_t mheap::scavenge(std::uint32_t now, std::uint32_t min_age, std::size_t max_pages) noexcept {
    // Three steps, and the lock is held only for the first and the last: the
    // madvise, which may take milliseconds on a busy machine (the kernel
    // takes the mm's lock, zaps page tables, flushes TLBs on every core), runs
    // with no allocator lock held, so no malloc or free ever waits for it.
    //   1. under the lock: pick the free, unreleased, aged pages of bitmap
    //      words, up to max_pages, and take them out of the free set into
    //      the in-flight set, so that no allocation can hand them out while
    //      their memory goes away;
    //   2. without it: madvise each run of them;
    //   3. under the lock: put them back, free and released.
    struct word_ref {
        heap_arena* a;
        std::uint32_t w;
        std::uint64_t bits;
    };
    word_ref picked[8];
    std::size_t npicked = 0;
    std::size_t count = 0;
    {
        lock_guard g(lock_);
        const std::size_t n = narenas_.load(std::memory_order_relaxed);
        for (std::size_t i = 0; i < n && count < max_pages && npicked < std::size(picked); ++i) {
            heap_arena* a = arenas_[i];
            if (a->free_pages == a->released_pages) continue;
            for (std::uint32_t w = 0; w < arena_bitmap_words && count < max_pages && npicked < std::size(picked); ++w) {
                const std::uint64_t todo = a->free_bits[w] & ~a->released_bits[w];
                if (todo == 0 || now - a->freed_tick[w] < min_age) continue;
                const auto k = static_cast<std::uint32_t>(__builtin_popcountll(todo));
                a->free_bits[w] &= ~todo;
                a->inflight_bits[w] |= todo;
                a->free_pages -= k;
                count += k;
                picked[npicked++] = {a, w, todo};
            }
        }
        bump(pages_inflight_, count);
    }
    if (count == 0) return 0;
    for (std::size_t i = 0; i < npicked; ++i) {
        std::uint64_t todo = picked[i].bits;
        const std::uintptr_t word_base = picked[i].a->base + std::uintptr_t{picked[i].w} * 64 * page_size;
        while (todo != 0) {
            // Each run of pages in the word is one madvise.
            const auto start = static_cast<unsigned>(__builtin_ctzll(todo));
            const std::uint64_t from_start = todo >> start;
            const unsigned len = ~from_start == 0 ? 64 - start : static_cast<unsigned>(__builtin_ctzll(~from_start));
            os_release(reinterpret_cast<void*>(word_base + std::uintptr_t{start} * page_size), std::size_t{len} * page_size);
            todo = len + start >= 64 ? 0 : todo & ~(((std::uint64_t{1} << len) - 1) << start);
        }
    }
    lock_guard g(lock_);
    for (std::size_t i = 0; i < npicked; ++i) land(picked[i].a, picked[i].w, picked[i].bits, true);
    bump(pages_inflight_, -count);
    return count;
}

void mheap::land(heap_arena* a, std::uint32_t w, std::uint64_t bits, bool released) noexcept {
    const auto k = static_cast<std::uint32_t>(__builtin_popcountll(bits));
    a->inflight_bits[w] &= ~bits;
    a->free_bits[w] |= bits;
    a->free_pages += k;
    if (released) {
        a->released_bits[w] |= bits;
        a->released_pages += k;
        bump(pages_released_, std::size_t{k});
    }
    if (w < a->search_word) a->search_word = w;
}

void mheap::after_fork_child() noexcept {
    // A scavenger that was between steps 1 and 3 (see scavenge) has no thread
    // in the child: its pages come back free, and not known to be released
    // (the madvise may or may not have run), so they count as dirty.
    lock_guard g(lock_);
    if (pages_inflight_.load(std::memory_order_relaxed) == 0) return;
    const std::size_t n = narenas_.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < n; ++i)
        for (std::uint32_t w = 0; w < arena_bitmap_words; ++w)
            if (arenas_[i]->inflight_bits[w] != 0) land(arenas_[i], w, arenas_[i]->inflight_bits[w], false);
    pages_inflight_.store(0, std::memory_order_relaxed);
}

bool mheap::free_or_cached(std::uintptr_t first, std::size_t n) const noexcept {
    for (std::uintptr_t page = first; page < first + n;) {
        const heap_arena* a = arena_of_page(page);
        if (a == nullptr) return false;
        const std::size_t i = page & (pages_per_arena - 1);
        if (a->free_bits[i >> 6] >> (i & 63) & 1) {
            ++page;
            continue;
        }
        // A small span's every page names it (a large span's do not, and
        // it is not cached); `parked`, written under this lock, marks the
        // cached ones.
        const mspan* s = a->spans[i].load(std::memory_order_relaxed);
        if (s == nullptr || s->size_class == 0 || !s->parked.load(std::memory_order_relaxed)) return false;
        page = s->end() >> page_shift;
    }
    return true;
}

void mheap::uncache(mspan* s) noexcept {
    span_cache_list& l = cached_[s->size_class];
    if (s->prev != nullptr)
        s->prev->next = s->next;
    else
        l.newest = s->next;
    if (s->next != nullptr)
        s->next->prev = s->prev;
    else
        l.oldest = s->prev;
    s->next = s->prev = nullptr;
    s->parked.store(false, std::memory_order_relaxed);
    bump(cached_spans_, std::size_t(-1));
    bump(cached_pages_, -std::size_t{s->npages});
}

bool mheap::pages_free(std::uintptr_t first, std::size_t n) const noexcept {
    for (std::uintptr_t page = first; page < first + n; ++page) {
        const heap_arena* a = arena_of_page(page);
        if (a == nullptr) return false;
        const std::size_t i = page & (pages_per_arena - 1);
        if (!(a->free_bits[i >> 6] >> (i & 63) & 1)) return false;
    }
    return true;
}

mspan* mheap::alloc_span(std::size_t npages, std::size_t align_pages, unsigned size_class) noexcept {
    // Every span is placed as if no span were cached (see heap.h): the cache
    // goes back first, a bounded batch per hold of the lock, so that other
    // threads wait for no more than a batch; alloc_span_locked gives back
    // what was cached in between.
    trim_cached(0, 0);
    lock_guard g(lock_);
    return alloc_span_locked(npages, align_pages, size_class);
}

std::size_t mheap::alloc_spans(unsigned size_class, mspan** out, std::size_t n) noexcept {
    std::size_t got = 0;
    {
        lock_guard g(lock_);
        for (span_cache_list& l = cached_[size_class]; got < n && l.newest != nullptr; ++got) {
            mspan* s = l.newest;
            uncache(s);
            // Its objects were the program's (fresh spans are zero).
            s->needzero = true;
            out[got] = s;
        }
        // The newest last: mcentral passes the spans on in this order, and a
        // thread cache pops from its top, so malloc hands out the most
        // recently cached span first, and the next most recent after it.
        // Newest first, a thousand 32 KiB objects freed in order came back
        // as runs of eight ascending addresses, each run sixteen objects
        // below the one before: half the steps from one block to the next
        // were jumps (a tenth with tcmalloc), and a program that touches each
        // block took a fifth longer for them.
        std::reverse(out, out + got);
        if (got == n) return got;
    }
    trim_cached(0, 0);  // as alloc_span (one load when nothing is cached)
    lock_guard g(lock_);
    while (got < n && (out[got] = alloc_span_locked(sc::class_pages[size_class], 1, size_class)) != nullptr) ++got;
    return got;
}

mspan* mheap::alloc_span_locked(std::size_t npages, std::size_t align_pages, unsigned size_class) noexcept {
    // Spans cached since the caller's trim_cached.
    if (cached_spans_.load(std::memory_order_relaxed) != 0) trim_cached_locked(0, 0, ~std::size_t{0});
    std::uintptr_t first = find_run(npages, align_pages);
    if (first == 0) {
        if (!grow(npages, align_pages)) return nullptr;
        first = find_run(npages, align_pages);
        if (first == 0) return nullptr;
    }
    mspan* s = pool_.get();
    if (s == nullptr) return nullptr;
    s->base = first << page_shift;
    s->npages = static_cast<std::uint32_t>(npages);
    s->size_class = static_cast<std::uint8_t>(size_class);
    s->needzero = take_pages(first, npages, s, named_pages(s));
    if (size_class != 0) {
        s->elem_size = sc::class_size[size_class];
        assert(npages == sc::class_pages[size_class]);  // the shape's page count
        s->nelems = class_span_shapes[size_class].nelems;
        s->div_mul = sc::class_div_mul[size_class];
        s->nfree = s->nelems;
        for (std::uint32_t w = 0; w < s->nelems / 64; ++w) s->free_bits[w] = ~std::uint64_t{0};
        if (s->nelems % 64 != 0) s->free_bits[s->nelems / 64] = (std::uint64_t{1} << (s->nelems % 64)) - 1;
        set_state(s, span_state::small);
        bump(small_spans_);
        bump(class_spans_[size_class]);
    } else {
        s->nelems = 1;
        set_state(s, span_state::large);
        bump(large_spans_);
        bump(large_nmalloc_);
        bump(large_bytes_alloc_, std::uint64_t{npages} * page_size);
    }
    bump(pages_in_use_, npages);
    return s;
}

void mheap::free_span(mspan* s, bool released) noexcept {
    lock_guard g(lock_);
    free_span_locked(s, released, tick());
}

void mheap::free_spans(mspan* const* spans, std::size_t n) noexcept {
    lock_guard g(lock_);
    for (std::size_t i = 0; i < n; ++i) free_span_locked(spans[i], false, tick());
}

void mheap::park_spans(mspan* const* spans, std::size_t n) noexcept {
    lock_guard g(lock_);
    const std::uint32_t now = tick();
    for (std::size_t i = 0; i < n; ++i) {
        mspan* s = spans[i];
        assert(s->state == span_state::small && s->nfree == s->nelems);
        if (cached_pages_.load(std::memory_order_relaxed) + s->npages > max_cached_pages ||
            cached_spans_.load(std::memory_order_relaxed) == max_cached_spans) {
            free_span_locked(s, false, now);
            continue;
        }
        span_cache_list& l = cached_[s->size_class];
        s->parked_tick = now;
        s->parked.store(true, std::memory_order_relaxed);
        s->prev = nullptr;
        s->next = l.newest;
        if (l.newest != nullptr)
            l.newest->prev = s;
        else
            l.oldest = s;
        l.newest = s;
        bump(cached_spans_);
        bump(cached_pages_, std::size_t{s->npages});
    }
}

std::size_t mheap::trim_cached_locked(std::uint32_t now, std::uint32_t min_age, std::size_t most) noexcept {
    std::size_t n = 0;
    for (unsigned c = 1; c < num_classes && n < most; ++c) {
        span_cache_list& l = cached_[c];
        while (n < most && l.oldest != nullptr && (min_age == 0 || now - l.oldest->parked_tick >= min_age)) {
            mspan* s = l.oldest;
            uncache(s);
            free_span_locked(s, false, s->parked_tick);
            ++n;
        }
    }
    return n;
}

std::size_t mheap::trim_cached(std::uint32_t now, std::uint32_t min_age) noexcept {
    // A bounded batch per hold of the lock: a trim of a full cache would
    // otherwise keep every malloc that misses its caches waiting.
    // At most what was cached on entry: threads caching spans meanwhile
    // do not keep it going.
    constexpr std::size_t per_hold = 64;
    const std::size_t most = cached_spans_.load(std::memory_order_relaxed);
    std::size_t total = 0;
    while (total < most) {
        lock_guard g(lock_);
        const std::size_t want = most - total < per_hold ? most - total : per_hold;
        const std::size_t n = trim_cached_locked(now, min_age, want);
        total += n;
        if (n < want) break;
    }
    return total;
}

void mheap::free_span_locked(mspan* s, bool released, std::uint32_t freed_at) noexcept {
    give_pages(s->base >> page_shift, s->npages, released, named_pages(s), freed_at);
    bump(pages_in_use_, -std::size_t{s->npages});
    if (s->state == span_state::small) {
        bump(small_spans_, std::size_t(-1));
        bump(class_spans_[s->size_class], std::size_t(-1));
    } else {
        bump(large_spans_, std::size_t(-1));
        bump(large_nfree_);
        bump(large_bytes_freed_, std::uint64_t{s->npages} * page_size);
    }
    set_state(s, span_state::idle);
    pool_.put(s);
}

bool mheap::grow_span(mspan* s, std::size_t npages) noexcept {
    lock_guard g(lock_);
    const std::uintptr_t end = s->end() >> page_shift;
    const std::size_t extra = npages - s->npages;
    if (!pages_free(end, extra)) {
        // Cached empty spans in the way are given back: a block growing in
        // place is worth more than a span kept for its class.
        if (!free_or_cached(end, extra)) return false;
        for (std::uintptr_t page = end; page < end + extra;) {
            mspan* c = arena_of_page(page)->spans[page & (pages_per_arena - 1)].load(std::memory_order_relaxed);
            if (c == nullptr) {
                ++page;
                continue;
            }
            page = c->end() >> page_shift;
            uncache(c);
            free_span_locked(c, false, c->parked_tick);
        }
    }
    take_pages(end, extra, s, 0);
    s->npages = static_cast<std::uint32_t>(npages);
    bump(pages_in_use_, extra);
    bump(large_bytes_alloc_, std::uint64_t{extra} * page_size);
    return true;
}

void mheap::shrink_span(mspan* s, std::size_t npages, bool released) noexcept {
    lock_guard g(lock_);
    const std::size_t cut = s->npages - npages;
    give_pages((s->base >> page_shift) + npages, cut, released, 0, tick());
    s->npages = static_cast<std::uint32_t>(npages);
    bump(pages_in_use_, -cut);
    bump(large_bytes_freed_, std::uint64_t{cut} * page_size);
}

}  // namespace spanmap::detail

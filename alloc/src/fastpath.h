// malloc's and free's fast paths, side by side. See DESIGN.md for the
// overview and cache.h for the bins they work on.
//
// Both are inlined into every entry point (the C API, the C++ API and the
// preload library's malloc, free, operator new and delete), so a call from
// the program reaches the bin with no jump in between; whatever a pop or a
// push cannot finish goes to one out-of-line slow path, entered once.
//
// An object is recognizably free whatever tier holds it:
//   * never handed out: its index is at or past its span's `handed` count
//     (mcentral hands out the lowest free objects first, so the never-used
//     ones are the span's top);
//   * handed out once and free again — in a thread cache, in transit between
//     tiers, or back in its span — its first word holds the free mark,
//     free_mark(address), written when the object enters a cache (refill) or
//     is freed, and erased when malloc hands it out. The span's free bit is
//     set too while the span holds it: the checked path tests that as well.
// So free of any address that is not a live object's start finds a
// misplaced address (the object-start test), an index never handed out, or a
// mark, and stops the process; the fast path pays for one byte of the mark
// alone (has_mark_tag). The mark is keyed and not linear in the address (an
// odd multiplier after an xor): reading one freed object's first word gives away
// neither key, so a use-after-free read cannot forge the mark of another
// address. Live objects are told apart from free ones by the mark alone; a
// live object whose first word equals its own mark by chance (odds 2^-62)
// would be reported as a double free.
#pragma once

#include "cache.h"

#include <bit>

namespace spanmap::detail {

// The product's top 62 bits under a top byte of 0x80-0xbf: never zero, so a
// fresh, zeroed object never looks free, and none of the commonest top bytes
// of a live object's first word (0x00 or 0xff of a pointer or an integer,
// ASCII text). The byte free's fast path compares (has_mark_tag) holds the
// product's best-mixed bits.
inline std::uintptr_t free_mark(std::uintptr_t p) noexcept {
    return ((p ^ free_key.xor_key) * free_key.mul_key) >> 2 | std::uintptr_t{1} << 63;
}
// The one byte of the mark that free's fast path reads: the mark's top byte,
// wherever the byte order puts it. An 8-byte load of a word that the program
// has just written with narrower stores (a byte, a 4-byte field) cannot be
// forwarded from them, and waits for them to reach the cache: in a
// malloc/write-a-byte/free loop that wait was most of the pair's time. A
// one-byte load always is. A live object whose byte matches by chance (top
// bytes of 0x80-0xbf) is sent to the checked path, which compares the whole
// word and frees it.
//   It is the top byte, not the first, though the first needs no shift to
// compare: a loop that writes an object's first byte and frees it at once
// then has free's load wait on that store, and a 16-byte malloc/write/free
// pair took 6.6 ns against 6.0 (alternated runs, 8 each).
inline constexpr std::size_t mark_tag_offset = std::endian::native == std::endian::little ? sizeof(std::uintptr_t) - 1 : 0;
inline bool has_mark_tag(const void* p, std::uintptr_t mark) noexcept {
    return static_cast<const unsigned char*>(p)[mark_tag_offset] == static_cast<unsigned char>(mark >> 56);
}

// The one place an object enters a bin: mark it free, then push it. The slot
// is written before the count that exposes it (release order, free on x86):
// a fork child inherits this cache and must not read a stale slot; nfree goes
// first, for bin_nmalloc's readers. n is the bin's count (a size_t: the
// slot's index wants the 64-bit register, which the count's load fills).
// The new count is stored from the register: an add to the count in memory
// is an instruction fewer, but a load more on the chain from one free to the
// next, and batches of 1000 frees took 3-15% longer with it
// (bench/preload_compare.sh -r 7, batch_lifo and batch_random).
inline void mark_and_push(cache_bin& b, std::size_t n, void* p, std::uintptr_t mark, std::size_t c) noexcept {
    void** const slots = b.slots;  // read before the object is written, which might alias it
    *static_cast<std::uintptr_t*>(p) = mark;
    poison_free_object(p, sc::class_size[c]);
    slots[n] = p;
    bump(b.nfree);
    b.count.store(static_cast<std::uint32_t>(n + 1), std::memory_order_release);
}

// Inlined into the (SPANMAP_ALLOC_TEXT) functions that call it, so that it
// never has a frame of its own in a heap profile's stacks: the optimiser does
// that by itself, and is made to when not optimising. (Forcing it when
// optimising would change how its callers are inlined in turn.)
#ifdef __OPTIMIZE__
#define SPANMAP_INLINE_ALLOC_PATH inline
#else
#define SPANMAP_INLINE_ALLOC_PATH __attribute__((always_inline)) inline
#endif

// Counts p, just popped from mc's bin b, against the heap profiler's
// countdown. Profiling on or off, this is the fast path's whole cost of the
// profiler: a load of the size the bin keeps, a subtract from the countdown
// in memory and a branch on its sign, taken once per sample (or per
// countdown_off bytes when off). The class is the bin's place in the cache,
// worked out on the sampling path alone, so the fast path keeps no register
// for it.
SPANMAP_INLINE_ALLOC_PATH void* count_for_profile(mcache* mc, const cache_bin& b, void* p) noexcept {
    if (__builtin_expect(subtract_below_zero(mc->prof.bytes_until_sample, b.size), 0))
        return sample_small(mc, p, static_cast<unsigned>(&b - mc->bins));
    return p;
}

// An object from the thread's bin at byte offset `offset` in its cache front
// (the class times sizeof(cache_bin), which malloc's tables hold ready: one
// shift fewer between the size and the bin), or, when that takes more than
// a pop (no cache yet, an empty bin), what slow() returns. Both ends are
// tail calls, so a caller whose slow path needs its arguments again keeps
// them in registers it need not save.
// Throws only what slow() throws (spanmap::allocate's and operator new's
// std::bad_alloc).
template <class Slow>
SPANMAP_INLINE_ALLOC_PATH void* alloc_bin_or(std::size_t offset, Slow slow) noexcept(noexcept(slow())) {
    cache_front* f = tls_cache;  // never null (see cache_states)
    cache_bin& b = *reinterpret_cast<cache_bin*>(reinterpret_cast<char*>(f->bins) + offset);
    const std::uint32_t n = b.count.owner_read();
    // A bin with an object is a live cache's.
    if (__builtin_expect(n != 0, 1)) return count_for_profile(static_cast<mcache*>(f), b, bin_pop(b, n, offset / sizeof(cache_bin)));
    return slow();
}
// The same, for class c.
template <class Slow>
SPANMAP_INLINE_ALLOC_PATH void* alloc_small_or(std::size_t c, Slow slow) noexcept(noexcept(slow())) {
    return alloc_bin_or(c * sizeof(cache_bin), slow);
}

SPANMAP_INLINE_ALLOC_PATH void* alloc_small(unsigned c) noexcept {
    return alloc_small_or(c, [c] { return alloc_small_slow(c); });
}

// Whether object idx of small span s is in the span's free set (mcentral's).
// Read without mcentral's lock, which writes the words atomically for this
// reader: a live object's bit is clear and only its own free can set it, so
// a set bit is never a live object's.
inline bool free_in_span(const mspan* s, std::uint32_t idx) noexcept {
    std::atomic_ref<const std::uint64_t> word(s->free_bits[idx / 64]);
    return (word.load(std::memory_order_relaxed) >> (idx % 64)) & 1;
}

// Every free starts here. The common case — a small object of this heap,
// freed whole and once, into a bin with room — is served without a call, so
// the compiler keeps it a leaf that saves no registers; everything else
// (null, large objects, a full bin, no cache, a sampled object, and every
// misuse) returns false having changed nothing, and goes to the checked path,
// which does it all again and says what is wrong.
//
// The chain of dependent loads that the push waits for is pointer →
// page_class → bin count when the pointer lies in the arena the thread's
// cache last refilled from (cache_front::arena, read beside the chain), and
// pointer → arena index → arena → page_class → bin count otherwise. The
// page's free_check word, the class constants in the bin and the object's
// first word feed only the checks' branches, which the processor predicts
// and runs beside the chain; the span record is not read. In a malloc/free
// pair the chain is most of the time: 7.3 → 6.4 ns for 16 B with the hint.
// `size` is the caller's for a sized free (0 when unsized): more than the
// class holds is an error.
__attribute__((always_inline)) inline bool free_fast(void* ptr, std::size_t size) noexcept {
    const auto addr = reinterpret_cast<std::uintptr_t>(ptr);
    cache_front* f = tls_cache;
    heap_arena* a;
    // A branch, not a select: predicted, it takes the chain off the index.
    // The hint is never null once it matches (see cache_front::arena).
    if (__builtin_expect((addr >> arena_shift) == f->arena_index, 1)) {
        a = f->arena;
    } else {
        a = arena_of(addr);  // null for nullptr: no arena maps page 0
        if (__builtin_expect(a == nullptr, 0)) return false;
    }
    const std::size_t page = (addr >> page_shift) & (pages_per_arena - 1);
    const std::size_t c = byte_relaxed(a->page_class[page]);
    const std::uint32_t check = a->free_check[page].load(std::memory_order_relaxed);
    const std::uintptr_t mark = free_mark(addr);
    // The object-start test (start_index32) with the class's constants from
    // its bin and the page's word: the index is below the span's handed
    // count only at the start of an object handed out at least once. Class
    // 0 (a free page, a large span's) needs no test of its own: its word's
    // count is 0, and bin 0 never has room (its cap is 0) either.
    static_assert(bin_start_cap(0) == 0 && bin_max_cap(0) == 0, "bin 0 never takes an object");
    cache_bin& b = f->bins[c];
    const std::uint32_t idx = start_index32(free_check_offset(addr, check), b.start_inv, b.start_shift);
    // A sized free's size against the class size its bin keeps (0 in bin 0
    // and in the empty fronts, which take nothing anyway).
    if (__builtin_expect(idx >= free_check_handed(check) || has_mark_tag(ptr, mark) || size > b.size, 0)) return false;
    // No cache (see cache_states) is a full bin.
    const std::size_t n = b.count.owner_read();
    if (__builtin_expect(n >= b.cap.owner_read(), 0)) return false;
    mark_and_push(b, n, ptr, mark, c);
    return true;
}

// The slow paths, out of line (api.cpp) and entered once: malloc_slow is
// malloc whole (NULL with errno = ENOMEM on failure), free_slow free whole
// with every check and its message. Hidden: every caller is in the library,
// and none goes through a PLT.
#define SPANMAP_HIDDEN __attribute__((visibility("hidden")))
SPANMAP_HIDDEN SPANMAP_ALLOC_TEXT __attribute__((noinline)) void* malloc_slow(std::size_t size) noexcept;
SPANMAP_HIDDEN __attribute__((noinline)) void free_slow(void* ptr, std::size_t size) noexcept;
// free_slow, a large block's pages given back to the OS at once (api.cpp).
SPANMAP_HIDDEN void free_release(void* ptr, std::size_t size) noexcept;

// malloc's two tables (size_class_malloc's) with each class's bin offset in
// the cache front in place of the class: entry i is class_of(i)'s.
template <std::size_t N, class ClassOf>
constexpr std::array<std::uint16_t, N> bin_offsets(ClassOf class_of) {
    std::array<std::uint16_t, N> t{};
    for (std::size_t i = 0; i < N; ++i) t[i] = static_cast<std::uint16_t>(class_of(i) * sizeof(cache_bin));
    return t;
}
inline constexpr auto malloc_size_to_bin8 =
    bin_offsets<std::size(malloc_size_to_class8)>([](std::size_t i) { return malloc_size_to_class8[i]; });
inline constexpr auto malloc_size_to_bin128 =
    bin_offsets<std::size(sc::size_to_class128)>([](std::size_t i) { return sc::size_to_class128[i]; });
static_assert(num_classes * sizeof(cache_bin) <= 0xffff, "a bin offset fits 16 bits");
// spanmap::allocate's, for sizes up to small_size_max: size_class_aligned's
// classes for an alignment of at most 8 (Go's table, which has no class for
// size 0: offset 0, the slow path) and of 16 (malloc's, from 16 bytes up).
// Above small_size_max every class is a multiple of 128, and
// malloc_size_to_bin128 serves both.
inline constexpr auto aligned8_size_to_bin8 =
    bin_offsets<std::size(sc::size_to_class8)>([](std::size_t i) { return sc::size_to_class8[i]; });
inline constexpr auto aligned16_size_to_bin8 =
    bin_offsets<std::size(malloc_size_to_class8)>([](std::size_t i) { return malloc_size_to_class8[i < 2 ? 2 : i]; });

// malloc: the pop is inline and everything else a tail call, so the common
// case saves no registers (errno's handling would otherwise cost every call).
// The bin comes from the tables without size_class_malloc's "large" (0),
// whose test the tables make needless: each small size has a class.
// malloc_fast_or is that with another slow path (operator new's, which
// throws), so that it too is a tail call. alloc_size_or is the same for any
// table of the sizes up to small_size_max (spanmap::allocate's by
// alignment): an offset of 0 is bin 0, which is always empty, so a size
// without a class goes to slow() from the pop's own test.
template <class Table8, class Slow>
SPANMAP_INLINE_ALLOC_PATH void* alloc_size_or(std::size_t size, const Table8& table8, Slow slow) noexcept(noexcept(slow())) {
    std::size_t offset;
    if (__builtin_expect(size <= sc::small_size_max, 1))
        offset = table8[(size + 7) >> 3];
    else if (size <= max_small_size)
        offset = malloc_size_to_bin128[(size - sc::small_size_max + 127) >> 7];
    else
        return slow();
    return alloc_bin_or(offset, slow);
}
template <class Slow>
SPANMAP_INLINE_ALLOC_PATH void* malloc_fast_or(std::size_t size, Slow slow) noexcept(noexcept(slow())) {
    return alloc_size_or(size, malloc_size_to_bin8, slow);
}
SPANMAP_INLINE_ALLOC_PATH void* malloc_fast(std::size_t size) noexcept {
    return malloc_fast_or(size, [size] { return malloc_slow(size); });
}

// free, and sized free (size 0: unsized).
__attribute__((always_inline)) inline void free_any(void* ptr, std::size_t size = 0) noexcept {
    if (__builtin_expect(!free_fast(ptr, size), 0)) free_slow(ptr, size);
}

}  // namespace spanmap::detail

// Shared vocabulary of the allocator's tiers: constants, the OS layer, locks,
// fatal errors, spans, arenas and the page map. See DESIGN.md for the
// design; each tier's header says what it owns.
#pragma once

#include "sampler.h"
#include "sizeclasses.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace spanmap::detail {

// --- numbers -----------------------------------------------------------------

inline constexpr std::size_t page_shift = sc::page_shift;
inline constexpr std::size_t page_size = std::size_t{1} << page_shift;
inline constexpr std::size_t arena_shift = 26;  // Go's heapArenaBytes on linux/amd64
inline constexpr std::size_t arena_bytes = std::size_t{1} << arena_shift;
inline constexpr std::size_t pages_per_arena = arena_bytes / page_size;
inline constexpr std::size_t arena_bitmap_words = pages_per_arena / 64;
// User-space addresses on x86-64 and arm64 fit 48 bits (the kernel hands out
// higher ones only when asked with a hint); the page map covers exactly that.
inline constexpr std::size_t address_bits = 48;
// Where the heap's first region is placed (mheap::reserve_region): a random
// arena boundary among heap_hint_arenas from heap_hint_base, 32 TiB between
// 32 and 64 TiB, far from the executable and brk (near 0x55... with PIE, or
// the bottom) and from the kernel's mmap area (below 128 TiB, top-down): 19
// bits of randomness for the heap's address.
inline constexpr std::uintptr_t heap_hint_base = std::uintptr_t{1} << 45;
inline constexpr std::uintptr_t heap_hint_arenas = (std::uintptr_t{1} << 45) >> arena_shift;
inline constexpr std::size_t num_classes = sc::num_classes;
inline constexpr std::size_t max_small_size = sc::max_small_size;
// Larger requests fail at once: no page count may overflow its 32 bits, and
// the heap cannot hold more (see max_arenas in heap.h).
inline constexpr std::size_t max_request = std::size_t{1} << 42;
// Objects of the smallest class hold one word; a span of one page holds 1024.
inline constexpr std::size_t max_objects_per_span = page_size / 8;
inline constexpr std::size_t span_bitmap_words = max_objects_per_span / 64;
static_assert(max_objects_per_span <= 0xffff, "mspan::live_samples counts a span's objects in 16 bits");

// n rounded up to a multiple of `to`, a power of two.
constexpr std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) & ~(to - 1); }
// The smallest unit mmap hands out on the machines spanmap runs on; the
// allocator's own records are mapped in multiples of it.
inline constexpr std::size_t os_page_size = 4096;

static_assert(page_size == 8192, "Go's page: _PageShift = 13");
static_assert(arena_bytes == 64u << 20, "Go's arena on linux/amd64: 64 MiB");
static_assert(pages_per_arena % 64 == 0, "the arena's page bitmap is whole words");
static_assert(num_classes == 68, "Go's 67 small classes plus class 0 for large objects");
static_assert(sc::class_size[num_classes - 1] == max_small_size, "the largest class is the small-object limit");

// Size classes whose object size is a multiple of 16: all but 8 and 24. A
// malloc request above 8 bytes needs 16-byte alignment, so 17..24 is served
// from the 32-byte class; sized C++ requests aligned to at most 8 may use 24.
constexpr bool class_is_16_aligned(unsigned c) { return sc::class_size[c] % 16 == 0; }
static_assert(!class_is_16_aligned(3) && sc::class_size[3] == 24 && class_is_16_aligned(4),
              "class 3 (24 bytes) is the only one between 16 and 32 that breaks 16-byte alignment");

// --- size to class -----------------------------------------------------------

// Go's lookup: two small tables, one load each. Returns 0 for large sizes.
inline unsigned size_class_8(std::size_t n) {
    if (n <= sc::small_size_max) return sc::size_to_class8[(n + 7) >> 3];
    if (n <= max_small_size) return sc::size_to_class128[(n - sc::small_size_max + 127) >> 7];
    return 0;
}

// malloc's class: like Go's, but 17..24 bytes go to 32 for 16-byte alignment
// (class 3 is the only one between 16 and 32, see below), and 0 bytes to the
// smallest class (Go hands out one shared zero-size object; C wants a unique
// pointer, and a class object is the cheapest one). Its own copy of Go's
// first table, so that malloc's fast path pays one load for the class, and
// every entry a class, so that it needs no test for "none".
inline constexpr auto malloc_size_to_class8 = [] {
    std::array<std::uint8_t, std::size(sc::size_to_class8)> t{};
    for (std::size_t i = 0; i < t.size(); ++i) t[i] = sc::size_to_class8[i] == 3 ? 4 : sc::size_to_class8[i];
    t[0] = 1;
    return t;
}();
static_assert(std::ranges::find(malloc_size_to_class8, 0) == malloc_size_to_class8.end(),
              "every small size has a class");
static_assert(std::ranges::find(sc::size_to_class128, 0) == std::end(sc::size_to_class128),
              "every size from small_size_max to max_small_size has a class");
inline unsigned size_class_malloc(std::size_t n) {
    if (n <= sc::small_size_max) return malloc_size_to_class8[(n + 7) >> 3];
    return size_class_8(n);
}

// The class for a request of n bytes aligned to `align` (a power of two), or 0
// when it needs a span of its own. Alignment up to a page is met by a class
// whose size is a multiple of it: spans start on page boundaries.
inline unsigned size_class_aligned(std::size_t n, std::size_t align) {
    if (align <= 8) return size_class_8(n);
    if (align <= 16) return size_class_malloc(n < 16 ? 16 : n);
    if (align > page_size || n > max_small_size) return 0;
    n = (n + align - 1) & ~(align - 1);
    for (unsigned c = size_class_8(n); c != 0 && c < num_classes; ++c)
        if (sc::class_size[c] % align == 0) return c;
    return 0;
}

// --- fatal errors and the OS -------------------------------------------------

// Writes "spanmap: <what> <ptr>: <detail>" to stderr and aborts. Never allocates.
[[noreturn]] void fatal(const char* what, const void* ptr, const char* detail) noexcept;
void write_stderr(const char* s) noexcept;

// Anonymous read-write mapping, not charged against overcommit until touched.
void* os_map(std::size_t bytes) noexcept;
// The same, exactly at p, or nullptr when anything is mapped there already
// (MAP_FIXED_NOREPLACE; a kernel older than 4.17 takes it as a hint, and a
// mapping elsewhere is given back).
void* os_map_at(void* p, std::size_t bytes) noexcept;
// Whether the kernel would back `bytes` more of private memory, by its
// overcommit policy: the heuristic's bound (RAM + swap) under policy 0, the
// commit limit left under policy 2; under policy 1 anything the address
// space holds.
bool os_can_commit(std::size_t bytes) noexcept;
void os_unmap(void* p, std::size_t bytes) noexcept;
// `bytes` of address space starting at a multiple of `align` (a power of two
// and a multiple of the OS page), or nullptr.
void* os_map_aligned(std::size_t bytes, std::size_t align) noexcept;
// Names a mapping in /proc/self/maps ("[anon:<name>]"); false where the kernel
// lacks CONFIG_ANON_VMA_NAME.
bool os_name(void* p, std::size_t bytes, const char* name) noexcept;
// Gives pages back to the OS with the configured advice (SPANMAP_CONF
// madvise: MADV_DONTNEED, or MADV_FREE where the kernel has it).
void os_release(void* p, std::size_t bytes) noexcept;
// Whether a page given back by os_release reads as zero when it is taken
// again (MADV_DONTNEED zero-fills on the next touch; MADV_FREE keeps the old
// data until the kernel reclaims it).
bool os_release_zeroes() noexcept;
// Gives pages back so that they read as zero on the next touch
// (MADV_DONTNEED, whatever the configuration); false if the kernel refused.
bool os_discard(void* p, std::size_t bytes) noexcept;
// Transparent huge pages for a new arena, as SPANMAP_CONF thp says.
void os_huge_page_advice(void* base, std::size_t bytes) noexcept;
std::uint64_t os_random() noexcept;
// The process-wide memory barrier (membarrier's private expedited command):
// on return, every other thread of the process has passed a full barrier, so
// a thread that orders its own store and load with no more than a compiler
// barrier still pairs with the caller (an asymmetric Dekker handshake).
// os_heavy_fence_register is called once, and again in a fork child; both
// are false where the kernel (or a seccomp filter) refuses.
bool os_heavy_fence_register() noexcept;
bool os_heavy_fence() noexcept;

// Bytes the allocator has mapped for its own metadata (spans, arenas, caches).
extern std::atomic<std::size_t> metadata_sys;

// SPANMAP_ALLOC_TEXT (sampler.h): the section of the functions the profiler's
// stacks leave out.

// --- AddressSanitizer ---------------------------------------------------------

// In ASan builds the heap tells the sanitizer which of its bytes the program
// may touch, as malloc's own do: a free object is poisoned but for its first
// word (the free mark, which the allocator reads and writes), a free large
// span whole, so that a use after free or a dangling reference into the
// heap is reported where it happens. Elsewhere these are nothing.
#if defined(__SANITIZE_ADDRESS__)
}  // namespace spanmap::detail
#include <sanitizer/asan_interface.h>
namespace spanmap::detail {
inline void poison(const void* p, std::size_t n) noexcept { ASAN_POISON_MEMORY_REGION(p, n); }
inline void unpoison(const void* p, std::size_t n) noexcept { ASAN_UNPOISON_MEMORY_REGION(p, n); }
#else
inline void poison(const void*, std::size_t) noexcept {}
inline void unpoison(const void*, std::size_t) noexcept {}
#endif
// A free small object of `size` bytes: all but the mark.
inline void poison_free_object(void* p, std::size_t size) noexcept {
    poison(static_cast<char*>(p) + sizeof(std::uintptr_t), size - sizeof(std::uintptr_t));
}

// --- locks -------------------------------------------------------------------

// A futex mutex (Drepper's three-state lock: 0 free, 1 held, 2 held with
// waiters). It never allocates, sleeps in the kernel instead of spinning when
// the cores are oversubscribed, and is plain atomics, so sanitizers see its
// happens-before edges. Not a pthread mutex: fork_prepare holds every lock of
// the allocator at once (70 of them), beyond what ThreadSanitizer's deadlock
// detector can track for pthread mutexes (64).
class mutex {
public:
    constexpr mutex() noexcept = default;
    mutex(const mutex&) = delete;
    mutex& operator=(const mutex&) = delete;
    void lock() noexcept {
        int expected = 0;
        if (__builtin_expect(state_.compare_exchange_strong(expected, 1, std::memory_order_acquire), 1)) return;
        lock_slow();
    }
    void unlock() noexcept {
        if (__builtin_expect(state_.exchange(0, std::memory_order_release) == 2, 0)) wake_one();
    }

private:
    void lock_slow() noexcept;
    void wake_one() noexcept;
    std::atomic<int> state_{0};
};

class lock_guard {
public:
    explicit lock_guard(mutex& m) noexcept : m_(m) { m_.lock(); }
    ~lock_guard() { m_.unlock(); }
    lock_guard(const lock_guard&) = delete;
    lock_guard& operator=(const lock_guard&) = delete;

private:
    mutex& m_;
};

// --- relaxed counters --------------------------------------------------------

// A counter with one writer (its thread, or the holder of a lock) and racy
// readers (statistics): a relaxed load and store, never a read-modify-write,
// so the fast path pays for a plain add.
//
// On x86-64 the add is one instruction to memory: compilers never fuse a
// relaxed load and store into it, and an aligned add without a lock prefix is
// the same load and store — a reader sees the old value or the new one. Under
// ThreadSanitizer the portable form, so that the race detector sees the
// accesses.
#if defined(__SANITIZE_THREAD__)
#define SPANMAP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SPANMAP_TSAN 1
#endif
#endif
template <class T>
inline void bump(std::atomic<T>& c, T by = 1) noexcept {
#if defined(__x86_64__) && !defined(SPANMAP_TSAN)
    static_assert(sizeof(std::atomic<T>) == sizeof(T) && std::atomic<T>::is_always_lock_free);
    if constexpr (sizeof(T) == 8) {
        asm volatile("addq %1, %0" : "+m"(c) : "er"(static_cast<std::uint64_t>(by)));
        return;
    } else if constexpr (sizeof(T) == 4) {
        asm volatile("addl %1, %0" : "+m"(c) : "ir"(static_cast<std::uint32_t>(by)));
        return;
    }
#endif
    c.store(c.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}

// bump's subtract for a signed counter, saying whether it went below zero:
// on x86-64 one subtract to memory, whose sign flag is the answer.
inline bool subtract_below_zero(std::atomic<std::int64_t>& c, std::int64_t by) noexcept {
#if defined(__x86_64__) && !defined(SPANMAP_TSAN)
    bool negative;
    asm volatile("subq %2, %0" : "+m"(c), "=@ccs"(negative) : "er"(by));
    return negative;
#else
    const std::int64_t left = c.load(std::memory_order_relaxed) - by;
    c.store(left, std::memory_order_relaxed);
    return left < 0;
#endif
}

// A relaxed load of a byte, zero-extended to a word: GCC loads an atomic
// byte into a 32-bit register and then extends it again where it is used as
// an index. Under ThreadSanitizer, and off x86-64, the atomic load.
inline std::size_t byte_relaxed(const std::atomic<std::uint8_t>& a) noexcept {
#if defined(__x86_64__) && !defined(SPANMAP_TSAN)
    std::size_t v;
    asm("movzbl %1, %k0" : "=r"(v) : "m"(a));
    return v;
#else
    return a.load(std::memory_order_relaxed);
#endif
}

// --- spans -------------------------------------------------------------------

// A span's life, changed only through set_state(), which checks the edge:
//
//   idle  ──mheap::alloc_span──►  small (carved into objects; mcentral owns it)
//   idle  ──mheap::alloc_span──►  large (one object over 32 KiB, or over-aligned)
//   small ──mheap::free_span───►  idle
//   large ──mheap::free_span───►  idle
//
// Free pages have no span at all: they are bits in their arena's bitmap.
enum class span_state : std::uint8_t { idle, small, large };

// Where mcentral keeps a small span: on its partial list, or `full` — on no
// list, only counted (central.h), the page map being the way back to it.
// `none` in the heap's empty-span cache (`parked` marks those).
enum class span_list_id : std::uint8_t { none, partial, full };

struct mspan {
    std::uintptr_t base;     // first byte; a multiple of page_size
    // Objects [0, handed) have been handed out of the span at least once;
    // the rest never were. mcentral hands out the lowest free index first, so
    // this only grows while the span lives, and every object below it that is
    // free again carries the free mark (it went through a cache). Written
    // under mcentral's lock, with its copy in each page's free_check word
    // (publish_handed); the free path reads that copy without the lock: an
    // object at or past it was never handed out, and its free is invalid — so
    // no object of a span is accepted by free unless it is below `handed` and
    // unmarked. Zero in a fresh span (span_pool::get), and so in every large
    // span.
    std::atomic<std::uint64_t> handed;
    std::uint32_t npages;
    std::uint32_t elem_size;  // class size; 0 for a large span
    std::uint32_t nelems;     // objects carved from the span (1 for large)
    std::uint32_t div_mul;    // (offset * div_mul) >> 32 == offset / elem_size
    std::uint8_t size_class;  // 0 for large
    span_state state;
    span_list_id list;
    bool needzero;  // some page may hold old data (fresh pages are zero)
    // A large span parked in the large cache (large.h): free, not the
    // program's. Written under the cache's lock; read by the checks of free,
    // realloc and malloc_usable_size without it. A small span in the heap's
    // empty-span cache (heap.h), written and read under the heap's lock.
    std::atomic<bool> parked;
    std::uint32_t parked_tick;  // the heap's tick when it was parked (or cached: heap.h)
    // Objects of this span that the heap profiler sampled and that are not yet
    // freed: the checked free path tests it (the fast path sees instead the
    // sampled bit flipped in the span's free_check words while this is
    // non-zero), and only when it is non-zero looks up the object's bit in
    // sampled_bits; a set bit sends the free to sampled_free(). Both change
    // by atomic read-modify-write (two objects of a span may be sampled or
    // freed at once) and are read without a lock (the bit of an object is
    // set before the object is returned, so its freer sees it). Zero in a fresh span
    // (span_pool::get), and again when the span's last sample is freed:
    //   live_samples == popcount(sampled_bits).
    std::atomic<std::uint16_t> live_samples;

    // Small spans, owned by their mcentral's lock:
    //   nfree == popcount(free_bits) and nfree <= nelems; bits past nelems are 0;
    //   nelems - nfree objects are out: in thread caches or with the program.
    std::uint32_t nfree;
    std::uint32_t scan_word;  // no set bit in free_bits below this word
    mspan* next;              // mcentral list (or the span pool's free list)
    mspan* prev;
    // 1 = object free in the span. mcentral writes it through atomic_ref, and
    // the free path reads it without the lock (free_in_span, fastpath.h).
    std::uint64_t free_bits[span_bitmap_words];
    // 1 = object sampled by the heap profiler and not freed (see live_samples):
    // so that, in a span with a sampled object, freeing the others stays on
    // the fast path. A large span's one object is bit 0.
    std::atomic<std::uint64_t> sampled_bits[span_bitmap_words];

    bool is_sampled(std::uint32_t idx) const noexcept {
        return (sampled_bits[idx / 64].load(std::memory_order_relaxed) >> (idx % 64)) & 1;
    }

    std::uintptr_t end() const { return base + std::uintptr_t{npages} * page_size; }
};

void set_state(mspan* s, span_state to) noexcept;

// The object-start test: an exact division by a multiply and a rotate
// (Granlund and Montgomery, "Division by invariant integers using
// multiplication", 1994, section 9). A class size d is o * 2^t with o odd;
// let inv be o's inverse modulo 2^32. When d divides off, off * inv is
// (off / d) * 2^t exactly, and rotating it right by t gives off / d. When it
// does not, either o does not divide off, and the product is above
// (2^32 - 1) / o, or one of the product's t low bits is set, and the rotate
// moves it to the top: either way the result is above (2^32 - 1) / d, at
// least 2^17, past the most objects a span holds. So `start_index32(off) < n`
// says at once that an object starts at off and that its index is below n,
// for every 32-bit off. Offsets within a span are below 2^17: free's fast
// path computes them from a page word (free_check_offset), the checked
// path from the span's base.
inline std::uint32_t start_index32(std::uint32_t off, std::uint32_t inv, unsigned shift) noexcept {
    return std::rotr(off * inv, static_cast<int>(shift));
}
constexpr std::uint64_t odd_inverse(std::uint64_t o) {
    std::uint64_t x = o;  // right in 3 bits for any odd o; each step doubles them
    for (int i = 0; i < 5; ++i) x *= 2 - o * x;
    return x;
}

// Per class, what a new span of the class needs, computed at compile time:
// a span is made on every mcentral miss, and a 64-bit division costs tens of
// cycles.
struct class_span_shape {
    std::uint32_t start_inv;   // the class size's odd part's inverse modulo 2^32
    std::uint8_t start_shift;  // the class size's trailing zero bits
    std::uint32_t nelems;      // objects in a span of the class
};
inline constexpr auto class_span_shapes = [] {
    std::array<class_span_shape, num_classes> t{};
    for (unsigned c = 1; c < num_classes; ++c) {
        const std::uint32_t d = sc::class_size[c];
        const auto shift = static_cast<std::uint8_t>(std::countr_zero(d));
        t[c] = {static_cast<std::uint32_t>(odd_inverse(d >> shift)), shift, static_cast<std::uint32_t>(sc::class_pages[c] * page_size / d)};
    }
    return t;
}();

// The index of the object at addr in s (0 for a large span's one object).
inline std::uint32_t object_index(const mspan* s, std::uintptr_t addr) noexcept {
    return static_cast<std::uint32_t>(((addr - s->base) * s->div_mul) >> 32);
}

// start_index32 of addr, inside small span s, with its class's constants
// (the checked path's; free's fast path has them in its bin).
inline std::uint32_t start_index_in(const mspan* s, std::uintptr_t addr) noexcept {
    const class_span_shape& shape = class_span_shapes[s->size_class];
    return start_index32(static_cast<std::uint32_t>(addr - s->base), shape.start_inv, shape.start_shift);
}

// Whether addr, inside small span s, is where one of its objects starts.
inline bool is_object_start(const mspan* s, std::uintptr_t addr) noexcept { return start_index_in(s, addr) < s->nelems; }

// Whether addr, inside small span s, starts an object that was handed out at
// least once (see mspan::handed).
inline bool is_handed_object_start(const mspan* s, std::uintptr_t addr) noexcept {
    return start_index_in(s, addr) < s->handed.load(std::memory_order_relaxed);
}

// --- arenas and the page map -------------------------------------------------

// One 64 MiB arena. Owned by mheap's lock, except `spans`, which readers on the
// free path load without it (a pointer they free was published to them through
// the lock that carved it).
struct heap_arena {
    // The two page maps free's fast path reads come first, where each load
    // indexes from the arena's address with its offset as the displacement
    // (GCC added the offset in an instruction of its own for an array past
    // the first 64 KiB).
    // page -> what free's fast path needs of its small span besides the
    // class: see free_check_word below. 0 for every other page.
    std::atomic<std::uint32_t> free_check[pages_per_arena];
    // page -> its span's size class; 0 for a large span's pages and free
    // pages. A copy of spans[i]->size_class (spans[i] null => 0 here), kept
    // so that free finds its bin with one load fewer on the chain of
    // dependent loads from the pointer to the bin.
    std::atomic<std::uint8_t> page_class[pages_per_arena];
    // page -> span, for every page of a small span and the first page of a
    // large one (heap.h); null for the rest, free pages among them.
    std::atomic<mspan*> spans[pages_per_arena];
    std::uintptr_t base;
    std::uint64_t free_bits[arena_bitmap_words];  // 1 = page free
    // 1 = a free page whose memory went back to the OS; always a subset of
    // free_bits. Taking such a page out of the heap clears its bit.
    std::uint64_t released_bits[arena_bitmap_words];
    // The scavenger's tick when a page of this word (64 pages, 512 KiB) was
    // last freed: the word's free pages are released once it is old enough.
    std::uint32_t freed_tick[arena_bitmap_words];
    std::uint32_t free_pages;                     // popcount(free_bits)
    std::uint32_t released_pages;                 // popcount(released_bits)
    std::uint32_t search_word;                    // no free page below this word
    std::uint32_t zeroed_base;                    // pages from here on were never handed out
    // Pages [0, reserved_pages) are mapped; the rest of the arena's 64 MiB is
    // not ours yet (reserved as the heap grows, see mheap::grow), and its
    // pages are neither free nor in a span.
    std::uint32_t reserved_pages;
    // 1 = a page the scavenger is giving back right now, outside the lock:
    // neither free (so no allocation takes it while madvise runs) nor in a
    // span. Disjoint from free_bits; empty whenever nobody scavenges.
    std::uint64_t inflight_bits[arena_bitmap_words];
    bool named;                                   // prctl naming took
};

// Arena index -> arena: two levels, as Go's arenaL1/arenaL2 where the address
// space is too large for one flat array. A flat index of 2^22 pointers would
// be 32 MiB of .bss: the kernel backs only what is touched, but every byte of
// it counts against the address space (VmSize, `ulimit -v`) of every program
// that preloads the library. The root is 8 KiB of .bss; each leaf (32 KiB,
// 256 GiB of address space) is mapped when its first arena arrives.
//
// A root entry without a leaf is null, and a lookup tests for it: shift,
// load, test, mask, load, one load more than a flat index, on a line that
// every free touches and so stays in cache. The test is predicted (a pointer
// the caches do not place is almost always ours), and it keeps the root out
// of the library's image: entries pointing at a shared empty leaf were 1024
// load-time relocations, which dirtied 8 KiB of .data, and the leaf 32 KiB
// of .rodata, of every process that preloads the library.
inline constexpr std::size_t arena_leaf_bits = 12;
inline constexpr std::size_t arena_leaf_entries = std::size_t{1} << arena_leaf_bits;
inline constexpr std::size_t arena_root_entries = std::size_t{1} << (address_bits - arena_shift - arena_leaf_bits);
static_assert(arena_root_entries * arena_leaf_entries == std::size_t{1} << (address_bits - arena_shift),
              "root and leaves together cover every arena of the address space");

struct arena_leaf {
    std::atomic<heap_arena*> arena[arena_leaf_entries];
};
// Written under mheap's lock (a leaf is published before any of its arenas),
// read without it, through atomic_ref.
extern const arena_leaf* arena_root[arena_root_entries];

inline heap_arena* arena_of(std::uintptr_t addr) noexcept {
    const std::uintptr_t i = addr >> arena_shift;
    if (i >= arena_root_entries * arena_leaf_entries) return nullptr;
    const arena_leaf* leaf = std::atomic_ref<const arena_leaf*>(arena_root[i >> arena_leaf_bits]).load(std::memory_order_acquire);
    if (leaf == nullptr) [[unlikely]] return nullptr;
    return leaf->arena[i & (arena_leaf_entries - 1)].load(std::memory_order_acquire);
}

// The span the page map names for addr's page: the small span holding addr,
// or the large span starting on that page; nullptr otherwise (heap.h), inside
// a large block past its first page included.
inline mspan* span_of(std::uintptr_t addr) noexcept {
    heap_arena* a = arena_of(addr);
    if (a == nullptr) return nullptr;
    return a->spans[(addr >> page_shift) & (pages_per_arena - 1)].load(std::memory_order_relaxed);
}

// --- the free path's page words ---------------------------------------------

// What free's fast path knows of a page of a small span, in 32 bits, so that
// it reads no span record: a random free among a few hundred spans found the
// record's line out of the first-level cache about once a free (cachegrind,
// a larson-style loop), and that line also holds the fields mcentral writes
// on every fill and release of the span, from any thread. 16 pages share a
// line of these words, which change only when the span hands out objects it
// never handed before.
//   bits 0-17   the low 18 bits of the span's base: an object's offset in
//               the span is the address minus this, modulo 2^18 (spans are
//               smaller than 2^17 bytes), in one subtract and one mask
//               (free_check_offset);
//   bits 18-31  the span's handed count (mspan::handed).
// Bit 17 of the base flips while the span has a live heap-profile sample:
// every offset then gains 2^17, at least a whole span of the class, so the
// offset divided by the class size is at least the span's object count and
// no free of the span passes; the checked path looks up the object's
// sampled bit instead.
// Pages of large spans and free pages hold 0: a handed count of 0, which no
// free passes. The fields have three writers, under three different locks:
// the heap sets the word when it carves the span and clears it when the
// span's pages go back (heap.cpp), mcentral adds to the count
// (publish_handed, central.cpp) and the profiler flips the sampled bit
// (sampler.cpp), each with an atomic read-modify-write of the whole word
// where another writer may be at work.
inline constexpr std::uint32_t free_check_sampled = std::uint32_t{1} << 17;
inline constexpr std::uint32_t free_check_offset_mask = 2 * free_check_sampled - 1;
inline constexpr unsigned free_check_handed_shift = 18;
inline constexpr std::uint32_t free_check_word(std::uintptr_t span_base, std::uint64_t handed) {
    return (static_cast<std::uint32_t>(span_base) & free_check_offset_mask) | static_cast<std::uint32_t>(handed) << free_check_handed_shift;
}
inline constexpr std::size_t max_span_bytes = *std::max_element(std::begin(sc::class_pages), std::end(sc::class_pages)) * page_size;
static_assert(max_span_bytes <= free_check_sampled, "offsets in a span lie below the sampled bit, which moves them past any span");
static_assert(max_objects_per_span < (std::size_t{1} << (32 - free_check_handed_shift)), "a handed count fits the word's top bits");

// addr's offset from its span's base, in a page whose word is w (plus 2^17
// while the span has a sample): below 2^18, for start_index32.
inline std::uint32_t free_check_offset(std::uintptr_t addr, std::uint32_t w) noexcept {
    return (static_cast<std::uint32_t>(addr) - w) & free_check_offset_mask;
}
inline std::uint32_t free_check_handed(std::uint32_t w) noexcept { return w >> free_check_handed_shift; }

// f(word) for each page of small span s: its pages may lie in two adjacent
// arenas.
template <class F>
void for_each_free_check(const mspan* s, F f) noexcept {
    heap_arena* a = nullptr;
    for (std::uintptr_t p = s->base; p < s->end(); p += page_size) {
        if (a == nullptr || p - a->base >= arena_bytes) a = arena_of(p);
        f(a->free_check[(p >> page_shift) & (pages_per_arena - 1)]);
    }
}

// The profiler's switch (see free_check_sampled), on and off alike: an xor,
// so that mcentral's add to the count on another thread is never lost.
inline void flip_free_check_sampled(const mspan* s) noexcept {
    for_each_free_check(s, [](std::atomic<std::uint32_t>& w) { w.fetch_xor(free_check_sampled, std::memory_order_relaxed); });
}

// The span holding addr, large or small, or nullptr when none does: span_of,
// or a walk back over the page map to the large span whose first page is the
// nearest named one before addr (heap.cpp). Inside a block the walk is as
// long as the block; from a free page it may cross the whole free run (a
// caller holding the heap's lock tests the page's free bit first). So it
// serves diagnostics and introspection, never a fast path. Read under the
// heap's lock for an exact answer; without it, a span made or undone
// meanwhile may or may not be seen.
mspan* span_containing(std::uintptr_t addr) noexcept;

}  // namespace spanmap::detail

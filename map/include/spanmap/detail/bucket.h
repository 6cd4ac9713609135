#pragma once
// The bucket basics of spanmap::map (see the essay at the top of
// <spanmap/map.h>): the tophash markers, the growth arithmetic, the 8-slot
// bucket and its tophash word, and what the map asks of its allocator and
// its hash. Nothing here knows the map's key or value types beyond a slot's
// size and alignment.

#include <algorithm>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

// AddressSanitizer sees the slots: an empty slot is poisoned, so a reference
// kept across a growth (or an erase) into a slot that no longer holds its
// entry is reported where it is used, as for a table whose slots are freed.
#if defined(__SANITIZE_ADDRESS__)
#define SPANMAP_MAP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SPANMAP_MAP_ASAN 1
#endif
#endif
#if defined(SPANMAP_MAP_ASAN)
#include <sanitizer/asan_interface.h>
#endif
// -DSPANMAP_MAP_SSE2=0 takes the portable tophash test on x86-64 too.
#if !defined(SPANMAP_MAP_SSE2)
#if defined(__SSE2__)
#define SPANMAP_MAP_SSE2 1
#else
#define SPANMAP_MAP_SSE2 0
#endif
#endif
#if SPANMAP_MAP_SSE2
#include <emmintrin.h>
#endif

// Generation checks: an iterator remembers the map's generation, which every
// move of entries (evacuation, a new array, clear, assignment) advances; an
// iterator of an older generation stops the process where it is used. On in
// debug builds; -DSPANMAP_MAP_GENERATIONS=1 or 0 decides for any build (every
// translation unit of a program must agree: it changes the iterator's size).
#ifndef SPANMAP_MAP_GENERATIONS
#ifdef NDEBUG
#define SPANMAP_MAP_GENERATIONS 0
#else
#define SPANMAP_MAP_GENERATIONS 1
#endif
#endif

// The lookup path (hash, bucket, probe) is a few dozen instructions that a
// compiler may decline to inline into find() once the probe grows a loop; a
// call there costs more than the probe. Forced where it matters.
#if defined(__GNUC__) || defined(__clang__)
#define SPANMAP_MAP_INLINE [[gnu::always_inline]] inline
#else
#define SPANMAP_MAP_INLINE inline
#endif
// And the rare paths kept out of it, so that what is inlined stays small.
#if defined(__GNUC__) || defined(__clang__)
#define SPANMAP_MAP_NOINLINE [[gnu::noinline]]
#else
#define SPANMAP_MAP_NOINLINE
#endif

namespace spanmap::detail {

#if defined(SPANMAP_MAP_ASAN)
inline constexpr bool asan = true;
inline void poison(const void* p, std::size_t n) noexcept { ASAN_POISON_MEMORY_REGION(p, n); }
inline void unpoison(const void* p, std::size_t n) noexcept { ASAN_UNPOISON_MEMORY_REGION(p, n); }
#else
inline constexpr bool asan = false;
inline void poison(const void*, std::size_t) noexcept {}
inline void unpoison(const void*, std::size_t) noexcept {}
#endif

// tophash markers: the byte of a slot that holds no entry, or of a slot of an
// old bucket that has been evacuated (Go's names and values).
enum tophash_marker : std::uint8_t {
    empty_rest = 0,       // empty, and so is every later slot of this chain
    empty_one = 1,        // empty
    evacuated_x = 2,      // entry moved to the same index of the new array
    evacuated_y = 3,      // entry moved to another index of the new array
    evacuated_empty = 4,  // empty, and the bucket is evacuated
    min_top_hash = 5,     // a live slot's tophash is at least this
};
static_assert(empty_rest == 0,
              "a cleared bucket (zero bytes) must read as empty_rest in every slot");
static_assert(empty_one == empty_rest + 1, "is_empty(t) is t <= empty_one");
static_assert(evacuated_y == evacuated_x + 1,
              "evacuation writes evacuated_x + use_y, use_y being 0 (X) or 1 (Y)");
static_assert(min_top_hash == evacuated_empty + 1,
              "tophash_of() lifts every hash byte below min_top_hash by min_top_hash, so a live slot's byte is "
              ">= min_top_hash and can never be read as a marker");

inline constexpr unsigned bucket_cnt = 8;            // slots per bucket
inline constexpr std::size_t max_direct_size = 128;  // bigger keys and values are stored indirectly

// Load factor 6.5 (entries per bucket) as 13/2, so the trigger is integer
// arithmetic. Go chose it from this measurement of maximally loaded tables
// (just before they grow), 8-byte keys and values, 64-bit. Columns: buckets
// that have an overflow bucket; overhead bytes per key/value pair; entries
// checked to find a present key; entries checked to miss (counting every
// entry of the chain, before tophash filtering):
//
//   load factor   buckets with overflow   bytes/entry   hit probe   miss probe
//       4.0               2.1 %              20.8          3.00         4.0
//       4.5               4.1 %              17.3          3.25         4.5
//       5.0               6.9 %              14.8          3.50         5.0
//       5.5              10.6 %              12.9          3.75         5.5
//       6.0              15.3 %              11.7          4.00         6.0
//       6.5              20.9 %              10.8          4.25         6.5
//       7.0              27.1 %              10.2          4.50         7.0
//       7.5              34.0 %               9.7          4.75         7.5
//       8.0              41.1 %               9.4          5.00         8.0
//
// 6.5 is where bytes per entry stop falling fast while a fifth of the buckets
// have an overflow bucket. (go1.21 computed 13*(2^B/2) as 6*2^B by an integer
// slip, golang/go#63438; ours is 6.5.) The bench BM_LoadFactorTable in
// bench/map_bench.cpp re-measures all four columns with spanmap::hash (and,
// up to 6.5, the first two on a real spanmap::map); it lands within 0.5 of
// every number above.
inline constexpr std::size_t load_factor_num = 13;
inline constexpr std::size_t load_factor_den = 2;

// Go's overLoadFactor: would `count` entries overload 2^B buckets?
constexpr bool over_load_factor(std::size_t count, std::uint8_t B) noexcept {
    return count > bucket_cnt && count > load_factor_num * ((std::size_t{1} << B) / load_factor_den);
}

// Go's tooManyOverflowBuckets: about as many overflow buckets as buckets
// (capped at 2^15, since noverflow is approximate from B = 16 on).
constexpr bool too_many_overflow_buckets(std::uint32_t noverflow, std::uint8_t B) noexcept {
    return noverflow >= (std::uint32_t{1} << std::min<std::uint8_t>(B, 15));
}

// The same two triggers as thresholds that depend on B alone, so an insert
// compares against numbers kept beside B instead of recomputing them:
//   over_load_factor(count, B)           == count > load_limit(B)
//   too_many_overflow_buckets(nov, B)    == nov >= overflow_limit(B)
constexpr std::size_t load_limit(std::uint8_t B) noexcept {
    return std::max<std::size_t>(bucket_cnt, load_factor_num * ((std::size_t{1} << B) / load_factor_den));
}
constexpr std::uint32_t overflow_limit(std::uint8_t B) noexcept {
    return std::uint32_t{1} << std::min<std::uint8_t>(B, 15);
}
consteval bool limits_agree() {
    for (std::uint8_t B = 0; B < 40; ++B) {
        const std::size_t l = load_limit(B);
        for (std::size_t c : {l - 1, l, l + 1, l + 2}) {
            if (over_load_factor(c, B) != (c > l)) return false;
        }
        const std::uint32_t o = overflow_limit(B);
        for (std::uint32_t n : {o - 1, o, o + 1}) {
            if (too_many_overflow_buckets(n, B) != (n >= o)) return false;
        }
    }
    return true;
}
static_assert(limits_agree(), "the growth thresholds kept in the map header must trigger exactly where Go's checks do");

// Old buckets a write evacuates in order, after its own key's old bucket.
// Go's growWork takes one (two old buckets a write in all); spanmap takes
// eight. The total work of a growth is the same — every old bucket once —
// but more of it is done in address order, where the hardware prefetcher
// fetches the old bucket and both destinations ahead, and less at the
// random old bucket of each written key (three cache misses, and the new
// array's pages first touched out of order); the growth also ends in an
// eighth of the writes. Inserting 1M u64 keys from empty: 91 -> 75 ns an
// insert (10M: 115 -> 99); 16 or 32 gained nothing over 8. The price is
// paid by the writes during a growth: each does up to nine evacuations
// instead of two (growth_latency, growing to 8M keys: p50 110 -> 60 ns,
// p99.9 6.8 -> 8.0 us, the maximum 1.5 -> 1.6 ms). Where growths start — the load factor and the overflow count
// above — is Go's, so the bucket counts stay Go's at every step (the
// differential test against Go checks them).
inline constexpr std::size_t evacuations_per_write = 8;

// The smallest B that holds n entries without growing (Go's makemap).
constexpr std::uint8_t b_for_count(std::size_t n) noexcept {
    std::uint8_t B = 0;
    while (over_load_factor(n, B)) ++B;
    return B;
}

constexpr std::uint8_t tophash_of(std::uint64_t hash) noexcept {
    const auto top = static_cast<std::uint8_t>(hash >> 56);
    return top < min_top_hash ? static_cast<std::uint8_t>(top + min_top_hash) : top;
}

constexpr std::size_t round_up(std::size_t n, std::size_t align) noexcept { return (n + align - 1) / align * align; }

// A bucket's 8 tophash bytes tested at once, so a probe rejects a bucket
// without a loop. Each test returns a mask of the selected slots; slots are
// taken from it lowest first (the order of the slots) with first(), and
// m &= m - 1 drops the lowest. With SSE2 (every x86-64) the bytes go into a
// vector register, one compare tests all 8 and movemask gives one bit per
// slot (bit i); elsewhere the bytes are one 64-bit word tested with SWAR
// arithmetic, slot i in byte i, its mask bit the byte's high bit (bit 8i+7).
// The SSE2 form takes about ten fewer instructions per probe.
struct tophash_word {
    static constexpr std::uint64_t lsb = 0x0101010101010101ULL;
    static constexpr std::uint64_t msb = 0x8080808080808080ULL;

    // Exactly the zero bytes: (b & 0x7f) + 0x7f carries into bit 7 for any
    // nonzero low bits and never into the next byte.
    static constexpr std::uint64_t zero_bytes(std::uint64_t x) noexcept { return ~(((x & ~msb) + ~msb) | x) & msb; }

#if SPANMAP_MAP_SSE2
    __m128i v;  // the 8 bytes in the low half, zeros above

    static tophash_word load(const unsigned char* tophash) noexcept {
        return {_mm_loadl_epi64(reinterpret_cast<const __m128i*>(tophash))};
    }
    // The zero upper half never matches: a live tophash is >= min_top_hash > 0.
    std::uint32_t matching(std::uint8_t top) const noexcept {
        return static_cast<std::uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(static_cast<char>(top)))));
    }
    // empty_rest or empty_one: the bytes that min(b, 1) leaves unchanged.
    std::uint32_t empty() const noexcept {
        return static_cast<std::uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(1)), v))) & 0xffu;
    }
    bool has_empty_rest() const noexcept {
        return (_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_setzero_si128())) & 0xff) != 0;
    }
    // Live slots: the bytes that max(b, min_top_hash) leaves unchanged (the
    // zero upper half is not: max(0, min_top_hash) != 0).
    std::uint32_t live() const noexcept {
        return static_cast<std::uint32_t>(
            _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(static_cast<char>(min_top_hash))), v)));
    }
    static unsigned first(std::uint32_t mask) noexcept { return static_cast<unsigned>(std::countr_zero(mask)); }
#else
    std::uint64_t w;

    static tophash_word load(const unsigned char* tophash) noexcept {
        std::uint64_t w;
        std::memcpy(&w, tophash, sizeof w);
        if constexpr (std::endian::native == std::endian::big) w = __builtin_bswap64(w);
        return {w};
    }
    constexpr std::uint64_t matching(std::uint8_t top) const noexcept { return zero_bytes(w ^ (lsb * top)); }
    constexpr std::uint64_t empty() const noexcept { return zero_bytes(w & ~lsb); }  // empty_rest or empty_one
    constexpr bool has_empty_rest() const noexcept { return zero_bytes(w) != 0; }
    // Live slots: a byte's high bit, or its low 7 bits plus 128 - min_top_hash
    // carrying into bit 7 (at most 0x7f + 0x7b: never into the next byte).
    constexpr std::uint64_t live() const noexcept {
        return (((w & ~msb) + lsb * (0x80 - min_top_hash)) | w) & msb;
    }

    static constexpr unsigned first(std::uint64_t mask) noexcept { return static_cast<unsigned>(std::countr_zero(mask)) / 8; }
#endif
};
#if !SPANMAP_MAP_SSE2
static_assert(tophash_word{0x0100ff7f80000001ULL}.empty() == 0x8080000000808080ULL,
              "empty() selects the bytes equal to empty_rest (0) or empty_one (1)");
static_assert(tophash_word{0x0504030201ff7f80ULL}.live() == 0x8000000000808080ULL,
              "live() selects the bytes at or above min_top_hash");
#endif
static_assert(min_top_hash > 0, "the SSE2 test compares 8 more bytes, all zero, which must never match a live slot");
static_assert(tophash_word::zero_bytes(0x0100ff7f80000001ULL) == 0x0080000000808000ULL);

// Erase's clean-up of a chain's tail: slot i has just become empty_one and
// every slot after it in the chain is empty_rest (zero), so the run of
// empty_one slots ending at i, and i itself, become empty_rest. Since the
// bytes after i are zero already, that is: keep the bytes up to the last one
// above empty_one and clear the rest. Returns whether the run reached slot 0
// (it may go on in the previous bucket). One word of SWAR arithmetic,
// whatever the run's length.
inline bool clear_empty_one_run(unsigned char* tophash, [[maybe_unused]] unsigned i) noexcept {
    constexpr std::uint64_t lsb = tophash_word::lsb;
    constexpr std::uint64_t msb = tophash_word::msb;
    std::uint64_t w;
    std::memcpy(&w, tophash, sizeof w);
    if constexpr (std::endian::native == std::endian::big) w = __builtin_bswap64(w);
    // High bit of each byte above empty_one (empty_rest and empty_one differ in bit 0 only).
    const std::uint64_t kept = ~tophash_word::zero_bytes(w & ~lsb) & msb;
    // kept's highest bit is bit 7 of the last byte to keep: shift the ones out above it.
    w = kept ? w & (~std::uint64_t{0} >> std::countl_zero(kept)) : 0;
    if constexpr (std::endian::native == std::endian::big) w = __builtin_bswap64(w);
    std::memcpy(tophash, &w, sizeof w);
    return kept == 0;
}

// Erase's whole tophash update for slot i: slot i becomes empty_one, and if
// nothing live follows it in its chain — slot i+1 is empty_rest, or for slot
// 7 the caller says so in `tail_rest` (the next bucket's test needs the
// overflow word; other slots ignore it) — the run of empty_one slots ending
// at i becomes empty_rest, as clear_empty_one_run does. Returns whether such
// a run reached slot 0 (it may go on in the previous bucket).
//   Whether the run is cleared depends on the erased key's neighbours, which
// no predictor can guess: as a branch it is missed on a third of the erases
// of a shuffled erase-all. BranchFree computes both outcomes and selects,
// which pays while the bucket array sits in the core's cache (10k u64 keys:
// 11.8 ns an erase with the branch, 7.7 without; 100k: 14.0, 13.1). Past
// that each erase waits on memory, and what counts is how much waits for the
// bucket's line: the select's chain is longer than a predicted branch's, and
// 1M keys took 38 ns an erase against 33. BranchFree sets the byte in the
// loaded word (a word load after a byte store to it would wait for the
// store); the other form stores the byte alone and reads the word only to
// clear a run (a word form with a branch still lost 10% at 1M keys).
template <bool BranchFree>
inline bool erase_tophash(unsigned char* tophash, unsigned i, bool tail_rest) noexcept {
    if constexpr (!BranchFree) {
        // The byte alone, and the word only when the run is to be cleared:
        // past the cache, the fewer instructions wait on the bucket's line.
        tophash[i] = empty_one;
        const bool rest = i != bucket_cnt - 1 ? tophash[i + 1] == empty_rest : tail_rest;
        return rest && clear_empty_one_run(tophash, i);
    } else {
        constexpr std::uint64_t lsb = tophash_word::lsb;
        std::uint64_t w;
        std::memcpy(&w, tophash, sizeof w);
        if constexpr (std::endian::native == std::endian::big) w = __builtin_bswap64(w);
        const unsigned shift = 8 * i;
        w = (w & ~(std::uint64_t{0xff} << shift)) | (std::uint64_t{empty_one} << shift);
        // The byte after i (zero past slot 7, where tail_rest decides).
        const bool rest = ((((w >> shift) >> 8) & 0xff) == empty_rest) & ((i != bucket_cnt - 1) | tail_rest);
        // A byte above empty_one has a bit besides bit 0: kept is nonzero in
        // exactly the bytes to keep, and everything above the highest of
        // them becomes empty_rest (all of it when there is none; `| 1` only
        // gives the bit scan a bit to find).
        const std::uint64_t kept = w & ~lsb;
        const unsigned high = 63 ^ static_cast<unsigned>(__builtin_clzll(kept | 1));
        const std::uint64_t cleared = w & ((std::uint64_t{2} << (high | 7)) - 1) & ~std::uint64_t{kept == 0};
        w ^= (w ^ cleared) & (std::uint64_t{0} - rest);
        if constexpr (std::endian::native == std::endian::big) w = __builtin_bswap64(w);
        std::memcpy(tophash, &w, sizeof w);
        return rest & (kept == 0);
    }
}

// Stored behind a pointer: too big to copy around in buckets (Go's rule), or
// a move that may throw (evacuation must not fail half-way).
template <class U>
inline constexpr bool stored_indirectly = sizeof(U) > max_direct_size || !std::is_nothrow_move_constructible_v<U>;

// Does H take the map's seed itself (spanmap::hash does), or do we mix it in?
template <class H, class K>
concept seeded_hasher = requires(const H& h, const K& k, std::uint64_t seed) {
    { h(k, seed) } -> std::convertible_to<std::uint64_t>;
};

template <class H, class K>
consteval bool nothrow_hasher() {
    if constexpr (seeded_hasher<H, K>) {
        return noexcept(std::declval<const H&>()(std::declval<const K&>(), std::uint64_t{}));
    } else {
        return noexcept(std::declval<const H&>()(std::declval<const K&>()));
    }
}

[[noreturn]] inline void fatal(const char* what) noexcept {
    // stderr is unbuffered: nothing is allocated on the way out.
    std::fputs("fatal error: ", stderr);
    std::fputs(what, stderr);
    std::fputc('\n', stderr);
    std::abort();
}

// A bucket whose slots are of type Slot, as raw bytes (the map constructs
// and destroys each slot's object itself; see the pseudo-struct in map.h).
template <class Slot>
struct alignas(std::max(alignof(Slot), alignof(void*))) bucket {
    static constexpr std::size_t slots_offset = round_up(bucket_cnt, alignof(Slot));
    static constexpr std::size_t overflow_offset = round_up(slots_offset + bucket_cnt * sizeof(Slot), alignof(bucket*));
    static constexpr std::size_t align = std::max(alignof(Slot), alignof(bucket*));
    static constexpr std::size_t bytes = round_up(overflow_offset + sizeof(bucket*), align);

    unsigned char raw[bytes];
};

template <class Slot>
std::uint8_t* tophash(bucket<Slot>* b) noexcept {
    return b->raw;
}
template <class Slot>
bucket<Slot>*& overflow(bucket<Slot>* b) noexcept {
    return *std::launder(reinterpret_cast<bucket<Slot>**>(b->raw + bucket<Slot>::overflow_offset));
}
template <class Slot>
void* slot_at(bucket<Slot>* b, unsigned i) noexcept {
    return b->raw + bucket<Slot>::slots_offset + i * sizeof(Slot);
}
// Starts fetching the cache lines of b's slots beside the tophash line that a
// probe reads first. A hit reads its key from one of them, and a probe of a
// bucket array larger than the cache would otherwise wait for two misses in
// a row: the tophash line's, then the key's. Asking for the lines together
// makes them one wait (a hit among 1M u64 keys: 37.6 -> 26.1 ns). It asks
// for the lines after the first that the slot area spans, at most three: a
// bucket that starts late in its line, or slots further on (large keys),
// leave a line to be read on demand.
template <class Slot>
void prefetch_slots(const bucket<Slot>* b) noexcept {
    constexpr std::size_t slots_end = bucket<Slot>::overflow_offset;
    constexpr std::size_t lines = std::min<std::size_t>((slots_end + 63) / 64 - 1, 3);
    const char* p = reinterpret_cast<const char*>(b->raw);
    [&]<std::size_t... k>(std::index_sequence<k...>) {
        (__builtin_prefetch(p + 64 * (k + 1)), ...);
    }(std::make_index_sequence<lines>{});
}
// An empty chain of one bucket: every slot empty_rest (and poisoned), no overflow.
template <class Slot>
void init_bucket(bucket<Slot>* b) noexcept {
    std::memset(b->raw, empty_rest, bucket_cnt);
    ::new (static_cast<void*>(b->raw + bucket<Slot>::overflow_offset)) bucket<Slot>*(nullptr);
    poison(b->raw + bucket<Slot>::slots_offset, bucket_cnt * sizeof(Slot));
}
// Evacuation marks every slot of an old bucket, so the first slot tells.
template <class Slot>
bool evacuated(bucket<Slot>* b) noexcept {
    const std::uint8_t t = tophash(b)[0];
    return t > empty_one && t < min_top_hash;
}
constexpr bool is_live(std::uint8_t t) noexcept { return t >= min_top_hash; }

// What the map takes from an allocator beyond std::allocator_traits, found
// by its members, not its name (spanmap::allocator has it):
//   good_size(n): how many objects the block that allocate(n) hands out
//     really holds, so an array of buckets is rounded up to its size class
//     (Go's roundupsize) and the tail becomes preallocated overflow buckets.
template <class A>
concept sizing_allocator = requires(const A& a, std::size_t n) {
    { a.good_size(n) } -> std::convertible_to<std::size_t>;
};

// An allocator that can take a block back and return its memory to the OS at
// once (spanmap::allocator's deallocate_release).
template <class A>
concept releasing_allocator = requires(A& a, typename std::allocator_traits<A>::pointer p, std::size_t n) {
    a.deallocate_release(p, n);
};

// The smallest old array that end_growth hands back through
// deallocate_release. Releasing costs a madvise now and a page fault per page
// when the memory is used again. That pays off for a big array, which the
// process is unlikely to ask for again soon, but not for a small one: the
// arena keeps freed blocks of up to 4 MiB whole for the next request of
// their size (its large cache), and the next map to grow asks for exactly
// these sizes. Releasing every old array cost a third of the time of
// building a map of 10,000 keys, in faults on arrays the arena had just
// given back.
inline constexpr std::size_t release_min_bytes = std::size_t{4} << 20;

// An allocator that can cut a live array and give its tail back to the OS
// (spanmap::allocator's shrink_release): end_growth then returns a big old
// array a piece per insert.
template <class A>
concept shrinking_allocator =
    releasing_allocator<A> && requires(A& a, typename std::allocator_traits<A>::pointer p, std::size_t n) {
        a.shrink_release(p, n);
    };
// A piece of a retiring array. Cut in whole 8 KiB pages, 120 KiB gives back
// at most 16 of them, 32 OS pages: x86 Linux invalidates a range of up to 33
// pages page by page, and a larger one with a flush of the whole TLB, which
// on a virtual machine with shadow page tables costs in proportion to what
// the process touched since the last one (8 ms for the first 216 KiB piece
// of a map of 450 MB, measured). Page by page costs more per byte there
// (about 4 us a page), so a retiring insert pays about 0.1 ms, once per
// 120 KiB of the old array.
inline constexpr std::size_t retire_piece_bytes = std::size_t{120} << 10;
// Only an old array this big retires a piece at a time; a smaller one goes
// back in one deallocate_release. Below it, the release in one insert takes
// about 2 ms or less (1 ms for 19 MB, measured), no more than the page
// faults of the insert that starts a growth, and the pieces would cost more
// in all where page-by-page invalidation is slow (on the VM measured: insert
// of 1M u64 keys 20% slower when its 19 MB array retired in pieces).
inline constexpr std::size_t retire_min_bytes = std::size_t{32} << 20;

}  // namespace spanmap::detail

#pragma once
// spanmap::hash<T> — the seeded 64-bit hash that spanmap::map uses by default.
//
// One primitive does the mixing: multiply two 64-bit words into 128 bits and
// fold the halves together with XOR (`mix`). Each product bit depends on many
// input bits, and the XOR brings the high half's well-mixed bits down into
// the low bits that pick a bucket; the map's tophash reads the top byte. This
// is the construction of wyhash and rapidhash; the code here is our own.
//
//   integers, enums, pointers   the word and the seed through two
//                               multiply-folds
//   float, double, long double  +0 and -0 hash alike (they compare equal);
//                               NaN hashes to a fresh random value each time:
//                               it never equals itself, so each insert adds
//                               an entry, and random hashes spread those
//                               entries instead of piling them into one chain
//                               (Go does the same)
//   std::basic_string<char>,    the bytes, 16 at a time (three lanes past 48
//   std::string_view,           bytes). The three agree on equal text and are
//   const char* / char*         transparent: a map keyed by std::string finds
//                               a std::string_view or a const char* without
//                               building a std::string. const char* hashes
//                               the characters, not the address (so it agrees
//                               with std::string); std::equal_to<const char*>
//                               still compares addresses, as in std, and the
//                               characters behind a const char* key must not
//                               change while it is in a map.
//   anything else               std::hash<T>, mixed with the seed (std::hash
//                               is often the identity on integers, which
//                               would leave tophash always 0)
//
// Every specialization offers operator()(x, seed) — the map passes its own
// per-map seed — and operator()(x) with seed 0, so spanmap::hash also works
// where a std-style hasher is expected.

#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <type_traits>

namespace spanmap {

namespace detail {

__extension__ typedef unsigned __int128 uint128;  // __extension__: no -Wpedantic noise

// Odd 64-bit constants with about half their bits set in every byte (the
// same kind wyhash uses): a product with them spreads each input bit widely.
inline constexpr std::uint64_t hash_k0 = 0xa0761d6478bd642fULL;
inline constexpr std::uint64_t hash_k1 = 0xe7037ed1a0b428dbULL;
inline constexpr std::uint64_t hash_k2 = 0x8ebc6af09c88c6e3ULL;

// 64x64 -> 128-bit multiply; the low half lands in a, the high half in b.
constexpr void mul128(std::uint64_t& a, std::uint64_t& b) noexcept {
    const uint128 r = static_cast<uint128>(a) * b;
    a = static_cast<std::uint64_t>(r);
    b = static_cast<std::uint64_t>(r >> 64);
}

// The mixing step: multiply, then fold the halves. On x86-64 the multiply is
// one mulq written out: GCC 12 otherwise sends the 128-bit product through
// the stack in lookup loops, a store and a reload on the hash's critical
// path (two of a u64 lookup's 52 instructions, and their latency).
constexpr std::uint64_t mix(std::uint64_t a, std::uint64_t b) noexcept {
#if defined(__x86_64__) && defined(__GNUC__)
    if (!std::is_constant_evaluated()) {
        std::uint64_t hi;
        __asm__("mulq %[b]" : "+a"(a), "=d"(hi) : [b] "rm"(b) : "cc");
        return a ^ hi;
    }
#endif
    const uint128 r = static_cast<uint128>(a) * b;
    return static_cast<std::uint64_t>(r) ^ static_cast<std::uint64_t>(r >> 64);
}

// One word (an integer, a pointer, a float's bits, a std::hash result):
// two multiply-folds by constants, the seed mixed in before the first. One
// multiply-fold is not enough: a low output bit then hardly depends on the
// top input bits, since the product's low half sees them only in its top
// bits (tests/map/hash_test.cpp, IntegerAvalanche, measures this); the
// second fold spreads every bit of the first everywhere. It is about ten
// instructions, and half the work of multiplying the word by a rotated copy
// of itself and folding that, which hashes no better.
constexpr std::uint64_t hash_word(std::uint64_t x, std::uint64_t seed) noexcept {
    // seed ^ hash_k0 first: in a loop of lookups it is one invariant value.
    return mix(mix(x ^ (seed ^ hash_k0), hash_k1), hash_k2);
}

inline std::uint64_t read64(const unsigned char* p) noexcept {
    std::uint64_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
inline std::uint64_t read32(const unsigned char* p) noexcept {
    std::uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// Bytes: inputs up to 16 bytes are read as two (possibly overlapping) words
// without a loop; longer ones are folded 16 bytes per step, in three
// independent lanes while more than 48 bytes remain (the multiplies of the
// lanes overlap in the CPU), and the last 16 bytes always feed the final mix
// together with the length.
inline std::uint64_t hash_bytes(const void* data, std::size_t len, std::uint64_t seed) noexcept {
    const auto* p = static_cast<const unsigned char*>(data);
    seed ^= mix(seed ^ hash_k0, hash_k1);
    std::uint64_t a = 0;
    std::uint64_t b = 0;
    if (len <= 16) {
        if (len >= 4) {
            // Two 4-byte reads from each end; for 8..16 bytes the second pair
            // starts 4 bytes further in, so every byte is read at least once.
            const std::size_t shift = (len >> 3) << 2;
            a = (read32(p) << 32) | read32(p + shift);
            b = (read32(p + len - 4) << 32) | read32(p + len - 4 - shift);
        } else if (len > 0) {
            // 1..3 bytes: first, middle and last byte.
            a = (std::uint64_t{p[0]} << 16) | (std::uint64_t{p[len >> 1]} << 8) | p[len - 1];
        }
    } else {
        std::size_t left = len;
        if (left > 48) {
            std::uint64_t lane1 = seed;
            std::uint64_t lane2 = seed;
            do {
                seed = mix(read64(p) ^ hash_k1, read64(p + 8) ^ seed);
                lane1 = mix(read64(p + 16) ^ hash_k2, read64(p + 24) ^ lane1);
                lane2 = mix(read64(p + 32) ^ hash_k0, read64(p + 40) ^ lane2);
                p += 48;
                left -= 48;
            } while (left > 48);
            seed ^= lane1 ^ lane2;
        }
        while (left > 16) {
            seed = mix(read64(p) ^ hash_k1, read64(p + 8) ^ seed);
            p += 16;
            left -= 16;
        }
        a = read64(p + left - 16);
        b = read64(p + left - 8);
    }
    a ^= hash_k1;
    b ^= seed;
    mul128(a, b);
    return mix(a ^ hash_k0 ^ len, b ^ hash_k1);
}

// A cheap per-thread random stream (a Weyl sequence through `mix`, as
// wyrand). It seeds each map and scatters NaN keys. The state is seeded once
// per thread from the address of a local (stack addresses differ per thread
// and per run under ASLR), the address of the thread-local itself, a process
// counter and the clock; after that no system call, no lock, no shared write.
inline std::uint64_t thread_random() noexcept {
    thread_local std::uint64_t state = 0;
    if (state == 0) [[unlikely]] {
        static std::atomic<std::uint64_t> threads{0};
        int local = 0;
        const auto stack = reinterpret_cast<std::uintptr_t>(&local);
        const auto self = reinterpret_cast<std::uintptr_t>(&state);
        const auto now = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
        state = mix(stack ^ hash_k0, self ^ hash_k1) ^ mix(now ^ hash_k2, threads.fetch_add(1, std::memory_order_relaxed));
        state |= 1;  // never 0 again, so this branch runs once per thread
    }
    state += hash_k0;
    return mix(state, state ^ hash_k1);
}

}  // namespace detail

// Primary template: anything std::hash knows. The std::hash result is mixed
// with the seed, so weak std::hash functions (identity on integers) still give
// the map good low bits and a good top byte.
template <class T>
struct hash {
    std::uint64_t operator()(const T& x, std::uint64_t seed = 0) const
        noexcept(noexcept(std::hash<T>{}(x))) {
        return detail::hash_word(static_cast<std::uint64_t>(std::hash<T>{}(x)), seed);
    }
};

template <class T>
    requires(std::is_integral_v<T> || std::is_enum_v<T>)
struct hash<T> {
    constexpr std::uint64_t operator()(T x, std::uint64_t seed = 0) const noexcept {
        if constexpr (std::is_enum_v<T>) {
            return detail::hash_word(static_cast<std::uint64_t>(static_cast<std::underlying_type_t<T>>(x)), seed);
        } else {
            return detail::hash_word(static_cast<std::uint64_t>(x), seed);
        }
    }
};

template <class T>
    requires std::is_floating_point_v<T>
struct hash<T> {
    std::uint64_t operator()(T x, std::uint64_t seed = 0) const noexcept {
        if (x == T(0)) return detail::hash_word(0, seed);  // +0 == -0
        if (x != x) return detail::hash_word(detail::thread_random(), seed);  // NaN
        if constexpr (sizeof(T) == sizeof(std::uint32_t)) {
            return detail::hash_word(std::bit_cast<std::uint32_t>(x), seed);
        } else if constexpr (sizeof(T) == sizeof(std::uint64_t)) {
            return detail::hash_word(std::bit_cast<std::uint64_t>(x), seed);
        } else {
            // long double: its padding bytes are not part of the value, so
            // hash the value rounded to double — equal values stay equal.
            return detail::hash_word(std::bit_cast<std::uint64_t>(static_cast<double>(x)), seed);
        }
    }
};

template <class T>
struct hash<T*> {
    std::uint64_t operator()(T* p, std::uint64_t seed = 0) const noexcept {
        return detail::hash_word(reinterpret_cast<std::uintptr_t>(p), seed);
    }
};

template <>
struct hash<std::nullptr_t> {
    std::uint64_t operator()(std::nullptr_t, std::uint64_t seed = 0) const noexcept {
        return detail::hash_word(0, seed);
    }
};

// Strings: one transparent implementation over std::string_view, shared by
// every spelling so that equal text hashes alike whatever type carries it.
struct string_hash {
    using is_transparent = void;
    std::uint64_t operator()(std::string_view s, std::uint64_t seed = 0) const noexcept {
        return detail::hash_bytes(s.data(), s.size(), seed);
    }
};

template <class Alloc>
struct hash<std::basic_string<char, std::char_traits<char>, Alloc>> : string_hash {};
template <>
struct hash<std::string_view> : string_hash {};
template <>
struct hash<const char*> : string_hash {};
template <>
struct hash<char*> : string_hash {};

}  // namespace spanmap

// spanmap::hash: agreement between the string spellings, +0/-0 and NaN,
// seeding, SMHasher-style avalanche and distribution checks (scaled down),
// and transparent lookup without allocation.

#include <spanmap/hash.h>
#include <spanmap/map.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <memory_resource>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace {

TEST(Hash, StringSpellingsAgree) {
    for (std::size_t len = 0; len < 200; ++len) {
        std::string s;
        for (std::size_t i = 0; i < len; ++i) s.push_back(static_cast<char>('a' + (i * 7 + len) % 26));
        const std::uint64_t seed = 0x1234 + len;
        const auto h = spanmap::hash<std::string>{}(s, seed);
        EXPECT_EQ(h, spanmap::hash<std::string_view>{}(std::string_view(s), seed)) << len;
        EXPECT_EQ(h, spanmap::hash<const char*>{}(s.c_str(), seed)) << len;
        EXPECT_EQ(h, spanmap::hash<std::string>{}(s.c_str(), seed)) << len;
        std::pmr::string ps(s);
        EXPECT_EQ(h, spanmap::hash<std::pmr::string>{}(ps, seed)) << len;
    }
}

TEST(Hash, SignedZerosAgreeAndNaNsScatter) {
    const spanmap::hash<double> hd;
    const spanmap::hash<float> hf;
    const spanmap::hash<long double> hl;
    EXPECT_EQ(hd(0.0, 9), hd(-0.0, 9));
    EXPECT_EQ(hf(0.0f, 9), hf(-0.0f, 9));
    EXPECT_EQ(hl(0.0L, 9), hl(-0.0L, 9));
    EXPECT_NE(hd(1.0, 9), hd(-1.0, 9));
    const double nan = std::numeric_limits<double>::quiet_NaN();
    std::set<std::uint64_t> nan_hashes;
    for (int i = 0; i < 100; ++i) nan_hashes.insert(hd(nan, 9));
    EXPECT_GT(nan_hashes.size(), 95u) << "NaN hashes are random";
    EXPECT_EQ(hd(1.5, 3), hd(1.5, 3));
}

TEST(Hash, SeedChangesEveryHash) {
    const spanmap::hash<std::uint64_t> h;
    const spanmap::hash<std::string> hs;
    for (std::uint64_t x = 0; x < 1000; ++x) {
        EXPECT_NE(h(x, 1), h(x, 2));
        EXPECT_NE(hs(std::to_string(x), 1), hs(std::to_string(x), 2));
    }
    static_assert(spanmap::hash<int>{}(1, 2) != spanmap::hash<int>{}(2, 2), "integer hashing is constexpr");
}

// Flipping one input bit flips each output bit with probability ~1/2: for
// every (input bit, output bit) pair the observed rate stays within 6
// standard deviations of 1/2, and on average half the output bits flip.
template <class F>
void expect_avalanche(F&& hash_with_bit_flipped, int input_bits, int samples) {
    const double tolerance = 6 * 0.5 / std::sqrt(double(samples));
    std::mt19937_64 rng(7);
    std::vector<std::array<int, 64>> flips(static_cast<std::size_t>(input_bits));
    double total = 0;
    for (int s = 0; s < samples; ++s) {
        const std::uint64_t r = rng();
        for (int bit = 0; bit < input_bits; ++bit) {
            const auto [a, b] = hash_with_bit_flipped(r, s, bit);
            const std::uint64_t d = a ^ b;
            total += std::popcount(d);
            for (int o = 0; o < 64; ++o) flips[static_cast<std::size_t>(bit)][static_cast<std::size_t>(o)] += static_cast<int>((d >> o) & 1);
        }
    }
    for (int bit = 0; bit < input_bits; ++bit) {
        for (int o = 0; o < 64; ++o) {
            const double rate = flips[static_cast<std::size_t>(bit)][static_cast<std::size_t>(o)] / double(samples);
            ASSERT_NEAR(rate, 0.5, tolerance) << "input bit " << bit << " -> output bit " << o;
        }
    }
    EXPECT_NEAR(total / samples / input_bits, 32.0, 0.5);
}

TEST(Hash, IntegerAvalanche) {
    const spanmap::hash<std::uint64_t> h;
    expect_avalanche(
        [&](std::uint64_t r, int, int bit) {
            return std::pair{h(r, 0x5eed), h(r ^ (std::uint64_t{1} << bit), 0x5eed)};
        },
        64, 5000);
}

TEST(Hash, StringAvalanche) {
    const spanmap::hash<std::string_view> h;
    for (std::size_t len : {1u, 3u, 4u, 8u, 9u, 16u, 17u, 33u, 48u, 49u, 100u}) {
        SCOPED_TRACE(len);
        std::string buf(len, '\0');
        expect_avalanche(
            [&](std::uint64_t r, int s, int bit) {
                std::mt19937_64 fill(r);
                for (auto& c : buf) c = static_cast<char>(fill());
                const auto a = h(buf, static_cast<std::uint64_t>(s));
                buf[static_cast<std::size_t>(bit / 8)] ^= static_cast<char>(1 << (bit % 8));
                const auto b = h(buf, static_cast<std::uint64_t>(s));
                return std::pair{a, b};
            },
            static_cast<int>(std::min<std::size_t>(len * 8, 128)), 600);
    }
}

TEST(Hash, SequentialKeysFillBucketsAndTophashEvenly) {
    // The map uses the low bits (bucket) and the top byte (tophash).
    const spanmap::hash<std::uint64_t> h;
    const std::size_t n = 1 << 18;
    std::vector<int> low(1024), top(256);
    for (std::uint64_t k = 0; k < n; ++k) {
        const auto x = h(k * 4096, 42);  // keys that differ only in high bits
        ++low[x & 1023];
        ++top[x >> 56];
    }
    const double low_mean = n / 1024.0, top_mean = n / 256.0;
    double chi_low = 0, chi_top = 0;
    for (int c : low) chi_low += (c - low_mean) * (c - low_mean) / low_mean;
    for (int c : top) chi_top += (c - top_mean) * (c - top_mean) / top_mean;
    // Degrees of freedom 1023 and 255: a uniform source stays well below these.
    EXPECT_LT(chi_low, 1250);
    EXPECT_LT(chi_top, 350);
}

TEST(Hash, NoCollisionsAmongShortStrings) {
    const spanmap::hash<std::string_view> h;
    std::vector<std::uint64_t> hashes;
    char two[2];
    for (int a = 0; a < 256; ++a) {
        for (int b = 0; b < 256; ++b) {
            two[0] = static_cast<char>(a);
            two[1] = static_cast<char>(b);
            hashes.push_back(h(std::string_view(two, 2), 1));
        }
        const char one = static_cast<char>(a);
        hashes.push_back(h(std::string_view(&one, 1), 1));
    }
    for (std::size_t len = 3; len <= 300; ++len) hashes.push_back(h(std::string(len, '\0'), 1));
    hashes.push_back(h(std::string_view(), 1));
    std::sort(hashes.begin(), hashes.end());
    EXPECT_TRUE(std::adjacent_find(hashes.begin(), hashes.end()) == hashes.end());
}

struct identity_hashed {
    std::uint64_t v;
    friend bool operator==(identity_hashed, identity_hashed) = default;
};

}  // namespace

template <>
struct std::hash<identity_hashed> {
    std::size_t operator()(identity_hashed x) const noexcept { return x.v; }
};

namespace {

TEST(Hash, FallbackMixesStdHash) {
    // std::hash is the identity here; keys that are multiples of 2^20 would
    // all land in bucket 0 with tophash 0 if the result were used as is.
    const spanmap::hash<identity_hashed> h;
    std::set<std::uint64_t> low_bits;
    for (std::uint64_t k = 0; k < 4096; ++k) low_bits.insert(h(identity_hashed{k << 20}, 3) & 1023);
    EXPECT_GT(low_bits.size(), 900u);
    // A map with a seedless user hash mixes its seed in the same way.
    spanmap::map<std::uint64_t, int, std::hash<std::uint64_t>> m;
    for (std::uint64_t k = 0; k < 100000; ++k) m[k << 20] = 1;
    EXPECT_LE(m.stats().longest_chain, 4u);
}

enum class color : std::uint8_t { red, green, blue };

TEST(Hash, EnumsAndPointers) {
    const spanmap::hash<color> hc;
    EXPECT_NE(hc(color::red, 1), hc(color::green, 1));
    int a = 0, b = 0;
    const spanmap::hash<int*> hp;
    EXPECT_NE(hp(&a, 1), hp(&b, 1));
    EXPECT_EQ(hp(&a, 1), hp(&a, 1));
    spanmap::map<color, int> m;
    m[color::blue] = 3;
    EXPECT_EQ(m.at(color::blue), 3);
}

// std::allocator<char> that counts what it hands out.
template <class T>
struct counting_char_allocator : std::allocator<T> {
    static inline long allocations = 0;
    using value_type = T;
    template <class U>
    struct rebind {
        using other = counting_char_allocator<U>;
    };
    counting_char_allocator() = default;
    template <class U>
    counting_char_allocator(const counting_char_allocator<U>&) noexcept {}
    T* allocate(std::size_t n) {
        ++allocations;
        return std::allocator<T>::allocate(n);
    }
};
using counted_string = std::basic_string<char, std::char_traits<char>, counting_char_allocator<char>>;

TEST(Hash, TransparentLookupDoesNotAllocate) {
    // spanmap::hash of any std::basic_string<char> is transparent.
    spanmap::map<counted_string, int> m;
    std::vector<std::string> keys;
    for (int i = 0; i < 1000; ++i) keys.push_back("a key long enough to live on the heap #" + std::to_string(i));
    for (const auto& k : keys) m[counted_string(k.c_str())] = 1;
    const long before = counting_char_allocator<char>::allocations;
    EXPECT_GE(before, 1000);
    int found = 0;
    for (const auto& k : keys) found += m.contains(std::string_view(k));
    for (const auto& k : keys) found += m.find(std::string_view(k)) != m.end();
    for (const auto& k : keys) found += m.count(k.c_str()) == 1;
    EXPECT_EQ(counting_char_allocator<char>::allocations, before) << "a lookup built a string";
    EXPECT_EQ(found, 3000);
}

}  // namespace

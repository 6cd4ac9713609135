// Seeded random sequences of allocations, reallocations and frees checked
// against a reference model: every live block keeps the pattern written into
// it, no two live blocks overlap, and the heap's invariants hold after every
// step at first and periodically afterwards. A failure names its seed and
// step, and replays exactly.

#include "test_util.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <map>
#include <unordered_map>
#include <vector>

namespace {

using namespace spanmap::test;

// How a block was obtained decides how it may be given back.
enum class origin : std::uint8_t { malloc, calloc, aligned, cxx8 };

struct block {
    std::size_t size;     // requested
    std::size_t usable;   // as reported at allocation
    std::size_t align;
    std::uint64_t seed;   // its pattern
    std::size_t index;    // position in model::order
    origin from;
};

// The reference model: what is live, where, and what it must contain.
class model {
public:
    bool empty() const { return order_.empty(); }
    std::size_t size() const { return order_.size(); }
    void* pick(rng& r) const { return order_[r.below(order_.size())]; }
    const block& at(void* p) const { return blocks_.at(p); }

    // Records a new block; fails if it overlaps a live one.
    ::testing::AssertionResult add(void* p, block b) {
        const std::uintptr_t lo = addr(p), hi = lo + std::max<std::size_t>(b.usable, 1);
        auto next = extents_.lower_bound(lo);
        if (next != extents_.end() && next->first < hi)
            return ::testing::AssertionFailure()
                   << p << " (+" << b.usable << ") overlaps live block at 0x" << std::hex << next->first;
        if (next != extents_.begin() && std::prev(next)->second > lo)
            return ::testing::AssertionFailure()
                   << p << " overlaps live block at 0x" << std::hex << std::prev(next)->first;
        extents_.emplace(lo, hi);
        b.index = order_.size();
        order_.push_back(p);
        blocks_.emplace(p, b);
        return ::testing::AssertionSuccess();
    }

    void remove(void* p) {
        const block b = blocks_.at(p);
        void* last = order_.back();
        order_[b.index] = last;
        blocks_.at(last).index = b.index;
        order_.pop_back();
        blocks_.erase(p);
        extents_.erase(addr(p));
    }

private:
    std::vector<void*> order_;  // for picking a random live block
    std::unordered_map<void*, block> blocks_;
    std::map<std::uintptr_t, std::uintptr_t> extents_;  // [begin, end) by usable size
};

// Mostly small, some medium, a few large objects: every tier gets traffic.
std::size_t random_size(rng& r) {
    const std::size_t k = r.below(100);
    if (k < 60) return r.between(1, 256);
    if (k < 85) return r.between(257, 4096);
    if (k < 98) return r.between(4097, kMaxSmall);
    return r.between(kMaxSmall + 1, 300000);
}

class random_run {
public:
    explicit random_run(std::uint64_t seed) : r_(seed), seed_(seed) {}

    void step(std::uint64_t seq) {
        // Phases of growth and shrinkage: spans fill up, empty out completely
        // and go back to the heap, then get carved again.
        if (growing_ && live_.size() >= high_) growing_ = false;
        if (!growing_ && live_.size() <= low_) {
            growing_ = true;
            high_ = r_.between(50, 5000);
            low_ = r_.below(std::min<std::size_t>(high_, 200));
        }
        const unsigned alloc_pct = growing_ ? 65 : 35;
        if (live_.empty() || r_.chance(alloc_pct)) {
            if (!live_.empty() && r_.chance(8))
                do_realloc(seq);
            else
                do_alloc(seq);
        } else {
            do_free(live_.pick(r_));
        }
    }

    void free_all() {
        while (!live_.empty() && !::testing::Test::HasFatalFailure()) do_free(live_.pick(r_));
    }

private:
    void do_alloc(std::uint64_t seq) {
        const std::size_t n = random_size(r_);
        block b{n, 0, 16, seed_ ^ (seq << 20), 0, origin::malloc};
        void* p = nullptr;
        switch (r_.below(4)) {
            case 0:
                p = spanmap_malloc(n);
                ASSERT_NE(p, nullptr) << "malloc(" << n << ")";
                break;
            case 1: {
                // count * size, with the size sometimes not a divisor of n.
                const std::size_t elem = std::size_t{1} << r_.below(5);
                b.size = (n + elem - 1) / elem * elem;
                b.from = origin::calloc;
                p = spanmap_calloc(b.size / elem, elem);
                ASSERT_NE(p, nullptr) << "calloc(" << b.size / elem << ", " << elem << ")";
                ASSERT_EQ(first_nonzero(p, b.size), -1) << "calloc(" << b.size << ") = " << p << " not zeroed";
                break;
            }
            case 2:
                b.align = std::size_t{1} << r_.below(17);  // up to 64 KiB
                b.from = origin::aligned;
                p = spanmap_aligned_alloc(b.align, n);
                ASSERT_NE(p, nullptr) << "aligned_alloc(" << b.align << ", " << n << ")";
                break;
            default:
                b.align = 8;
                b.from = origin::cxx8;
                p = spanmap::allocate(n, 8);
                break;
        }
        b.usable = spanmap_usable_size(p);
        // malloc's contract: 16 above 8 bytes; otherwise what was asked for.
        const std::size_t want_align = b.from == origin::aligned ? b.align
                                       : b.from == origin::cxx8  ? 8
                                       : b.size > 8              ? 16
                                                                 : 8;
        ASSERT_EQ(addr(p) % want_align, 0u) << p << " for " << b.size << " bytes aligned " << b.align;
        ASSERT_GE(b.usable, b.size);
        if (b.from == origin::malloc || b.from == origin::calloc) {
            ASSERT_EQ(b.usable, spanmap_good_size(b.size));
        } else if (b.from == origin::cxx8) {
            ASSERT_EQ(b.usable, spanmap::good_size(b.size, 8));
        }
        fill_pattern(p, b.size, b.seed ^ addr(p));
        ASSERT_TRUE(live_.add(p, b));
    }

    void do_realloc(std::uint64_t seq) {
        void* p = live_.pick(r_);
        const block old = live_.at(p);
        if (old.from != origin::malloc && old.from != origin::calloc) return do_alloc(seq);
        ASSERT_EQ(check_pattern(p, old.size, old.seed ^ addr(p)), -1) << "block " << p << " of " << old.size;
        const std::size_t n = random_size(r_);
        live_.remove(p);
        void* q = spanmap_realloc(p, n);
        ASSERT_NE(q, nullptr) << "realloc(" << p << ", " << n << ")";
        const std::size_t kept = std::min(old.size, n);
        ASSERT_EQ(check_pattern(q, kept, old.seed ^ addr(p)), -1)
            << "realloc(" << p << " of " << old.size << ", " << n << ") = " << q << " lost contents";
        block b{n, spanmap_usable_size(q), 16, seed_ ^ (seq << 20), 0, origin::malloc};
        ASSERT_EQ(b.usable, spanmap_good_size(n));
        ASSERT_EQ(addr(q) % (n > 8 ? 16 : 8), 0u);
        fill_pattern(q, n, b.seed ^ addr(q));
        ASSERT_TRUE(live_.add(q, b));
    }

    void do_free(void* p) {
        const block b = live_.at(p);
        ASSERT_EQ(spanmap_usable_size(p), b.usable) << p;
        ASSERT_EQ(check_pattern(p, b.size, b.seed ^ addr(p)), -1)
            << "block " << p << " of " << b.size << " bytes was overwritten while live";
        live_.remove(p);
        const std::size_t how = r_.below(3);
        switch (b.from) {
            case origin::malloc:
            case origin::calloc:
                if (how == 0) spanmap_free(p);
                else if (how == 1) spanmap_free_sized(p, b.size);
                else spanmap::deallocate(p);
                break;
            case origin::aligned:
                if (how == 0) spanmap_free(p);
                else spanmap_free_aligned_sized(p, b.align, b.size);
                break;
            case origin::cxx8:
                if (how == 0) spanmap::deallocate(p, b.size, 8);
                else spanmap::deallocate(p);
                break;
        }
    }

    rng r_;
    std::uint64_t seed_;
    model live_;
    bool growing_ = true;
    std::size_t high_ = 2000, low_ = 0;
};

class RandomOps : public ::testing::TestWithParam<std::uint64_t> {};

TEST_P(RandomOps, AgainstReferenceModel) {
    const std::uint64_t seed = GetParam();
    const std::size_t ops = scaled(200000, 20000);
    const std::size_t check_every_step = scaled(2000, 300);
    const auto baseline = spanmap::debug::read_heap_info();

    random_run run(seed);
    for (std::uint64_t seq = 0; seq < ops; ++seq) {
        ASSERT_NO_FATAL_FAILURE(run.step(seq)) << "seed " << seed << " step " << seq;
        if (seq < check_every_step || seq % 1000 == 0) {
            ASSERT_TRUE(invariants_hold()) << "seed " << seed << " after step " << seq;
        }
    }
    ASSERT_NO_FATAL_FAILURE(run.free_all()) << "seed " << seed;
    ASSERT_TRUE(invariants_hold()) << "seed " << seed << " after freeing everything";

    const auto before_flush = spanmap::debug::read_heap_info();
    EXPECT_EQ(before_flush.large_objects, baseline.large_objects) << "a large object outlived its free";
    EXPECT_GT(before_flush.cached_objects, 0u) << "200k frees and nothing in the thread cache?";
    spanmap_thread_cache_flush();
    const auto after_flush = spanmap::debug::read_heap_info();
    EXPECT_LT(after_flush.cached_objects, before_flush.cached_objects);
    // This test's thread is the only one: nothing may stay cached.
    EXPECT_EQ(after_flush.cached_objects, 0u);
    EXPECT_EQ(after_flush.cached_bytes, 0u);
    EXPECT_TRUE(invariants_hold()) << "after flushing the thread cache";
}

INSTANTIATE_TEST_SUITE_P(Seeds, RandomOps,
                         ::testing::Values(std::uint64_t{1}, std::uint64_t{42}, std::uint64_t{0xdeadbeef},
                                           std::uint64_t{20240601}));

// For each class: fill several spans completely (the thread cache, mcentral's
// partial and full lists and the heap all take part), check that no object is
// handed out twice, then free in a scrambled order and flush so every span
// goes back to being fully free.
TEST(SpanLifecycle, FillAndDrainEveryClass) {
    rng r(7);
    for (int c = 1; c < sc::num_classes; ++c) {
        const std::size_t size = sc::class_size[c];
        const std::size_t per_span = sc::class_pages[c] * kPage / size;
        const std::size_t count = 3 * per_span + 1;
        SCOPED_TRACE(::testing::Message() << "class " << c << " (" << size << " bytes, " << count << " objects)");

        model live;
        std::vector<void*> blocks;
        for (std::size_t i = 0; i < count; ++i) {
            void* p = spanmap::allocate(size, 8);
            ASSERT_EQ(spanmap::usable_size(p), size);
            block b{size, size, 8, c * 100000 + i, 0, origin::cxx8};
            ASSERT_TRUE(live.add(p, b));
            fill_pattern(p, size, b.seed);
            blocks.push_back(p);
        }
        ASSERT_TRUE(invariants_hold()) << "with " << count << " objects live";
        for (std::size_t i = blocks.size(); i > 1; --i) std::swap(blocks[i - 1], blocks[r.below(i)]);
        for (void* p : blocks) {
            ASSERT_EQ(check_pattern(p, size, live.at(p).seed), -1) << p;
            spanmap::deallocate(p, size, 8);
        }
        ASSERT_TRUE(invariants_hold()) << "after freeing";
        spanmap_thread_cache_flush();
        ASSERT_TRUE(invariants_hold()) << "after the flush";
        EXPECT_EQ(spanmap::debug::read_heap_info().cached_objects, 0u);
    }
}

}  // namespace

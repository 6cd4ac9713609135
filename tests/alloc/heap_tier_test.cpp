// The page heap alone, against a model. A test owns an mheap of its own —
// nothing above it, no thread caches, no mcentral — and drives it with seeded
// random sequences of alloc_span (random sizes, alignments and classes),
// free_span, grow_span, shrink_span and scavenge on a clock the test turns by
// hand. The model is deliberately naive: the live spans as page intervals,
// the reserved pages read back from the heap's arena list, and per bitmap
// word which free pages went back to the OS and when the word was last freed.
// After every step:
//   * no two live spans overlap, and a new span sits at the lowest aligned run
//     of free pages that fits (address-ordered first fit: heap.h), so freed
//     pages are reused before the heap grows;
//   * the page map gives every page of a touched span its span, and null to
//     the pages around it that no span holds;
//   * the counters (pages in use, spans per kind and class, large-object
//     totals, released pages) equal the model's;
//   * scavenge releases exactly the free, unreleased pages of the words the
//     clock says are old enough, lowest first, within its bounds;
//   * a span the heap says needs no zeroing reads as zero.
// Each page of a span carries a pattern tied to the span and the page, checked
// when the page leaves the span, so two spans handed the same page show up.
// Every few steps the heap's own checker (check_heap) walks it all, and the
// page map is compared with the model page by page. A failure names its seed
// and step; the sequence replays exactly.
#include "heap.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <iterator>
#include <map>
#include <vector>

namespace {

using namespace spanmap::detail;
using spanmap::test::mix;
using spanmap::test::scaled;
namespace sc = spanmap::sc;

using spanmap::test::rng;
using page_t = std::uintptr_t;  // a page number: address >> page_shift
using word_t = std::uintptr_t;  // a bitmap word: page >> 6 (arenas are aligned, so words never straddle two)

std::uintptr_t addr_of(page_t p) { return p << page_shift; }
std::uint64_t* word_at(std::uintptr_t a) { return reinterpret_cast<std::uint64_t*>(a); }

::testing::AssertionResult heap_holds(const mheap& h) {
    char why[512] = {};
    if (check_heap(h, why, sizeof why)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "heap invariant violated: " << why;
}

struct live_span {
    mspan* s;
    std::size_t npages;
    unsigned size_class;
    std::uint64_t id;  // seeds the span's page patterns
};

// The first word of each page of a span: enough to see a page that two spans
// share (the heap deals in whole pages), and one page fault a page, so that
// spans of hundreds of pages stay cheap.
std::uint64_t page_word(std::uint64_t id, std::size_t k) { return mix(id * 0x10001 + k); }

class heap_model {
public:
    explicit heap_model(mheap& h) : h_(h) {}

    std::map<page_t, live_span>& live() { return live_; }

    // The heap's reserved pages, one bit a page, read from its arena list.
    std::map<word_t, std::uint64_t> reserved_bits() const {
        std::map<word_t, std::uint64_t> bits;
        heap_arena* const* arenas = h_.arena_list();
        for (std::size_t i = 0; i < h_.arenas(); ++i) {
            const page_t first = arenas[i]->base >> page_shift;
            for (page_t p = first; p < first + arenas[i]->reserved_pages; ++p) bits[p >> 6] |= std::uint64_t{1} << (p & 63);
        }
        return bits;
    }

    // Free pages: reserved and in no live span.
    std::map<word_t, std::uint64_t> free_bits() const {
        std::map<word_t, std::uint64_t> bits = reserved_;
        for (const auto& [first, ls] : live_)
            for (page_t p = first; p < first + ls.npages; ++p) bits[p >> 6] &= ~(std::uint64_t{1} << (p & 63));
        return bits;
    }

    bool page_reserved(page_t p) const {
        const auto it = reserved_.find(p >> 6);
        return it != reserved_.end() && (it->second >> (p & 63) & 1);
    }

    // The live span holding page p, or live().end().
    std::map<page_t, live_span>::const_iterator owner(page_t p) const {
        auto it = live_.upper_bound(p);
        if (it == live_.begin()) return live_.end();
        --it;
        return p < it->first + it->second.npages ? it : live_.end();
    }

    // The span the model says holds page p, or nullptr.
    mspan* span_at(page_t p) const {
        const auto it = owner(p);
        return it == live_.end() ? nullptr : it->second.s;
    }

    bool pages_free(page_t first, std::size_t n) const {
        for (page_t p = first; p < first + n; ++p)
            if (!page_reserved(p) || owner(p) != live_.end()) return false;
        return true;
    }

    // Address-ordered first fit over the free pages: the lowest page, a
    // multiple of align, that starts npages free pages; 0 when none does.
    page_t lowest_fit(std::size_t npages, std::size_t align) const {
        const std::map<word_t, std::uint64_t> free = free_bits();
        page_t run_start = 0;
        std::size_t run_len = 0;
        page_t expect = 0;  // the page after the last one seen free
        for (const auto& [w, bits] : free) {
            for (unsigned b = 0; b < 64; ++b) {
                const page_t p = w * 64 + b;
                if (!(bits >> b & 1)) {
                    run_len = 0;
                    continue;
                }
                if (run_len == 0 || p != expect) {
                    run_start = p;
                    run_len = 0;
                }
                ++run_len;
                expect = p + 1;
                const page_t start = (run_start + align - 1) / align * align;
                if (start + npages <= run_start + run_len) return start;
            }
        }
        return 0;
    }

    // After the heap may have grown: its new pages count as released (they
    // were never touched), and no page it had reserved is gone.
    ::testing::AssertionResult take_reserved() {
        if (h_.pages_reserved() == reserved_count_) return ::testing::AssertionSuccess();
        reserved_count_ = h_.pages_reserved();
        std::map<word_t, std::uint64_t> now = reserved_bits();
        for (const auto& [w, bits] : reserved_) {
            const auto it = now.find(w);
            if (it == now.end() || (bits & ~it->second) != 0)
                return ::testing::AssertionFailure() << "reserved pages of word " << w << " disappeared";
        }
        for (const auto& [w, bits] : now) {
            const auto it = reserved_.find(w);
            released_[w] |= bits & ~(it == reserved_.end() ? 0 : it->second);
        }
        reserved_ = std::move(now);
        return ::testing::AssertionSuccess();
    }

    // Pages leaving the free set (a new or grown span) are no longer released.
    void taken(page_t first, std::size_t n) {
        for (page_t p = first; p < first + n; ++p) released_[p >> 6] &= ~(std::uint64_t{1} << (p & 63));
    }
    // Pages coming back free stamp their words with the heap's clock.
    void freed(page_t first, std::size_t n) {
        for (page_t p = first; p < first + n; ++p) freed_tick_[p >> 6] = h_.tick();
    }
    bool all_released(page_t first, std::size_t n) const {
        for (page_t p = first; p < first + n; ++p) {
            const auto it = released_.find(p >> 6);
            if (it == released_.end() || !(it->second >> (p & 63) & 1)) return false;
        }
        return true;
    }

    // What scavenge(now, min_age, max_pages) must release: in address order,
    // the free unreleased pages of each word last freed at least min_age ticks
    // ago, whole words, until max_pages are reached or the call's eight words
    // are used. Marks them released and returns the count.
    std::size_t scavenge(std::uint32_t now, std::uint32_t min_age, std::size_t max_pages) {
        constexpr std::size_t words_per_call = 8;
        std::size_t count = 0;
        std::size_t words = 0;
        for (const auto& [w, bits] : free_bits()) {
            if (count >= max_pages || words == words_per_call) break;
            const std::uint64_t todo = bits & ~released_[w];
            const auto t = freed_tick_.find(w);
            if (todo == 0 || now - (t == freed_tick_.end() ? 0 : t->second) < min_age) continue;
            released_[w] |= todo;
            count += static_cast<std::size_t>(__builtin_popcountll(todo));
            ++words;
        }
        return count;
    }

    std::size_t released_pages() const {
        std::size_t n = 0;
        for (const auto& [w, bits] : released_) n += static_cast<std::size_t>(__builtin_popcountll(bits));
        return n;
    }
    std::size_t reserved_pages() const {
        std::size_t n = 0;
        for (const auto& [w, bits] : reserved_) n += static_cast<std::size_t>(__builtin_popcountll(bits));
        return n;
    }

    // The heap's counters against the model's.
    ::testing::AssertionResult counters_agree() const {
        std::size_t pages = 0;
        std::size_t small = 0;
        std::size_t large = 0;
        std::size_t per_class[num_classes] = {};
        for (const auto& [first, ls] : live_) {
            pages += ls.npages;
            if (ls.size_class == 0)
                ++large;
            else
                ++small, ++per_class[ls.size_class];
        }
        auto fail = [](const char* what, std::size_t heap, std::size_t model) {
            return ::testing::AssertionFailure() << what << ": heap says " << heap << ", model " << model;
        };
        if (h_.pages_in_use() != pages) return fail("pages in use", h_.pages_in_use(), pages);
        if (h_.small_spans() != small) return fail("small spans", h_.small_spans(), small);
        if (h_.large_spans() != large) return fail("large spans", h_.large_spans(), large);
        if (h_.spans().in_use() != live_.size()) return fail("span records", h_.spans().in_use(), live_.size());
        for (unsigned c = 1; c < num_classes; ++c)
            if (h_.class_spans(c) != per_class[c]) return fail("spans of a class", h_.class_spans(c), per_class[c]);
        if (h_.pages_reserved() != reserved_pages()) return fail("pages reserved", h_.pages_reserved(), reserved_pages());
        if (h_.pages_released() != released_pages()) return fail("pages released", h_.pages_released(), released_pages());
        if (h_.pages_inflight() != 0) return fail("pages in flight", h_.pages_inflight(), 0);
        if (h_.large_nmalloc() != large_nmalloc || h_.large_nfree() != large_nfree)
            return fail("large objects allocated - freed", h_.large_nmalloc() - h_.large_nfree(), large_nmalloc - large_nfree);
        if (h_.large_bytes_alloc() != large_bytes_alloc) return fail("large bytes allocated", h_.large_bytes_alloc(), large_bytes_alloc);
        if (h_.large_bytes_freed() != large_bytes_freed) return fail("large bytes freed", h_.large_bytes_freed(), large_bytes_freed);
        return ::testing::AssertionSuccess();
    }

    // Every reserved page maps to the span the model says holds it, or to none.
    // The page map names every page of a small span and the first of a large
    // one; span_containing finds the span of any page.
    mspan* named_at(page_t p) const {
        const auto it = owner(p);
        if (it == live_.end()) return nullptr;
        return it->second.size_class != 0 || p == it->first ? it->second.s : nullptr;
    }

    ::testing::AssertionResult page_map_agrees() const {
        for (const auto& [w, bits] : reserved_) {
            for (unsigned b = 0; b < 64; ++b) {
                if (!(bits >> b & 1)) continue;
                const page_t p = w * 64 + b;
                if (span_of(addr_of(p)) != named_at(p))
                    return ::testing::AssertionFailure() << "page " << p << " names " << span_of(addr_of(p)) << ", model says " << named_at(p);
                if (span_containing(addr_of(p) + page_size / 2) != span_at(p))
                    return ::testing::AssertionFailure() << "page " << p << " is in " << span_containing(addr_of(p)) << ", model says " << span_at(p);
            }
        }
        return ::testing::AssertionSuccess();
    }

    std::uint64_t large_nmalloc = 0;
    std::uint64_t large_nfree = 0;
    std::uint64_t large_bytes_alloc = 0;
    std::uint64_t large_bytes_freed = 0;

private:
    mheap& h_;
    std::map<page_t, live_span> live_;
    std::map<word_t, std::uint64_t> reserved_;
    std::size_t reserved_count_ = 0;  // the heap's count when reserved_ was read
    std::map<word_t, std::uint64_t> released_;
    std::map<word_t, std::uint32_t> freed_tick_;
};

// The pages of [first, first + n) each map to s; the pages just outside to
// whatever the model says holds them.
// Pages [first, first + n) are s's (free when s is null): the page map names
// s on each of them when s is small, on the first only when it is large, and
// span_containing finds s from any byte of them; the pages either side
// belong to whom the model says.
::testing::AssertionResult mapped_to(const heap_model& m, page_t first, std::size_t n, const mspan* s) {
    for (page_t p = first; p < first + n; ++p) {
        const mspan* named = s != nullptr && (s->size_class != 0 || p == first) ? s : nullptr;
        if (span_of(addr_of(p)) != named)
            return ::testing::AssertionFailure() << "page " << p - first << " of " << n << " names " << span_of(addr_of(p));
        for (const std::uintptr_t at : {addr_of(p), addr_of(p) + page_size - 1})
            if (span_containing(at) != s)
                return ::testing::AssertionFailure() << "page " << p - first << " of " << n << " is in " << span_containing(at);
    }
    for (const page_t p : {first - 1, first + n}) {
        if (m.page_reserved(p) && span_of(addr_of(p)) != m.named_at(p))
            return ::testing::AssertionFailure() << "the neighbour page " << p << " names " << span_of(addr_of(p));
        if (m.page_reserved(p) && span_containing(addr_of(p)) != m.span_at(p))
            return ::testing::AssertionFailure() << "the neighbour page " << p << " is in " << span_containing(addr_of(p));
    }
    return ::testing::AssertionSuccess();
}

void write_patterns(const live_span& ls, std::size_t from) {
    for (std::size_t k = from; k < ls.npages; ++k) {
        *word_at(ls.s->base + k * page_size) = page_word(ls.id, k);
    }
}

::testing::AssertionResult patterns_intact(const live_span& ls, std::uintptr_t base, std::size_t from, std::size_t to) {
    for (std::size_t k = from; k < to; ++k) {
        if (*word_at(base + k * page_size) != page_word(ls.id, k))
            return ::testing::AssertionFailure() << "page " << k << " of span " << ls.id << " was overwritten";
    }
    return ::testing::AssertionSuccess();
}

// Mostly a few pages, as small spans and ordinary large objects are; now and
// then hundreds, so that runs cross bitmap words and the heap must grow.
std::size_t random_npages(rng& r) {
    const std::size_t roll = r.below(100);
    if (roll < 55) return r.between(1, 8);
    if (roll < 90) return r.between(9, 64);
    return r.between(65, 600);
}

std::size_t random_align(rng& r) {
    static constexpr std::size_t aligns[] = {2, 4, 8, 16, 64, 512};
    return r.chance(70) ? 1 : aligns[r.below(std::size(aligns))];
}

void run_sequence(std::uint64_t seed, int steps) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    mheap h;
    heap_model m(h);
    rng r(seed);
    std::uint64_t next_id = 1;
    const std::size_t max_live = 120;
    std::uint32_t now = 0;
    h.set_tick(now);

    auto pick = [&](auto pred) -> std::map<page_t, live_span>::iterator {
        auto& live = m.live();
        if (live.empty()) return live.end();
        auto it = std::next(live.begin(), static_cast<std::ptrdiff_t>(r.below(live.size())));
        for (std::size_t i = 0; i < live.size(); ++i, ++it) {
            if (it == live.end()) it = live.begin();
            if (pred(it->second)) return it;
        }
        return live.end();
    };

    auto release = [&](std::map<page_t, live_span>::iterator it) {
        const live_span ls = it->second;
        const page_t first = it->first;
        ASSERT_TRUE(patterns_intact(ls, ls.s->base, 0, ls.npages));
        if (ls.size_class == 0) {
            ++m.large_nfree;
            m.large_bytes_freed += ls.npages * page_size;
        }
        h.free_span(ls.s);
        m.live().erase(it);
        m.freed(first, ls.npages);
        ASSERT_TRUE(mapped_to(m, first, ls.npages, nullptr));
    };

    for (int step = 0; step < steps; ++step) {
        SCOPED_TRACE(::testing::Message() << "step " << step);
        const std::size_t roll = r.below(100);
        auto& live = m.live();
        if (roll < 45 && live.size() < max_live) {
            // A new span: large, or a small span of a class's page count.
            const bool small = r.chance(25);
            const unsigned c = small ? static_cast<unsigned>(r.between(1, num_classes - 1)) : 0;
            const std::size_t npages = small ? sc::class_pages[c] : random_npages(r);
            const std::size_t align = small ? 1 : random_align(r);
            const page_t fit_before = m.lowest_fit(npages, align);
            const std::size_t reserved_before = h.pages_reserved();
            mspan* s = h.alloc_span(npages, align, c);
            ASSERT_NE(s, nullptr);
            ASSERT_TRUE(m.take_reserved());
            const page_t first = s->base >> page_shift;
            // First fit: the lowest aligned free run, found among the pages
            // the heap held before (then it did not grow) or after growing.
            if (fit_before != 0) {
                ASSERT_EQ(h.pages_reserved(), reserved_before) << "the heap grew with " << npages << " pages free";
            }
            ASSERT_EQ(first, m.lowest_fit(npages, align)) << npages << " pages aligned to " << align;
            ASSERT_EQ(s->base % (align * page_size), 0u);
            ASSERT_TRUE(m.pages_free(first, npages));
            ASSERT_EQ(s->npages, npages);
            ASSERT_EQ(s->size_class, c);
            ASSERT_EQ(s->state, small ? span_state::small : span_state::large);
            if (small) {
                ASSERT_EQ(s->elem_size, sc::class_size[c]);
                ASSERT_EQ(s->nelems, npages * page_size / sc::class_size[c]);
                ASSERT_EQ(s->nfree, s->nelems);
                std::size_t free_objects = 0;
                for (const std::uint64_t w : s->free_bits) free_objects += static_cast<std::size_t>(__builtin_popcountll(w));
                ASSERT_EQ(free_objects, s->nelems) << "every object of a new span is free, and no bit past them is set";
                ASSERT_EQ(s->handed.load(), 0u);
            } else {
                ASSERT_EQ(s->nelems, 1u);
                ++m.large_nmalloc;
                m.large_bytes_alloc += npages * page_size;
            }
            // Pages that never held data, or went back to the OS with an
            // advice that zero-fills, need no clearing; such a span reads as zero.
            if (os_release_zeroes() && m.all_released(first, npages)) {
                ASSERT_FALSE(s->needzero);
            }
            // (Its first and last words: reading every page would fault each
            // one in twice, for the zero page and again for the pattern.)
            if (!s->needzero) {
                ASSERT_EQ(*word_at(s->base), 0u) << "a span that needs no zeroing";
                ASSERT_EQ(*word_at(s->end() - 8), 0u) << "a span that needs no zeroing";
            }
            m.taken(first, npages);
            const live_span ls{s, npages, c, next_id++};
            live.emplace(first, ls);
            write_patterns(ls, 0);
            ASSERT_TRUE(mapped_to(m, first, npages, s));
        } else if (roll < 75) {
            const auto it = pick([](const live_span&) { return true; });
            if (it == live.end()) continue;
            release(it);
            if (::testing::Test::HasFatalFailure()) return;
        } else if (roll < 83) {
            // Growth in place succeeds exactly when the pages after the span are free.
            const auto it = pick([](const live_span& ls) { return ls.size_class == 0; });
            if (it == live.end()) continue;
            live_span& ls = it->second;
            const std::size_t extra = r.chance(50) ? r.between(1, 4) : r.between(5, 200);
            const page_t end = it->first + ls.npages;
            const bool can = m.pages_free(end, extra);
            ASSERT_EQ(h.grow_span(ls.s, ls.npages + extra), can) << "growing by " << extra << " pages";
            if (!can) {
                ASSERT_EQ(ls.s->npages, ls.npages);
                continue;
            }
            ASSERT_EQ(ls.s->npages, ls.npages + extra);
            m.taken(end, extra);
            const std::size_t old = ls.npages;
            ls.npages += extra;
            m.large_bytes_alloc += extra * page_size;
            write_patterns(ls, old);
            ASSERT_TRUE(mapped_to(m, it->first, ls.npages, ls.s));
        } else if (roll < 90) {
            const auto it = pick([](const live_span& ls) { return ls.size_class == 0 && ls.npages > 1; });
            if (it == live.end()) continue;
            live_span& ls = it->second;
            const std::size_t keep = r.between(1, ls.npages - 1);
            ASSERT_TRUE(patterns_intact(ls, ls.s->base, keep, ls.npages));
            h.shrink_span(ls.s, keep);
            ASSERT_EQ(ls.s->npages, keep);
            const std::size_t cut = ls.npages - keep;
            ls.npages = keep;
            m.large_bytes_freed += cut * page_size;
            m.freed(it->first + keep, cut);
            ASSERT_TRUE(mapped_to(m, it->first, keep, ls.s));
            ASSERT_TRUE(mapped_to(m, it->first + keep, cut, nullptr));
        } else if (roll < 95) {
            const std::uint32_t min_age = static_cast<std::uint32_t>(r.below(4));
            const std::size_t max_pages = r.chance(50) ? r.between(1, 64) : r.between(65, 2048);
            const std::size_t want = m.scavenge(now, min_age, max_pages);
            ASSERT_EQ(h.scavenge(now, min_age, max_pages), want) << "scavenge(" << now << ", " << min_age << ", " << max_pages << ")";
        } else {
            h.set_tick(++now);
        }
        ASSERT_TRUE(m.counters_agree());
        if (step % 64 == 0) {
            ASSERT_TRUE(heap_holds(h));
            ASSERT_TRUE(m.page_map_agrees());
        }
    }

    // Everything back: no page in use, and once the clock has no say, every
    // free page goes back to the OS.
    while (!m.live().empty()) {
        release(m.live().begin());
        if (::testing::Test::HasFatalFailure()) return;
    }
    ASSERT_TRUE(m.counters_agree());
    EXPECT_EQ(h.pages_in_use(), 0u);
    while (h.scavenge(now, 0, 1 << 20) != 0) {
    }
    EXPECT_EQ(h.pages_released(), h.pages_reserved());
    EXPECT_TRUE(heap_holds(h));
}

TEST(HeapTier, RandomOperationsMatchAModel) {
    const int steps = static_cast<int>(scaled(3000, 600));
    for (const std::uint64_t seed : {1u, 2u, 3u}) {
        run_sequence(seed, steps);
        if (::testing::Test::HasFatalFailure()) return;
    }
}

// The contract in its smallest form: a freed run is the first one reused,
// and a request that fits nowhere in it goes above everything in use.
TEST(HeapTier, FreedPagesAreReusedLowestFirst) {
    mheap h;
    mspan* a = h.alloc_span(4, 1, 0);
    mspan* b = h.alloc_span(4, 1, 0);
    mspan* c = h.alloc_span(4, 1, 0);
    ASSERT_TRUE(a && b && c);
    ASSERT_EQ(b->base, a->end());
    ASSERT_EQ(c->base, b->end());
    const std::uintptr_t hole = b->base;
    h.free_span(b);
    EXPECT_EQ(span_of(hole), nullptr);
    mspan* big = h.alloc_span(5, 1, 0);
    ASSERT_NE(big, nullptr);
    EXPECT_GE(big->base, c->end()) << "five pages do not fit the four-page hole";
    mspan* d = h.alloc_span(3, 1, 0);
    ASSERT_NE(d, nullptr);
    EXPECT_EQ(d->base, hole);
    mspan* e = h.alloc_span(1, 1, 0);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->base, hole + 3 * page_size);
    EXPECT_TRUE(heap_holds(h));
    for (mspan* s : {a, c, big, d, e}) h.free_span(s);
    EXPECT_EQ(h.pages_in_use(), 0u);
    EXPECT_TRUE(heap_holds(h));
}

// Two heaps in one process: each maps its own pages to its own spans through
// the shared arena index, and neither sees the other's pages as its own.
TEST(HeapTier, TwoHeapsKeepToThemselves) {
    mheap one;
    mheap two;
    std::vector<mspan*> ones;
    std::vector<mspan*> twos;
    for (int i = 0; i < 64; ++i) {
        ones.push_back(one.alloc_span(1 + i % 7, 1, 0));
        twos.push_back(two.alloc_span(1 + i % 5, 1, 0));
        ASSERT_TRUE(ones.back() && twos.back());
    }
    // Each span named at its first page, found from every page.
    auto maps_back = [](const std::vector<mspan*>& spans) {
        for (mspan* s : spans) {
            if (span_of(s->base) != s) return false;
            for (std::uintptr_t p = s->base; p < s->end(); p += page_size)
                if (span_containing(p) != s) return false;
        }
        return true;
    };
    EXPECT_TRUE(maps_back(ones));
    EXPECT_TRUE(maps_back(twos));
    for (std::size_t i = 0; i < ones.size(); i += 2) one.free_span(ones[i]);
    auto pages = [](const std::vector<mspan*>& spans, std::size_t from, std::size_t step) {
        std::size_t n = 0;
        for (std::size_t i = from; i < spans.size(); i += step) n += spans[i]->npages;
        return n;
    };
    EXPECT_EQ(one.pages_in_use(), pages(ones, 1, 2));
    EXPECT_TRUE(maps_back(twos));
    EXPECT_EQ(two.pages_in_use(), pages(twos, 0, 1));
    EXPECT_TRUE(heap_holds(one));
    EXPECT_TRUE(heap_holds(two));
    for (std::size_t i = 1; i < ones.size(); i += 2) one.free_span(ones[i]);
    for (mspan* s : twos) two.free_span(s);
    EXPECT_EQ(one.pages_in_use() + two.pages_in_use(), 0u);
    EXPECT_TRUE(heap_holds(one));
    EXPECT_TRUE(heap_holds(two));
}

}  // namespace

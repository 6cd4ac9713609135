// mcentral alone, against a model. A test owns a page heap and an mcentral
// per class for a few classes over it — no thread caches above — and drives
// them with seeded random fills and releases of random batches. The model
// holds, per span, which objects are out; after every step:
//   * every object filled is an object start of its class, inside a small
//     span of that class that the page map knows, and was not out already;
//   * within a span the lowest free objects go first, so `handed` counts
//     exactly the objects ever handed out; and a new span is carved only
//     once every span the class holds is full;
//   * the span's free bits and count say what the model says, so the free
//     path, which reads them without the lock, sees released objects free;
//   * mcentral never writes an object's memory: whatever the caller left in a
//     released object (the free path's mark) is there when it comes back;
//   * a span whose objects are all back goes to the heap's empty-span cache,
//     unless it is the class's one spare, and a fill that needs a span takes
//     it back whole, its objects as they were left; release_empty_spans()
//     gives the spare back too, and trim_cached() the cached spans, so with
//     everything released the heap holds nothing;
//   * the heap's counters and invariants, and the mcentral's own checker
//     (check_central), agree.
// What mcentral does not promise is not asserted: which span a fill starts
// from, and the free mark itself, which the caller writes (see fastpath.h).
#include "central.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace {

using namespace spanmap::detail;
using spanmap::test::check_pattern;
using spanmap::test::fill_pattern;
using spanmap::test::mix;
using spanmap::test::scaled;
namespace sc = spanmap::sc;

using spanmap::test::rng;
::testing::AssertionResult heap_holds(const mheap& h) {
    char why[512] = {};
    if (check_heap(h, why, sizeof why)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "heap invariant violated: " << why;
}

::testing::AssertionResult central_holds(const mcentral& m, unsigned c) {
    char why[512] = {};
    if (check_central(m, c, why, sizeof why)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "mcentral invariant violated: " << why;
}

// The smallest class (1024 objects a span), a small one, one of ten objects
// a span, one of six objects over five pages, and the largest (one object).
constexpr std::array<unsigned, 5> kClasses = {1, 5, 30, 49, 67};

// How much of a released object the test writes and checks: the first bytes,
// where the free path's mark lives, and enough more to see a clobbered object.
std::size_t pattern_bytes(unsigned c) { return std::min<std::size_t>(sc::class_size[c], 128); }

struct span_model {
    mspan* s;
    std::vector<bool> out;  // per object
    std::uint32_t nout = 0;
    std::uint32_t handed = 0;  // 1 + the highest object ever handed out
};

struct class_model {
    unsigned c = 0;
    std::map<std::uintptr_t, span_model> spans;  // by base
    // Spans emptied beside the spare, in the heap's empty-span cache.
    std::map<std::uintptr_t, span_model> cached;
    std::vector<std::uintptr_t> out;             // every object handed out and not released
    // Released objects of spans still held: the pattern the caller left.
    std::map<std::uintptr_t, std::uint64_t> left;

    std::size_t empty_spans() const {
        std::size_t n = 0;
        for (const auto& [base, sm] : spans) n += sm.nout == 0;
        return n;
    }
};

std::uint32_t index_in(const mspan* s, std::uintptr_t p) { return static_cast<std::uint32_t>((p - s->base) / s->elem_size); }

// The span's free bits and count against the model's objects out.
::testing::AssertionResult bits_agree(const span_model& sm) {
    const mspan* s = sm.s;
    if (s->nfree != s->nelems - sm.nout)
        return ::testing::AssertionFailure() << "span " << (void*)s->base << ": nfree " << s->nfree << ", model " << s->nelems - sm.nout;
    for (std::uint32_t i = 0; i < s->nelems; ++i)
        if (((s->free_bits[i / 64] >> (i % 64)) & 1) == sm.out[i])
            return ::testing::AssertionFailure() << "span " << (void*)s->base << ": object " << i << (sm.out[i] ? " is out but free in its span" : " is back but not free in its span");
    if (s->handed.load() != sm.handed)
        return ::testing::AssertionFailure() << "span " << (void*)s->base << ": handed " << s->handed.load() << ", model " << sm.handed;
    // free's fast path reads the count, and the span's base, from each page's word.
    bool agree = true;
    std::uint32_t wrong = 0;
    for_each_free_check(s, [&](const std::atomic<std::uint32_t>& w) {
        if (w.load() != free_check_word(s->base, sm.handed)) {
            agree = false;
            wrong = w.load();
        }
    });
    if (!agree)
        return ::testing::AssertionFailure() << "span " << (void*)s->base << ": a page's free-path word " << wrong << ", model "
                                             << free_check_word(s->base, sm.handed);
    return ::testing::AssertionSuccess();
}

// A cached span of the model given back to the heap's free pages.
void forget_cached(class_model& cm, std::uintptr_t base) {
    const span_model& sm = cm.cached.at(base);
    for (std::uint32_t k = 0; k < sm.out.size(); ++k) cm.left.erase(base + std::uintptr_t{k} * sc::class_size[cm.c]);
    cm.cached.erase(base);
}

class central_tiers {
public:
    central_tiers() {
        for (std::size_t i = 0; i < kClasses.size(); ++i) {
            central_[i].init(kClasses[i], &heap_);
            model_[i].c = kClasses[i];
        }
    }

    mheap& heap() { return heap_; }
    mcentral& central(std::size_t i) { return central_[i]; }
    class_model& model(std::size_t i) { return model_[i]; }

    // Fills n objects from class i's mcentral and checks them against the model.
    ::testing::AssertionResult fill(std::size_t i, std::size_t n) {
        class_model& cm = model_[i];
        const unsigned c = cm.c;
        std::vector<void*> got(n);
        const std::size_t spans_before = heap_.class_spans(c);
        if (central_[i].fill(got.data(), n) != n) return ::testing::AssertionFailure() << "fill(" << n << ") came back short";
        // The objects of each span this fill took, in the order they came.
        std::map<std::uintptr_t, std::vector<std::uint32_t>> taken;
        std::set<std::uintptr_t> seen;
        std::set<std::uintptr_t> held_before;
        for (const auto& [base, sm] : cm.spans) held_before.insert(base);
        bool new_span = false;
        for (void* v : got) {
            const auto p = reinterpret_cast<std::uintptr_t>(v);
            mspan* s = span_of(p);
            if (s == nullptr || s->state != span_state::small || s->size_class != c)
                return ::testing::AssertionFailure() << (void*)p << " is not in a small span of class " << c;
            if ((p - s->base) % sc::class_size[c] != 0 || index_in(s, p) >= s->nelems)
                return ::testing::AssertionFailure() << (void*)p << " is not an object start";
            if (!seen.insert(p).second) return ::testing::AssertionFailure() << (void*)p << " came twice in one fill";
            auto it = cm.spans.find(s->base);
            if (it == cm.spans.end()) {
                if (auto ct = cm.cached.find(s->base); ct != cm.cached.end()) {
                    // Back from the heap's cache: the same record, its
                    // objects as they were left, `handed` as it was.
                    if (ct->second.s != s) return ::testing::AssertionFailure() << "cached span " << (void*)s->base << " changed its record";
                    it = cm.spans.insert(cm.cached.extract(ct)).position;
                } else {
                    it = cm.spans.emplace(s->base, span_model{s, std::vector<bool>(s->nelems), 0, 0}).first;
                }
                new_span = true;
            } else if (it->second.s != s) {
                return ::testing::AssertionFailure() << "span " << (void*)s->base << " changed its record while the class held it";
            }
            const std::uint32_t idx = index_in(s, p);
            if (it->second.out[idx]) return ::testing::AssertionFailure() << (void*)p << " was out already";
            if (const auto l = cm.left.find(p); l != cm.left.end()) {
                if (check_pattern(v, pattern_bytes(c), l->second) != -1)
                    return ::testing::AssertionFailure() << (void*)p << " came back changed since its release";
                cm.left.erase(l);
            }
            taken[s->base].push_back(idx);
        }
        for (auto& [base, idxs] : taken) {
            span_model& sm = cm.spans.at(base);
            // The lowest free objects of the span, whatever order they came in.
            std::sort(idxs.begin(), idxs.end());
            std::uint32_t want = 0;
            for (const std::uint32_t idx : idxs) {
                while (sm.out[want]) ++want;
                if (idx != want)
                    return ::testing::AssertionFailure() << "span " << (void*)base << ": object " << idx << " handed out before the free object " << want;
                sm.out[idx] = true;
                ++sm.nout;
                ++want;
            }
            sm.handed = std::max(sm.handed, idxs.back() + 1);
            if (auto r = bits_agree(sm); !r) return r;
        }
        for (void* v : got) cm.out.push_back(reinterpret_cast<std::uintptr_t>(v));
        if (new_span) {
            for (const std::uintptr_t base : held_before)
                if (const span_model& sm = cm.spans.at(base); sm.nout != sm.out.size())
                    return ::testing::AssertionFailure() << "a new span was carved while span " << (void*)base << " had free objects";
        }
        // A fill that carved a span had the heap give every cached span back first.
        if (auto r = reconcile_cached(); !r) return r;
        if (heap_.class_spans(c) != cm.spans.size() + cm.cached.size() || heap_.class_spans(c) < spans_before)
            return ::testing::AssertionFailure() << "the heap holds " << heap_.class_spans(c) << " spans of class " << c << ", the model "
                                                 << cm.spans.size() + cm.cached.size();
        return ::testing::AssertionSuccess();
    }

    // Releases the out objects at positions `which` of class i's model, in
    // that order, having written a pattern into each as the free path writes
    // its mark.
    ::testing::AssertionResult release(std::size_t i, const std::vector<std::size_t>& which, std::uint64_t seed) {
        class_model& cm = model_[i];
        const unsigned c = cm.c;
        std::vector<void*> objs;
        for (const std::size_t k : which) objs.push_back(reinterpret_cast<void*>(cm.out[k]));
        std::vector<std::uintptr_t> gone;  // spans that must have gone back to the heap
        for (void* v : objs) {
            const auto p = reinterpret_cast<std::uintptr_t>(v);
            const std::uint64_t pattern = seed ^ p;
            fill_pattern(v, pattern_bytes(c), pattern);
            // Which span holds p, by the model: the one starting at or below it.
            auto it = std::prev(cm.spans.upper_bound(p));
            span_model& sm = it->second;
            sm.out[index_in(sm.s, p)] = false;
            cm.left[p] = pattern;
            if (--sm.nout == 0 && cm.empty_spans() > 1) {
                // Not the class's spare: back to the heap.
                gone.push_back(it->first);
                cm.cached.insert(cm.spans.extract(it));
            }
        }
        // The released positions, highest first, so the rest keep theirs.
        std::vector<std::size_t> sorted = which;
        std::sort(sorted.rbegin(), sorted.rend());
        for (const std::size_t k : sorted) {
            cm.out[k] = cm.out.back();
            cm.out.pop_back();
        }
        central_[i].release(objs.data(), objs.size());
        for (const std::uintptr_t base : gone) {
            const span_model& sm = cm.cached.at(base);
            if (sm.s->parked.load()) {
                // Kept whole: the page map still names it, its bits are all free.
                for (std::size_t pg = 0; pg < sc::class_pages[c]; ++pg)
                    if (span_of(base + pg * page_size) != sm.s)
                        return ::testing::AssertionFailure() << "cached span " << (void*)base << " left the page map";
                if (auto r = bits_agree(sm); !r) return r;
                continue;
            }
            // The cache had no room: freed.
            for (std::size_t pg = 0; pg < sc::class_pages[c]; ++pg)
                if (span_of(base + pg * page_size) != nullptr)
                    return ::testing::AssertionFailure() << "span " << (void*)base << " emptied beside a spare but neither cached nor given back";
            forget_cached(cm, base);
        }
        for (const auto& [base, sm] : cm.spans) {
            if (span_of(base) != sm.s) return ::testing::AssertionFailure() << "span " << (void*)base << " is no longer in the page map";
            if (auto r = bits_agree(sm); !r) return r;
        }
        if (heap_.class_spans(c) != cm.spans.size() + cm.cached.size())
            return ::testing::AssertionFailure() << "the heap holds " << heap_.class_spans(c) << " spans of class " << c << ", the model "
                                                 << cm.spans.size() + cm.cached.size();
        return ::testing::AssertionSuccess();
    }

    // The model's cached spans against the heap's lists: one the heap no
    // longer lists went back to its free pages (a carve gives back every
    // cached span), and the heap lists no span the model does not.
    ::testing::AssertionResult reconcile_cached() {
        std::set<const mspan*> listed;
        for (unsigned c = 1; c < num_classes; ++c)
            for (const mspan* s = heap_.cached_newest(c); s != nullptr; s = s->next) listed.insert(s);
        std::size_t modelled = 0;
        for (class_model& cm : model_) {
            for (auto it = cm.cached.begin(); it != cm.cached.end();) {
                const std::uintptr_t base = it->first;
                ++it;
                if (listed.count(cm.cached.at(base).s) != 0) {
                    ++modelled;
                    continue;
                }
                if (span_of(base) == cm.cached.at(base).s && cm.cached.at(base).s->parked.load())
                    return ::testing::AssertionFailure() << "span " << (void*)base << " is cached but on no list";
                forget_cached(cm, base);
            }
        }
        if (modelled != listed.size()) return ::testing::AssertionFailure() << "the heap caches " << listed.size() << " spans, the model " << modelled;
        return ::testing::AssertionSuccess();
    }

    // The heap's empty-span cache, all of it, back to the free pages.
    ::testing::AssertionResult trim_cached() {
        std::size_t want = 0;
        for (class_model& cm : model_) want += cm.cached.size();
        const std::size_t n = heap_.trim_cached(0, 0);
        if (n != want) return ::testing::AssertionFailure() << "trim_cached gave back " << n << " spans, the model has " << want;
        for (class_model& cm : model_) {
            while (!cm.cached.empty()) {
                const std::uintptr_t base = cm.cached.begin()->first;
                if (span_of(base) != nullptr) return ::testing::AssertionFailure() << "trimmed span " << (void*)base << " is still in the page map";
                forget_cached(cm, base);
            }
        }
        if (heap_.cached_spans() != 0 || heap_.cached_pages() != 0) return ::testing::AssertionFailure() << "the span cache still counts spans";
        return ::testing::AssertionSuccess();
    }

    // Every wholly free span of class i goes back, the spare included.
    ::testing::AssertionResult release_empty(std::size_t i) {
        class_model& cm = model_[i];
        std::vector<std::uintptr_t> gone;
        for (auto it = cm.spans.begin(); it != cm.spans.end();) {
            if (it->second.nout == 0) {
                gone.push_back(it->first);
                for (std::uint32_t k = 0; k < it->second.out.size(); ++k) cm.left.erase(it->first + std::uintptr_t{k} * sc::class_size[cm.c]);
                it = cm.spans.erase(it);
            } else {
                ++it;
            }
        }
        central_[i].release_empty_spans();
        for (const std::uintptr_t base : gone)
            if (span_of(base) != nullptr) return ::testing::AssertionFailure() << "empty span " << (void*)base << " was kept";
        if (central_[i].empty_spans() != 0) return ::testing::AssertionFailure() << "an empty span is still counted";
        if (heap_.class_spans(cm.c) != cm.spans.size() + cm.cached.size())
            return ::testing::AssertionFailure() << "the heap holds " << heap_.class_spans(cm.c) << " spans of class " << cm.c << ", the model "
                                                 << cm.spans.size() + cm.cached.size();
        return ::testing::AssertionSuccess();
    }

    // Each mcentral's checker, the heap's, and the pages the classes' spans hold.
    ::testing::AssertionResult invariants() {
        std::size_t spans = 0;
        std::size_t pages = 0;
        for (std::size_t i = 0; i < kClasses.size(); ++i) {
            if (auto r = central_holds(central_[i], kClasses[i]); !r) return r;
            if (central_[i].partial().size() + central_[i].full_spans() != model_[i].spans.size())
                return ::testing::AssertionFailure() << "class " << kClasses[i] << "'s lists hold other spans than the model's";
            if (central_[i].empty_spans() != model_[i].empty_spans())
                return ::testing::AssertionFailure() << "class " << kClasses[i] << " counts " << central_[i].empty_spans() << " empty spans, the model " << model_[i].empty_spans();
            spans += model_[i].spans.size() + model_[i].cached.size();
            pages += (model_[i].spans.size() + model_[i].cached.size()) * sc::class_pages[kClasses[i]];
        }
        if (heap_.small_spans() != spans) return ::testing::AssertionFailure() << "the heap counts " << heap_.small_spans() << " small spans, the model " << spans;
        if (heap_.pages_in_use() != pages) return ::testing::AssertionFailure() << "the heap has " << heap_.pages_in_use() << " pages in use, the model " << pages;
        return heap_holds(heap_);
    }

private:
    mheap heap_;
    std::array<mcentral, kClasses.size()> central_;
    std::array<class_model, kClasses.size()> model_;
};

void run_sequence(std::uint64_t seed, int steps) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    central_tiers t;
    rng r(seed);
    // Bounded so that the classes of many objects a span hold a few spans'
    // worth at most: enough to fill, empty and refill spans again and again.
    auto limit = [](unsigned c) { return 3 * std::max<std::size_t>(sc::class_pages[c] * page_size / sc::class_size[c], 4); };
    for (int step = 0; step < steps; ++step) {
        SCOPED_TRACE(::testing::Message() << "step " << step);
        const std::size_t i = r.below(kClasses.size());
        class_model& cm = t.model(i);
        const std::size_t per_span = sc::class_pages[cm.c] * page_size / sc::class_size[cm.c];
        const std::size_t roll = r.below(100);
        if (roll < 50 && cm.out.size() < limit(cm.c)) {
            // Batches of a cache refill and beyond: more than a span's worth now and then.
            const std::size_t n = r.chance(80) ? r.between(1, std::min<std::size_t>(per_span, 64)) : r.between(1, 2 * per_span + 1);
            ASSERT_TRUE(t.fill(i, n));
        } else if (roll < 97) {
            if (cm.out.empty()) continue;
            // A random batch, in a random order: mostly a few, now and then all.
            const std::size_t n = r.chance(10) ? cm.out.size() : r.between(1, std::min<std::size_t>(cm.out.size(), 64));
            std::vector<std::size_t> positions(cm.out.size());
            for (std::size_t k = 0; k < positions.size(); ++k) positions[k] = k;
            for (std::size_t k = 0; k < n; ++k) std::swap(positions[k], positions[k + r.below(positions.size() - k)]);
            positions.resize(n);
            ASSERT_TRUE(t.release(i, positions, r.next()));
        } else {
            ASSERT_TRUE(t.release_empty(i));
        }
        if (step % 32 == 0) {
            ASSERT_TRUE(t.invariants());
        }
    }
    ASSERT_TRUE(t.invariants());

    // Everything back: at most one spare span per class stays, and then none.
    for (std::size_t i = 0; i < kClasses.size(); ++i) {
        std::vector<std::size_t> all(t.model(i).out.size());
        for (std::size_t k = 0; k < all.size(); ++k) all[k] = k;
        if (!all.empty()) {
            ASSERT_TRUE(t.release(i, all, r.next()));
        }
        ASSERT_LE(t.model(i).spans.size(), 1u) << "class " << kClasses[i];
    }
    ASSERT_TRUE(t.invariants());
    ASSERT_TRUE(t.trim_cached());
    std::size_t spare_pages = 0;
    for (const unsigned c : kClasses) spare_pages += sc::class_pages[c];
    EXPECT_LE(t.heap().pages_in_use(), spare_pages);
    for (std::size_t i = 0; i < kClasses.size(); ++i) ASSERT_TRUE(t.release_empty(i));
    EXPECT_EQ(t.heap().pages_in_use(), 0u);
    EXPECT_EQ(t.heap().small_spans(), 0u);
    EXPECT_TRUE(t.invariants());
}

TEST(CentralTier, RandomFillsAndReleasesMatchAModel) {
    const int steps = static_cast<int>(scaled(6000, 1500));
    for (const std::uint64_t seed : {11u, 12u, 13u}) {
        run_sequence(seed, steps);
        if (::testing::Test::HasFatalFailure()) return;
    }
}

// A heap of its own and one class's mcentral over it, and n objects of the
// class filled from it (`filled` of them: n unless the OS refused).
struct one_class {
    mheap h;
    mcentral m;
    std::vector<void*> objs;
    std::size_t filled;
    one_class(unsigned c, std::size_t n) : objs(n) {
        m.init(c, &h);
        filled = m.fill(objs.data(), n);
    }
};

// The smallest case of the spare and the heap's empty-span cache: of two
// emptied spans the first stays as the spare and the second goes to the
// cache; a fill past the spare takes that one back whole;
// release_empty_spans() gives back the spare, and trim_cached() the cached
// span once it is old enough.
TEST(CentralTier, OneEmptySpanIsKeptAsTheSpare) {
    constexpr unsigned c = 30;
    const std::size_t per_span = page_size / sc::class_size[c];
    one_class t(c, 2 * per_span);
    ASSERT_EQ(t.filled, t.objs.size());
    auto& [h, m, objs, filled] = t;
    ASSERT_EQ(h.class_spans(c), 2u);
    mspan* first = span_of(reinterpret_cast<std::uintptr_t>(objs[0]));
    mspan* second = span_of(reinterpret_cast<std::uintptr_t>(objs[per_span]));
    ASSERT_NE(first, second);
    m.release(objs.data(), per_span);
    EXPECT_EQ(h.class_spans(c), 2u) << "the first span to empty is the spare";
    EXPECT_EQ(m.empty_spans(), 1u);
    m.release(objs.data() + per_span, per_span);
    EXPECT_EQ(m.empty_spans(), 1u);
    EXPECT_EQ(h.class_spans(c), 2u) << "a second empty span is cached whole";
    EXPECT_EQ(h.cached_spans(), 1u);
    EXPECT_EQ(h.cached_pages(), sc::class_pages[c]);
    EXPECT_TRUE(second->parked.load());
    EXPECT_EQ(span_of(second->base), second);
    EXPECT_EQ(span_of(first->base), first);
    EXPECT_TRUE(central_holds(m, c));
    EXPECT_TRUE(heap_holds(h));

    // Both spans' worth again: the spare first, then the cached span, no new one.
    const std::size_t pages_before = h.pages_in_use();
    ASSERT_EQ(m.fill(objs.data(), objs.size()), objs.size());
    for (void* p : objs) {
        mspan* s = span_of(reinterpret_cast<std::uintptr_t>(p));
        EXPECT_TRUE(s == first || s == second) << p;
    }
    EXPECT_EQ(h.cached_spans(), 0u);
    EXPECT_EQ(h.pages_in_use(), pages_before);
    EXPECT_EQ(second->list, span_list_id::full);
    EXPECT_FALSE(second->parked.load());
    m.release(objs.data(), objs.size());
    EXPECT_EQ(h.cached_spans(), 1u);

    m.release_empty_spans();
    EXPECT_EQ(h.class_spans(c), 1u) << "the spare goes back, the cached span stays";
    EXPECT_EQ(span_of(first->base), nullptr);
    mspan* const cached = span_of(reinterpret_cast<std::uintptr_t>(objs[0])) == nullptr
                              ? span_of(reinterpret_cast<std::uintptr_t>(objs[per_span]))
                              : span_of(reinterpret_cast<std::uintptr_t>(objs[0]));
    ASSERT_NE(cached, nullptr);
    EXPECT_TRUE(cached->parked.load());
    // Not yet as old as asked, then old enough.
    h.set_tick(h.tick() + 3);
    EXPECT_EQ(h.trim_cached(h.tick(), 4), 0u);
    EXPECT_EQ(h.cached_spans(), 1u);
    h.set_tick(h.tick() + 1);
    EXPECT_EQ(h.trim_cached(h.tick(), 4), 1u);
    EXPECT_EQ(h.cached_spans(), 0u);
    EXPECT_EQ(h.class_spans(c), 0u);
    EXPECT_EQ(h.pages_in_use(), 0u);
    EXPECT_EQ(span_of(cached->base), nullptr);
    EXPECT_TRUE(central_holds(m, c));
    EXPECT_TRUE(heap_holds(h));
}

// The heap does not grow while its empty-span cache holds the pages a
// request needs: a run no free pages fit takes the cached spans' pages, and
// a growing heap keeps no spans cached beside its new pages.
TEST(CentralTier, CachedSpansGoBackBeforeTheHeapGrows) {
    constexpr unsigned c = 67;  // one object, four pages a span
    ASSERT_EQ(sc::class_pages[c], 4u);
    // Every page of the heap's first reservation, in spans of the class.
    one_class t(c, grow_step_pages / sc::class_pages[c]);
    ASSERT_EQ(t.filled, t.objs.size());
    auto& [h, m, objs, filled] = t;
    const std::size_t reserved = h.pages_reserved();
    ASSERT_EQ(reserved, grow_step_pages);
    ASSERT_EQ(h.pages_in_use(), reserved);
    m.release(objs.data(), objs.size());
    // One spare, the rest cached: no page is free.
    ASSERT_EQ(h.cached_spans(), objs.size() - 1);
    ASSERT_EQ(h.pages_in_use(), reserved);
    const std::size_t want = (objs.size() - 1) * sc::class_pages[c];
    mspan* big = h.alloc_span(want, 1, 0);
    ASSERT_NE(big, nullptr);
    EXPECT_EQ(h.pages_reserved(), reserved) << "the heap grew while cached spans held the pages";
    EXPECT_EQ(h.cached_spans(), 0u);
    EXPECT_EQ(h.cached_pages(), 0u);
    EXPECT_EQ(h.pages_in_use(), reserved);
    EXPECT_TRUE(heap_holds(h));
    h.free_span(big);
    m.release_empty_spans();
    EXPECT_EQ(h.pages_in_use(), 0u);
    EXPECT_TRUE(heap_holds(h));
}

// The cache keeps no more than its bound; spans past it go back to the
// free pages as they come.
TEST(CentralTier, TheSpanCacheHoldsAtMostItsBound) {
    constexpr unsigned c = 67;  // one object, four pages a span
    one_class t(c, max_cached_spans + 100);
    ASSERT_EQ(t.filled, t.objs.size());
    auto& [h, m, objs, filled] = t;
    m.release(objs.data(), objs.size());
    EXPECT_EQ(m.empty_spans(), 1u);
    EXPECT_EQ(h.cached_spans(), max_cached_spans);
    EXPECT_EQ(h.cached_pages(), max_cached_spans * sc::class_pages[c]);
    EXPECT_EQ(h.class_spans(c), 1 + max_cached_spans);
    EXPECT_EQ(h.pages_in_use(), (1 + max_cached_spans) * sc::class_pages[c]);
    EXPECT_TRUE(central_holds(m, c));
    EXPECT_TRUE(heap_holds(h));
    m.release_empty_spans();
    EXPECT_EQ(h.trim_cached(0, 0), max_cached_spans);
    EXPECT_EQ(h.pages_in_use(), 0u);
    EXPECT_TRUE(heap_holds(h));
}

// Full spans are on no list: the checker finds them through the page map,
// counts them against mcentral's count, and reports one that is neither on
// the partial list, full, nor in the heap's empty-span cache. A class of one
// object a span is taken whole: every object is out, its span full.
TEST(CentralTier, FullSpansAreFoundThroughThePageMap) {
    constexpr unsigned c = 67;
    static_assert(class_span_shapes[c].nelems == 1);
    one_class t(c, 5);
    ASSERT_EQ(t.filled, 5u);
    EXPECT_EQ(t.m.full_spans(), 5u);
    EXPECT_EQ(t.m.partial().size(), 0u);
    for (void* p : t.objs) {
        const mspan* s = span_of(reinterpret_cast<std::uintptr_t>(p));
        ASSERT_NE(s, nullptr);
        EXPECT_EQ(s->base, reinterpret_cast<std::uintptr_t>(p));
        EXPECT_EQ(s->list, span_list_id::full);
        EXPECT_EQ(s->nfree, 0u);
        EXPECT_EQ(s->handed.load(), 1u);
        EXPECT_EQ(s->free_bits[0], 0u);
    }
    EXPECT_TRUE(central_holds(t.m, c));

    // A span that fell off every list.
    mspan* lost = span_of(reinterpret_cast<std::uintptr_t>(t.objs[2]));
    lost->list = span_list_id::none;
    EXPECT_FALSE(central_holds(t.m, c));
    char why[512] = {};
    EXPECT_FALSE(check_central(t.m, c, why, sizeof why));
    EXPECT_NE(std::string(why).find("on no list"), std::string::npos) << why;
    lost->list = span_list_id::full;
    EXPECT_TRUE(central_holds(t.m, c));

    // Releasing them all: the spare stays on partial, the rest are cached.
    t.m.release(t.objs.data(), t.objs.size());
    EXPECT_EQ(t.m.full_spans(), 0u);
    EXPECT_EQ(t.m.partial().size(), 1u);
    EXPECT_EQ(t.h.cached_spans(), 4u);
    EXPECT_TRUE(central_holds(t.m, c));
    EXPECT_TRUE(heap_holds(t.h));
}

// free's fast path reads a page's word, not its span: the checker compares
// every word with its span (the base's low bits, the handed count) and with
// the page map (0 where no small span is), and a page given back to the heap
// passes no free.
TEST(CentralTier, FreePathWordsAgreeWithTheirSpans) {
    constexpr unsigned c = 49;  // six objects over five pages
    static_assert(sc::class_pages[c] == 5);
    one_class t(c, 4);
    ASSERT_EQ(t.filled, 4u);
    mspan* s = span_of(reinterpret_cast<std::uintptr_t>(t.objs[0]));
    ASSERT_NE(s, nullptr);
    ASSERT_EQ(s->handed.load(), 4u);
    std::vector<std::atomic<std::uint32_t>*> words;
    for_each_free_check(s, [&](std::atomic<std::uint32_t>& w) { words.push_back(&w); });
    ASSERT_EQ(words.size(), 5u);
    for (auto* w : words) EXPECT_EQ(w->load(), free_check_word(s->base, 4));
    EXPECT_TRUE(central_holds(t.m, c));

    char why[512] = {};
    const auto fails_with = [&](const char* what) {
        EXPECT_FALSE(check_central(t.m, c, why, sizeof why) && check_heap(t.h, why, sizeof why));
        EXPECT_NE(std::string(why).find(what), std::string::npos) << why;
    };
    // A count the span does not have, on its last page.
    words.back()->fetch_add(std::uint32_t{1} << free_check_handed_shift);
    fails_with("another handed count");
    words.back()->fetch_sub(std::uint32_t{1} << free_check_handed_shift);
    // A base a page off.
    words[2]->fetch_xor(static_cast<std::uint32_t>(page_size));
    fails_with("base elsewhere");
    words[2]->fetch_xor(static_cast<std::uint32_t>(page_size));
    // The profiler's flip is not an error.
    flip_free_check_sampled(s);
    EXPECT_TRUE(central_holds(t.m, c));
    EXPECT_TRUE(heap_holds(t.h));
    flip_free_check_sampled(s);
    EXPECT_TRUE(central_holds(t.m, c));

    // Released, the span stays as the class's spare, words and all (its
    // objects carry the free mark); given back to the heap's free pages, its
    // words are 0.
    const std::uintptr_t base = s->base;
    t.m.release(t.objs.data(), t.objs.size());
    EXPECT_EQ(words[0]->load(), free_check_word(base, 4));
    t.m.release_empty_spans();
    t.h.trim_cached(0, 0);
    EXPECT_EQ(span_of(base), nullptr);
    for (auto* w : words) EXPECT_EQ(w->load(), 0u);
    EXPECT_TRUE(heap_holds(t.h));
}

// An object released twice stops the process: its bit is already set.
TEST(CentralTierDeathTest, ReleasingAFreeObjectStops) {
    EXPECT_DEATH(
        {
            mheap h;
            mcentral m;
            m.init(5, &h);
            void* objs[2];
            m.fill(objs, 2);
            m.release(objs, 1);
            m.release(objs, 1);
        },
        "spanmap: free 0x[0-9a-f]+: double free");
}

}  // namespace

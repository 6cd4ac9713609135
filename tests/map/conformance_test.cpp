// One conformance suite, two maps: every test here runs against
// std::unordered_map (which proves the test) and against spanmap::map, with
// integer and string keys, and with the arena allocator and std::allocator.

#include "map_test_util.h"

#include <spanmap/map.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <iterator>
#include <map>
#include <memory>
#include <ranges>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {

template <class Map>
class Conformance : public ::testing::Test {
protected:
    using map_type = Map;
    using K = typename Map::key_type;
    using V = typename Map::mapped_type;

    static K key(int i) {
        if constexpr (std::is_same_v<K, std::string>) {
            // Lengths from 5 to 60 bytes: every path of the string hash.
            return "key-" + std::to_string(i) + std::string(static_cast<std::size_t>((i % 57 + 57) % 57), 'k');
        } else {
            return static_cast<K>(i);
        }
    }
    static V val(int i) {
        if constexpr (std::is_same_v<V, std::string>) {
            return "value-" + std::to_string(i);
        } else {
            return static_cast<V>(i * 7 + 1);
        }
    }
    static int n() { return spanmap_test::scaled(3000, 1000); }

    // The reference contents as an ordered std::map, whatever the map type.
    static std::map<K, V> contents(const Map& m) {
        std::map<K, V> out;
        for (const auto& [k, v] : m) EXPECT_TRUE(out.emplace(k, v).second) << "key visited twice";
        return out;
    }
};

using Maps = ::testing::Types<
    std::unordered_map<int, int>, spanmap::map<int, int>,
    std::unordered_map<std::string, std::string>, spanmap::map<std::string, std::string>,
    spanmap::map<std::uint64_t, std::string, spanmap::hash<std::uint64_t>, std::equal_to<std::uint64_t>,
                 std::allocator<std::pair<const std::uint64_t, std::string>>>>;
TYPED_TEST_SUITE(Conformance, Maps);

TYPED_TEST(Conformance, EmptyMap) {
    typename TestFixture::map_type m;
    const auto& cm = m;
    EXPECT_TRUE(m.empty());
    EXPECT_EQ(m.size(), 0u);
    EXPECT_GT(m.max_size(), 1000000u);
    EXPECT_TRUE(m.begin() == m.end());
    EXPECT_TRUE(cm.cbegin() == cm.cend());
    EXPECT_TRUE(m.find(this->key(1)) == m.end());
    EXPECT_EQ(m.count(this->key(1)), 0u);
    EXPECT_FALSE(m.contains(this->key(1)));
    EXPECT_EQ(m.erase(this->key(1)), 0u);
    EXPECT_THROW((void)m.at(this->key(1)), std::out_of_range);
    EXPECT_THROW((void)cm.at(this->key(1)), std::out_of_range);
    m.clear();
    EXPECT_TRUE(m.empty());
}

TYPED_TEST(Conformance, InsertFindAndDuplicates) {
    typename TestFixture::map_type m;
    const int n = this->n();
    for (int i = 0; i < n; ++i) {
        auto [it, inserted] = m.insert({this->key(i), this->val(i)});
        ASSERT_TRUE(inserted);
        EXPECT_EQ(it->first, this->key(i));
        EXPECT_EQ(it->second, this->val(i));
    }
    EXPECT_EQ(m.size(), static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
        auto [it, inserted] = m.insert({this->key(i), this->val(i + 1)});
        EXPECT_FALSE(inserted);
        EXPECT_EQ(it->second, this->val(i)) << "insert of a present key must not overwrite";
    }
    EXPECT_EQ(m.size(), static_cast<std::size_t>(n));
    const auto& cm = m;
    for (int i = 0; i < n; ++i) {
        auto it = cm.find(this->key(i));
        ASSERT_TRUE(it != cm.end());
        EXPECT_EQ(it->second, this->val(i));
        EXPECT_TRUE(cm.contains(this->key(i)));
        EXPECT_EQ(cm.count(this->key(i)), 1u);
        EXPECT_EQ(cm.at(this->key(i)), this->val(i));
    }
    for (int i = n; i < n + 100; ++i) EXPECT_TRUE(m.find(this->key(i)) == m.end());
}

TYPED_TEST(Conformance, SubscriptValueInitialisesAndAssigns) {
    typename TestFixture::map_type m;
    EXPECT_EQ(m[this->key(1)], typename TestFixture::V{});
    m[this->key(1)] = this->val(1);
    m[this->key(2)] = this->val(2);
    auto k3 = this->key(3);
    m[std::move(k3)] = this->val(3);
    EXPECT_EQ(m.size(), 3u);
    EXPECT_EQ(m[this->key(1)], this->val(1));
    EXPECT_EQ(m.at(this->key(3)), this->val(3));
    m.at(this->key(2)) = this->val(9);
    EXPECT_EQ(m[this->key(2)], this->val(9));
}

TYPED_TEST(Conformance, TryEmplaceLeavesArgumentsAloneWhenPresent) {
    typename TestFixture::map_type m;
    auto [it, inserted] = m.try_emplace(this->key(1), this->val(1));
    EXPECT_TRUE(inserted);
    auto k = this->key(1);
    auto v = this->val(2);
    auto [it2, inserted2] = m.try_emplace(std::move(k), std::move(v));
    EXPECT_FALSE(inserted2);
    EXPECT_TRUE(it == it2);
    EXPECT_EQ(k, this->key(1)) << "try_emplace moved from the key of a present entry";
    EXPECT_EQ(v, this->val(2)) << "try_emplace moved from the arguments for a present entry";
    EXPECT_EQ(it2->second, this->val(1));
    auto it3 = m.try_emplace(m.cbegin(), this->key(2), this->val(2));
    EXPECT_EQ(it3->second, this->val(2));
}

TYPED_TEST(Conformance, InsertOrAssign) {
    typename TestFixture::map_type m;
    EXPECT_TRUE(m.insert_or_assign(this->key(1), this->val(1)).second);
    auto [it, inserted] = m.insert_or_assign(this->key(1), this->val(2));
    EXPECT_FALSE(inserted);
    EXPECT_EQ(it->second, this->val(2));
    auto k = this->key(5);
    EXPECT_TRUE(m.insert_or_assign(std::move(k), this->val(5)).second);
    EXPECT_EQ(m.insert_or_assign(m.cend(), this->key(5), this->val(6))->second, this->val(6));
    EXPECT_EQ(m.size(), 2u);
}

TYPED_TEST(Conformance, EmplaceForms) {
    typename TestFixture::map_type m;
    using value_type = typename TestFixture::map_type::value_type;
    EXPECT_TRUE(m.emplace(this->key(1), this->val(1)).second);
    EXPECT_TRUE(m.emplace(value_type(this->key(2), this->val(2))).second);
    EXPECT_TRUE(m.emplace(std::piecewise_construct, std::forward_as_tuple(this->key(3)),
                          std::forward_as_tuple(this->val(3)))
                    .second);
    EXPECT_FALSE(m.emplace(this->key(3), this->val(4)).second);
    EXPECT_EQ(m.emplace_hint(m.cbegin(), this->key(4), this->val(4))->second, this->val(4));
    EXPECT_EQ(m.size(), 4u);
    for (int i = 1; i <= 4; ++i) EXPECT_EQ(m.at(this->key(i)), this->val(i));
    if constexpr (std::is_same_v<typename TestFixture::K, std::string>) {
        // A key argument that is not a key_type.
        EXPECT_TRUE(m.emplace("plain", this->val(5)).second);
        EXPECT_TRUE(m.contains(std::string("plain")));
    }
}

TYPED_TEST(Conformance, EraseByKey) {
    typename TestFixture::map_type m;
    const int n = this->n();
    for (int i = 0; i < n; ++i) m[this->key(i)] = this->val(i);
    for (int i = 0; i < n; i += 3) EXPECT_EQ(m.erase(this->key(i)), 1u);
    for (int i = 0; i < n; i += 3) EXPECT_EQ(m.erase(this->key(i)), 0u);
    for (int i = 0; i < n; ++i) EXPECT_EQ(m.contains(this->key(i)), i % 3 != 0) << i;
    EXPECT_EQ(m.size(), static_cast<std::size_t>(n - (n + 2) / 3));
}

TYPED_TEST(Conformance, EraseIteratorReturnsNext) {
    typename TestFixture::map_type m;
    const int n = this->n();
    for (int i = 0; i < n; ++i) m[this->key(i)] = this->val(i);
    // Erase every other key (in key order), deciding as the loop meets them.
    std::map<typename TestFixture::K, bool> erase_me;
    bool flip = false;
    for (const auto& [k, v] : this->contents(m)) {
        erase_me[k] = flip;
        flip = !flip;
    }
    std::size_t visited = 0;
    for (auto it = m.begin(); it != m.end();) {
        ++visited;
        it = erase_me.at(it->first) ? m.erase(it) : std::next(it);
    }
    EXPECT_EQ(visited, static_cast<std::size_t>(n)) << "each entry visited exactly once";
    for (const auto& [k, erased] : erase_me) EXPECT_EQ(m.contains(k), !erased);
    // erase(first, last) and erase of the const_iterator form.
    m.erase(m.cbegin(), m.cend());
    EXPECT_TRUE(m.empty());
}

TYPED_TEST(Conformance, EraseIfFoundByArgumentDependentLookup) {
    typename TestFixture::map_type m;
    const int n = this->n();
    for (int i = 0; i < n; ++i) m[this->key(i)] = this->val(i);
    const auto expected = this->contents(m);
    auto removed = erase_if(m, [&](const auto& kv) { return kv.second == this->val(0) || kv.first == this->key(1); });
    EXPECT_EQ(removed, 2u);
    EXPECT_EQ(m.size(), expected.size() - 2);
    EXPECT_FALSE(m.contains(this->key(0)));
    EXPECT_FALSE(m.contains(this->key(1)));
    EXPECT_EQ(erase_if(m, [](const auto&) { return true; }), static_cast<std::size_t>(n - 2));
    EXPECT_TRUE(m.empty());
}

TYPED_TEST(Conformance, ClearThenReuse) {
    typename TestFixture::map_type m;
    for (int round = 0; round < 3; ++round) {
        for (int i = 0; i < this->n(); ++i) m[this->key(i + round)] = this->val(i);
        EXPECT_EQ(m.size(), static_cast<std::size_t>(this->n()));
        m.clear();
        EXPECT_TRUE(m.empty());
        EXPECT_TRUE(m.begin() == m.end());
        EXPECT_FALSE(m.contains(this->key(round)));
    }
}

TYPED_TEST(Conformance, IterationVisitsEveryEntryOnce) {
    typename TestFixture::map_type m;
    const int n = this->n();
    for (int i = 0; i < n; ++i) m.emplace(this->key(i), this->val(i));
    const auto seen = this->contents(m);  // fails on a key seen twice
    ASSERT_EQ(seen.size(), static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) EXPECT_EQ(seen.at(this->key(i)), this->val(i));
    EXPECT_EQ(static_cast<int>(std::distance(m.begin(), m.end())), n);
    EXPECT_EQ(static_cast<int>(std::distance(m.cbegin(), m.cend())), n);
    // A second pass over the unmodified map gives the same order.
    std::vector<typename TestFixture::K> first_pass, second_pass;
    for (const auto& [k, v] : m) first_pass.push_back(k);
    for (const auto& [k, v] : m) second_pass.push_back(k);
    EXPECT_EQ(first_pass, second_pass);
    // iterator -> const_iterator, post-increment, arrow.
    typename TestFixture::map_type::const_iterator cit = m.begin();
    auto before = cit++;
    EXPECT_TRUE(before == m.begin());
    EXPECT_TRUE(cit != before);
}

TYPED_TEST(Conformance, MutationThroughIterators) {
    typename TestFixture::map_type m;
    for (int i = 0; i < 100; ++i) m[this->key(i)] = this->val(i);
    for (auto&& [k, v] : m) v = this->val(1000);
    for (auto it = m.begin(); it != m.end(); ++it) EXPECT_EQ(it->second, this->val(1000));
    for (auto it = m.begin(); it != m.end(); ++it) it->second = this->val(7);
    for (const auto& [k, v] : m) EXPECT_EQ(v, this->val(7));
}

// The idioms that need *it to be a real value_type& (not a proxy).
TYPED_TEST(Conformance, ReferencesAreValueTypeReferences) {
    using Map = typename TestFixture::map_type;
    using value_type = typename Map::value_type;
    static_assert(std::is_same_v<value_type, std::pair<const typename Map::key_type, typename Map::mapped_type>>);
    static_assert(std::is_same_v<typename Map::reference, value_type&>);
    static_assert(std::is_same_v<typename Map::const_reference, const value_type&>);
    static_assert(std::is_same_v<std::iter_reference_t<typename Map::iterator>, value_type&>);
    static_assert(std::is_same_v<std::iter_reference_t<typename Map::const_iterator>, const value_type&>);
    static_assert(std::is_base_of_v<std::forward_iterator_tag,
                                    typename std::iterator_traits<typename Map::iterator>::iterator_category>);
    static_assert(std::is_convertible_v<typename Map::iterator, typename Map::const_iterator>);

    Map m;
    for (int i = 0; i < 200; ++i) m[this->key(i)] = this->val(i);
    // for (auto& [k, v] : m) and for (auto& kv : m) write through to the map.
    for (auto& [k, v] : m) v = v + v;
    for (auto& kv : m) kv.second = kv.second + this->val(1);
    for (int i = 0; i < 200; ++i) EXPECT_EQ(m.at(this->key(i)), this->val(i) + this->val(i) + this->val(1));
    // A named reference to the pair, and its address, are the slot's.
    auto it = m.find(this->key(42));
    value_type& r = *it;
    value_type* address = &*it;
    EXPECT_EQ(&r, address);
    EXPECT_EQ(&r.second, &it->second);
    EXPECT_EQ(&*m.find(this->key(42)), address) << "lookups do not move entries";
    r.second = this->val(4242);
    EXPECT_EQ(m.at(this->key(42)), this->val(4242));
    const Map& cm = m;
    const value_type& cr = *cm.find(this->key(42));
    EXPECT_EQ(&cr, address);
}

TYPED_TEST(Conformance, KeysAndValuesViews) {
    using Map = typename TestFixture::map_type;
    Map m;
    std::vector<typename Map::key_type> expected_keys;
    for (int i = 0; i < 300; ++i) {
        m[this->key(i)] = this->val(i);
        expected_keys.push_back(this->key(i));
    }
    std::vector<typename Map::key_type> keys;
    for (const auto& k : m | std::views::keys) keys.push_back(k);
    std::sort(keys.begin(), keys.end());
    std::sort(expected_keys.begin(), expected_keys.end());
    EXPECT_EQ(keys, expected_keys);
    for (auto& v : m | std::views::values) v = this->val(9);
    for (const auto& v : std::views::values(std::as_const(m))) EXPECT_EQ(v, this->val(9));
    EXPECT_EQ(std::ranges::distance(m | std::views::keys), 300);
}

TYPED_TEST(Conformance, EqualRange) {
    using Map = typename TestFixture::map_type;
    Map m;
    for (int i = 0; i < 100; ++i) m[this->key(i)] = this->val(i);
    auto [first, last] = m.equal_range(this->key(7));
    ASSERT_EQ(std::distance(first, last), 1);
    EXPECT_EQ(first->first, this->key(7));
    EXPECT_EQ(first->second, this->val(7));
    EXPECT_TRUE(std::next(first) == last);
    const Map& cm = m;
    auto [cfirst, clast] = cm.equal_range(this->key(1000));
    EXPECT_TRUE(cfirst == clast);
    EXPECT_TRUE(cfirst == cm.end());
}

TYPED_TEST(Conformance, ExtractAndInsertNodes) {
    using Map = typename TestFixture::map_type;
    Map m;
    for (int i = 0; i < 500; ++i) m[this->key(i)] = this->val(i);

    typename Map::node_type nh = m.extract(this->key(3));  // by key
    ASSERT_FALSE(nh.empty());
    EXPECT_TRUE(static_cast<bool>(nh));
    EXPECT_EQ(nh.key(), this->key(3));
    EXPECT_EQ(nh.mapped(), this->val(3));
    EXPECT_EQ(m.size(), 499u);
    EXPECT_FALSE(m.contains(this->key(3)));
    EXPECT_TRUE(m.extract(this->key(3)).empty()) << "an absent key gives an empty node";

    // A node's key may be changed before it goes back in.
    nh.key() = this->key(1000);
    nh.mapped() = this->val(1000);
    typename Map::insert_return_type r = m.insert(std::move(nh));
    EXPECT_TRUE(r.inserted);
    EXPECT_TRUE(r.node.empty());
    EXPECT_EQ(r.position->first, this->key(1000));
    EXPECT_EQ(m.at(this->key(1000)), this->val(1000));
    EXPECT_EQ(m.size(), 500u);

    // By iterator; a node whose key is present comes back untouched.
    auto it = m.find(this->key(10));
    typename Map::node_type n10 = m.extract(it);
    EXPECT_EQ(n10.key(), this->key(10));
    EXPECT_EQ(m.size(), 499u);
    m[this->key(10)] = this->val(11);
    auto again = m.insert(std::move(n10));
    EXPECT_FALSE(again.inserted);
    ASSERT_FALSE(again.node.empty());
    EXPECT_EQ(again.node.key(), this->key(10));
    EXPECT_EQ(again.node.mapped(), this->val(10));
    EXPECT_EQ(again.position->first, this->key(10));
    EXPECT_EQ(again.position->second, this->val(11));

    // An empty node inserts nothing.
    auto none = m.insert(typename Map::node_type());
    EXPECT_FALSE(none.inserted);
    EXPECT_TRUE(none.position == m.end());
    // The hinted form returns the position.
    auto pos = m.insert(m.cbegin(), m.extract(this->key(20)));
    EXPECT_EQ(pos->first, this->key(20));
    EXPECT_EQ(m.size(), 500u);

    // Nodes move between maps of the same type.
    Map other;
    for (int i = 100; i < 150; ++i) other.insert(m.extract(this->key(i)));
    EXPECT_EQ(other.size(), 50u);
    EXPECT_EQ(m.size(), 450u);
    for (int i = 100; i < 150; ++i) EXPECT_FALSE(m.contains(this->key(i)));
    EXPECT_EQ(other.at(this->key(105)), this->val(105));
}

TYPED_TEST(Conformance, Merge) {
    using Map = typename TestFixture::map_type;
    Map a, b;
    for (int i = 0; i < 300; ++i) a[this->key(i)] = this->val(i);
    for (int i = 200; i < 600; ++i) b[this->key(i)] = this->val(i + 1);
    a.merge(b);
    EXPECT_EQ(a.size(), 600u);
    EXPECT_EQ(b.size(), 100u) << "keys a already had stay in b";
    for (int i = 0; i < 300; ++i) EXPECT_EQ(a.at(this->key(i)), this->val(i));
    for (int i = 300; i < 600; ++i) EXPECT_EQ(a.at(this->key(i)), this->val(i + 1));
    for (int i = 200; i < 300; ++i) EXPECT_EQ(b.at(this->key(i)), this->val(i + 1));
    Map c;
    c[this->key(7000)] = this->val(1);
    a.merge(std::move(c));
    EXPECT_EQ(a.size(), 601u);
    EXPECT_TRUE(c.empty());
}

TYPED_TEST(Conformance, RehashReserveAndMaxLoadFactor) {
    using Map = typename TestFixture::map_type;
    Map m;
    for (int i = 0; i < 100; ++i) m[this->key(i)] = this->val(i);
    const auto before = TestFixture::contents(m);
    m.rehash(4096);
    EXPECT_GE(m.bucket_count(), 4096u);
    EXPECT_EQ(TestFixture::contents(m), before);
    m.rehash(0);
    EXPECT_EQ(TestFixture::contents(m), before);

    Map r;
    r.reserve(5000);
    const auto buckets = r.bucket_count();
    EXPECT_GE(static_cast<double>(buckets) * r.max_load_factor(), 5000.0);
    for (int i = 0; i < 5000; ++i) r[this->key(i)] = this->val(i);
    EXPECT_EQ(r.bucket_count(), buckets) << "reserve(n) makes room for n entries";

    // The setter is accepted; the map keeps its contents and its bound.
    const float mlf = r.max_load_factor();
    r.max_load_factor(mlf);
    EXPECT_EQ(r.max_load_factor(), mlf);
    EXPECT_LE(r.load_factor(), r.max_load_factor());
    EXPECT_EQ(r.size(), 5000u);
}

TYPED_TEST(Conformance, CopyAndMove) {
    using Map = typename TestFixture::map_type;
    Map m;
    for (int i = 0; i < this->n(); ++i) m[this->key(i)] = this->val(i);
    const auto expected = this->contents(m);

    Map copy(m);
    EXPECT_EQ(this->contents(copy), expected);
    copy[this->key(-1)] = this->val(-1);
    EXPECT_FALSE(m.contains(this->key(-1)));

    Map moved(std::move(copy));
    EXPECT_EQ(moved.size(), expected.size() + 1);
    copy.clear();  // a moved-from map is valid: it can be cleared and reused
    copy[this->key(1)] = this->val(1);
    EXPECT_EQ(copy.size(), 1u);

    Map assigned;
    assigned[this->key(-5)] = this->val(-5);
    assigned = m;
    EXPECT_EQ(this->contents(assigned), expected);
    assigned = assigned;  // self-assignment
    EXPECT_EQ(this->contents(assigned), expected);

    Map move_assigned;
    move_assigned[this->key(-6)] = this->val(-6);
    move_assigned = std::move(assigned);
    EXPECT_EQ(this->contents(move_assigned), expected);

    Map from_list = {{this->key(1), this->val(1)}, {this->key(2), this->val(2)}};
    EXPECT_EQ(from_list.size(), 2u);
    from_list = {{this->key(3), this->val(3)}};
    EXPECT_EQ(from_list.size(), 1u);
    EXPECT_TRUE(from_list.contains(this->key(3)));

    Map from_range(m.begin(), m.end());
    EXPECT_EQ(this->contents(from_range), expected);
    Map inserted;
    inserted.insert(m.cbegin(), m.cend());
    EXPECT_EQ(this->contents(inserted), expected);
}

TYPED_TEST(Conformance, Swap) {
    using Map = typename TestFixture::map_type;
    Map a, b;
    for (int i = 0; i < 100; ++i) a[this->key(i)] = this->val(i);
    b[this->key(-1)] = this->val(-1);
    const auto ca = this->contents(a), cb = this->contents(b);
    a.swap(b);
    EXPECT_EQ(this->contents(a), cb);
    EXPECT_EQ(this->contents(b), ca);
    using std::swap;
    swap(a, b);
    EXPECT_EQ(this->contents(a), ca);
    EXPECT_EQ(this->contents(b), cb);
}

TYPED_TEST(Conformance, Equality) {
    using Map = typename TestFixture::map_type;
    Map a, b;
    for (int i = 0; i < 500; ++i) a[this->key(i)] = this->val(i);
    for (int i = 499; i >= 0; --i) b[this->key(i)] = this->val(i);
    EXPECT_TRUE(a == b);
    EXPECT_FALSE(a != b);
    b[this->key(7)] = this->val(8);
    EXPECT_FALSE(a == b);
    b[this->key(7)] = this->val(7);
    b.erase(this->key(3));
    EXPECT_TRUE(a != b);
    b[this->key(1000)] = this->val(3);
    EXPECT_TRUE(a != b);
}

TYPED_TEST(Conformance, ReserveThenInsert) {
    typename TestFixture::map_type m;
    m.reserve(static_cast<std::size_t>(this->n()));
    for (int i = 0; i < this->n(); ++i) m[this->key(i)] = this->val(i);
    EXPECT_EQ(m.size(), static_cast<std::size_t>(this->n()));
    for (int i = 0; i < this->n(); ++i) EXPECT_EQ(m.at(this->key(i)), this->val(i));
    EXPECT_GE(m.bucket_count(), 1u);
    EXPECT_GT(m.load_factor(), 0.0f);
}

TYPED_TEST(Conformance, IteratorsFromLookupsStayValidAcrossLookups) {
    typename TestFixture::map_type m;
    for (int i = 0; i < this->n(); ++i) m[this->key(i)] = this->val(i);
    auto it = m.find(this->key(5));
    const auto* value_address = &it->second;
    for (int i = 0; i < this->n(); ++i) (void)m.find(this->key(i));
    EXPECT_EQ(&m.find(this->key(5))->second, value_address);
    EXPECT_EQ(it->second, this->val(5));
}

// --- spanmap-only API conformance -------------------------------------------------

TEST(SpanmapConformance, IteratorConcepts) {
    using M = spanmap::map<int, std::string>;
    static_assert(std::forward_iterator<M::iterator>);
    static_assert(std::forward_iterator<M::const_iterator>);
    static_assert(std::is_convertible_v<M::iterator, M::const_iterator>);
    static_assert(!std::is_convertible_v<M::const_iterator, M::iterator>);
    static_assert(std::ranges::forward_range<M>);
    M m{{1, "one"}, {2, "two"}};
    std::vector<std::pair<int, std::string>> copied(m.begin(), m.end());
    EXPECT_EQ(copied.size(), 2u);
    std::pair<const int, std::string> p = *m.find(1);
    EXPECT_EQ(p.second, "one");
    EXPECT_EQ(M::max_load_factor(), 6.5f);
}

// The README's table of bucket bytes for pair slots.
TEST(SpanmapConformance, BucketBytesPerLayout) {
    EXPECT_EQ((spanmap::map<std::uint64_t, std::uint64_t>().stats().bucket_bytes), 144u);
    EXPECT_EQ((spanmap::map<std::uint64_t, std::uint8_t>().stats().bucket_bytes), 144u);
    EXPECT_EQ((spanmap::map<std::uint32_t, std::uint64_t>().stats().bucket_bytes), 144u);
    EXPECT_EQ((spanmap::map<std::uint8_t, std::uint64_t>().stats().bucket_bytes), 144u);
    EXPECT_EQ((spanmap::map<std::uint32_t, std::uint32_t>().stats().bucket_bytes), 80u);
    EXPECT_EQ((spanmap::map<std::string, std::uint64_t>().stats().bucket_bytes), 8 + 8 * (sizeof(std::string) + 8) + 8);
}

TEST(SpanmapConformance, DeductionGuides) {
    const std::vector<std::pair<int, std::string>> v{{1, "one"}, {2, "two"}, {3, "three"}};
    spanmap::map m(v.begin(), v.end());
    std::unordered_map s(v.begin(), v.end());
    static_assert(std::is_same_v<decltype(m), spanmap::map<int, std::string>>);
    static_assert(std::is_same_v<decltype(s), std::unordered_map<int, std::string>>);
    ASSERT_EQ(m.size(), s.size());
    for (const auto& [k, val] : s) EXPECT_EQ(m.at(k), val);

    spanmap::map l{std::pair<int, double>{1, 1.5}, std::pair<int, double>{2, 2.5}};
    static_assert(std::is_same_v<decltype(l), spanmap::map<int, double>>);
    EXPECT_EQ(l.at(2), 2.5);

    using A = std::allocator<std::pair<const int, std::string>>;
    spanmap::map ma(v.begin(), v.end(), 0, A());
    static_assert(std::is_same_v<decltype(ma),
                                 spanmap::map<int, std::string, spanmap::hash<int>, std::equal_to<int>, A>>);
    EXPECT_EQ(ma.at(3), "three");
    spanmap::map copy(m);
    static_assert(std::is_same_v<decltype(copy), decltype(m)>);
}

TEST(SpanmapConformance, NodesComeFromTheMapsAllocator) {
    spanmap_test::ledger l;
    using A = spanmap_test::tracking_allocator<std::pair<const int, std::string>>;
    {
        spanmap::map<int, std::string, spanmap::hash<int>, std::equal_to<int>, A> m{A(&l)};
        for (int i = 0; i < 100; ++i) m[i] = std::string(40, 'a');
        const auto blocks = l.allocations;
        auto nh = m.extract(5);
        EXPECT_EQ(l.allocations, blocks + 1) << "the node is one block from the map's allocator";
        EXPECT_TRUE(nh.get_allocator() == m.get_allocator());
        auto dropped = m.extract(6);  // destroyed with its node
        m.insert(std::move(nh));
        EXPECT_EQ(m.at(5), std::string(40, 'a'));
    }
    EXPECT_EQ(l.bytes, 0u);
}

TEST(SpanmapConformance, TransparentStringLookup) {
    spanmap::map<std::string, int> m;
    m["alpha"] = 1;
    m[std::string(100, 'x')] = 2;
    const std::string_view sv = "alpha";
    EXPECT_EQ(m.find(sv)->second, 1);
    EXPECT_TRUE(m.contains("alpha"));
    EXPECT_EQ(m.count(std::string_view(std::string(100, 'x'))), 1u);
    EXPECT_EQ(m.at("alpha"), 1);
    EXPECT_FALSE(m.contains(std::string_view("alph")));
    const char* cstr = "alpha";
    EXPECT_TRUE(m.find(cstr) != m.end());
}

}  // namespace

#pragma once
// spanmap::map — Go's classic hash map (runtime/map.go of Go 1.19–1.22, before
// the Swiss tables of Go 1.24) in C++20, with its buckets in the arena.
//
// ## Buckets
//
// A map is an array of 2^B buckets. The low B bits of a key's hash pick its
// bucket; the top 8 bits ("tophash") are kept in the bucket so that a probe
// compares one byte per slot and touches a key only when the byte matches.
// A bucket holds 8 slots; a ninth key for a bucket goes into an overflow
// bucket chained behind it. Each slot is one std::pair<const Key, T> — the
// map's value_type — so that *it is a real value_type& as in every standard
// map (Go keeps the 8 keys, then the 8 values):
//
//   struct bucket {                  // alignas(max(alignof(slot), alignof(bucket*)))
//       uint8_t  tophash[8];         // top byte of each slot's hash, or a marker (below)
//       slot     slots[8];           // std::pair<const Key, T>, or a pointer to one (indirect)
//       bucket*  overflow;           // next bucket of this chain, or nullptr
//   };                               // padding after tophash and inside each pair as alignment needs
//
// The price is the pair's own padding, paid once per slot instead of once
// per bucket when the key and the value differ in alignment. Bucket bytes,
// then bytes per entry of a full bucket (/ 8) and at the load factor (/ 6.5),
// on 64-bit (the test BucketBytesPerLayout checks the pair column):
//
//   key, value           Go layout           pair slots
//   u64, u64          144 B: 18.0 / 22.2   144 B: 18.0 / 22.2
//   u64, u8            88 B: 11.0 / 13.5   144 B: 18.0 / 22.2
//   u32, u64          112 B: 14.0 / 17.2   144 B: 18.0 / 22.2
//   u8,  u64           88 B: 11.0 / 13.5   144 B: 18.0 / 22.2
//   u32, u32           80 B: 10.0 / 12.3    80 B: 10.0 / 12.3
//   string, u64       336 B: 42.0 / 51.7   336 B: 42.0 / 51.7
//
// (map_stats::bucket_bytes reports the figure for any instantiation.)
//
// Against a Swiss table (absl::flat_hash_map: a control byte and a slot per
// entry, at most 7/8 full) the layout pays 18 bytes per slot (144 / 8) at
// most 6.5/8 full, 17 per slot at most 7/8 full for Abseil. For u64 -> u64
// that is 22.2 to 44.3 bytes per entry over a doubling, against 19.4 to
// 38.9. Where a given n falls in each table's cycle decides which is
// smaller: at n = 1e6 the chains need 2^18 buckets (37.7 B per entry, the
// preallocated overflow tail aside), Abseil 2^21 slots (35.7); at n = 1e7,
// 2^21 buckets (30.2) against 2^24 slots (28.5). Go's growth points fix B,
// so at those n no release policy brings the array below Abseil's.
//
// A slot holds a pointer to a separately allocated pair when the key or the
// value is bigger than 128 bytes (Go's rule, though Go puts only the big part
// behind a pointer), or when either's move constructor may throw, because
// evacuation moves entries and must not fail half-way. All memory — bucket
// arrays, overflow buckets, indirect pairs — comes from the map's Allocator,
// rebound with std::allocator_traits.
// From B = 4 on, an array carries 2^(B-4) extra buckets that serve as the
// first overflow buckets, and it is rounded up to what the allocator really
// hands out (Go's roundupsize; spanmap::good_size for the arena allocator).
//
// ## Growth
//
// Only an insert of a new key starts a growth, and only when no growth is in
// progress:
//   - to 2^(B+1) buckets when count+1 > 8 and count+1 > 6.5 * 2^B (the load factor);
//   - to 2^B buckets again ("same-size growth") when the map has made
//     noverflow >= 2^min(B, 15) overflow buckets since its last growth: erase
//     leaves holes that inserts into other buckets cannot use, and rebuilding
//     the chains packs the entries again.
// The old array is kept and evacuated incrementally: every insert and every
// erase-by-key first evacuates the old bucket its key hashes to, then the
// oldest not-yet-evacuated buckets, eight of them where Go's growWork takes
// one (detail::evacuations_per_write says why: the same work, more of it in
// address order; at most nine old buckets per write). Evacuating old bucket
// i moves its entries to new bucket i ("X") or, when doubling, i + 2^oldB
// ("Y"), as the next hash bit says. Lookups read an old bucket for as long
// as it is not evacuated and never move anything. When
// the last old bucket is evacuated, the old array goes back to the allocator;
// an old bucket's separately allocated overflow buckets go back as soon as
// that bucket is evacuated (no iterator survives the write that moved them).
//
// No operation does O(n) work for a growth. The new array is not cleared when
// it is allocated: new bucket j is first written by the evacuation of its only
// source, old bucket j mod 2^oldB, which initialises its destinations before
// moving anything into them; inserts evacuate their key's old bucket before
// touching the new one; lookups and iterators read new bucket j only once that
// source is evacuated. So the new array's pages are first touched, bucket by
// bucket, as evacuation reaches them. reserve() on an empty map is Go's
// make(map, n): that array's chain heads are written at once (see
// allocate_array for why not through fresh zeroed pages), and so are those
// of a reserve() that more than doubles a non-empty map, or of a
// shrink_to_fit() — explicit requests for an array of that size.
//
// Beyond Go (golang/go#20135): shrink_to_fit() starts the same incremental
// regrow towards the smallest B for the current count; each old bucket then
// pours into bucket i mod 2^B of the smaller array.
//
// ## What a write costs
//
// Most inserts find the map neither growing nor due to grow. For them the
// insert is inlined: the hash, one probe that notes the chain's first empty
// slot while it looks for the key, and two compares, of count and noverflow
// against limits kept beside B (detail::load_limit and overflow_limit; a
// static_assert holds them to Go's two checks). The first bucket, evacuation
// work and the start of a growth are out of line. Evacuation walks an old
// bucket's live slots by its tophash mask; a doubling or same-size regrow
// writes into destinations that have no other source, so each destination's
// next slot is a counter, not a search; the old bucket's 8 markers are
// written in one store. Each moved entry is hashed again, as in Go: a bucket
// keeps only the top byte, and X or Y is bit oldB of the full hash.
// erase(key) is inlined as find is; its whole tophash update, the erased
// slot and the run of empty_one slots it may turn into empty_rest, is one
// word, with no branch on the neighbours while the array fits a core's
// cache (detail::erase_tophash). bench/map_opcount.cpp counts the
// instructions per operation under callgrind (figures in its comment).
//
// ## Iterators and references
//
// *it is the slot's std::pair<const Key, T>&, and the iterators are forward
// iterators, so everything written for std::unordered_map's iterators
// (`for (auto& [k, v] : m)`, `&*it`, std::views::keys) works unchanged.
//
//   - Iterating a map that is not modified visits every entry once, in a fixed order.
//   - find(), contains(), count(), at() and iteration never move entries.
//   - An insert, emplace, operator[], erase(key), reserve(), shrink_to_fit(),
//     clear() or assignment may move entries (evacuation) and invalidates
//     every iterator, pointer and reference into the map.
//   - erase(iterator) moves nothing: it invalidates only the erased entry and
//     returns the next one, also in the middle of a growth, so
//       for (auto it = m.begin(); it != m.end();) it = pred(*it) ? m.erase(it) : std::next(it);
//     visits every entry once. (erase(iterator) does no evacuation work.)
//   - begin() walks to the first non-empty chain, so it is O(buckets) on a
//     sparse map (as in every open table); the loop above is O(n + buckets).
//
// ## Misuse
//
// A write that starts while another write is in progress (from another thread,
// or from a hash function or element constructor re-entering the map) stops the
// process with "fatal error: concurrent map writes", and a lookup during a
// write with "concurrent map read and map write" (Go's hashWriting flag). This
// is a best-effort check, not synchronisation.
//
// ## Exceptions
//
// If the hash, the key comparison or an element's constructor throws during
// an insert, the map's contents are unchanged and nothing leaks. An insert
// computes the hash first, evacuates (evacuation does all that can fail —
// hashing the entries it moves, allocating the overflow buckets it may need —
// before it moves anything), then compares keys, then constructs the new entry
// in its slot and only then publishes it (tophash, count). A growth may have
// been started by then; that moves no entry and changes no contents.

#include <spanmap/alloc.h>
#include <spanmap/detail/bucket.h>
#include <spanmap/hash.h>
#include <spanmap/map_stats.h>

#include <algorithm>
#include <bit>
#include <cassert>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>

namespace spanmap {


template <class Key, class T, class Hash = spanmap::hash<Key>, class KeyEqual = std::equal_to<Key>,
          class Allocator = spanmap::allocator<std::pair<const Key, T>>>
class map {
public:
    using key_type = Key;
    using mapped_type = T;
    using value_type = std::pair<const Key, T>;
    using size_type = std::size_t;
    using difference_type = std::ptrdiff_t;
    using hasher = Hash;
    using key_equal = KeyEqual;
    using allocator_type = Allocator;
    using reference = value_type&;
    using const_reference = const value_type&;
    using pointer = typename std::allocator_traits<Allocator>::pointer;
    using const_pointer = typename std::allocator_traits<Allocator>::const_pointer;

    static_assert(std::is_same_v<typename std::allocator_traits<Allocator>::value_type, value_type>,
                  "Allocator::value_type must be std::pair<const Key, T>");

private:
    // --- bucket layout (see the pseudo-struct above) ---------------------------
    static constexpr bool indirect = detail::stored_indirectly<Key> || detail::stored_indirectly<T>;
    using slot_type = std::conditional_t<indirect, value_type*, value_type>;

    using bucket = detail::bucket<slot_type>;

    // --- allocators -------------------------------------------------------------
    using alloc_traits = std::allocator_traits<Allocator>;
    template <class U>
    using rebind = typename alloc_traits::template rebind_alloc<U>;
    template <class U>
    using rebind_traits = std::allocator_traits<rebind<U>>;
    using bucket_traits = rebind_traits<bucket>;
    static_assert(std::is_same_v<typename bucket_traits::pointer, bucket*>,
                  "spanmap::map needs an allocator whose pointer type is a plain pointer");

    static constexpr bool hash_nothrow = detail::nothrow_hasher<Hash, Key>();
    static constexpr bool transparent = requires { typename Hash::is_transparent; } &&
                                        (requires { typename KeyEqual::is_transparent; } ||
                                         std::is_same_v<KeyEqual, std::equal_to<Key>>);

    // --- the map header (Go's hmap) -----------------------------------------------
    struct hmap {
        std::size_t count = 0;             // live entries
        bucket* buckets = nullptr;         // 2^B chain heads, then preallocated overflow buckets
        std::size_t nalloc = 0;            // buckets in that allocation
        std::size_t next_overflow = 0;     // next preallocated overflow bucket (== nalloc: none left)
        bucket* oldbuckets = nullptr;      // the array being evacuated; nullptr when not growing
        std::size_t old_nalloc = 0;
        std::size_t nevacuate = 0;         // every old bucket below this index is evacuated
        std::size_t nevacuated = 0;        // old buckets evacuated so far
        std::size_t overflow_in_use = 0;   // overflow buckets linked into chains
        std::size_t overflow_owned = 0;    // separately allocated overflow buckets (linked or spare)
        bucket* spares = nullptr;          // owned overflow buckets set aside for an evacuation
        std::size_t nspares = 0;
        std::uint64_t seed = detail::thread_random();
        std::size_t bucket_mask = 0;       // 2^B - 1, kept beside B: the lookup path needs the mask, not B
        std::size_t load_limit = detail::load_limit(0);  // an insert making count exceed this doubles the map
        std::uint32_t noverflow = 0;       // Go's approximate overflow count since the last growth
        std::uint32_t overflow_limit = detail::overflow_limit(0);  // noverflow reaching this regrows at the same size
        std::uint8_t B = 0;                // log2 of the chain heads in buckets
        std::uint8_t oldB = 0;             // log2 of the chain heads in oldbuckets
        bool lazy = false;                 // new buckets initialised as their old bucket is evacuated
        bucket* retiring = nullptr;        // a finished old array given back a piece per insert (retire_step)
        std::size_t retiring_nalloc = 0;   // its buckets not yet given back, from the front
    };

    // Go's hashWriting, kept outside hmap so that swapping or stealing a
    // header never carries a write-in-progress flag between maps.
    static constexpr std::uint8_t hash_writing = 1;

    class write_guard {
    public:
        explicit write_guard(map& m) noexcept : flags_(m.flags_) {
            if (flags_ & hash_writing) detail::fatal("concurrent map writes");
            flags_ ^= hash_writing;
        }
        ~write_guard() {
            if (!(flags_ & hash_writing)) detail::fatal("concurrent map writes");
            flags_ ^= hash_writing;
        }
        write_guard(const write_guard&) = delete;
        write_guard& operator=(const write_guard&) = delete;

    private:
        std::uint8_t& flags_;
    };

    // A slot, and where its chain lives: the chain head is (old ? oldbuckets :
    // buckets)[idx]. b == nullptr means "none" / end().
    struct position {
        bucket* b = nullptr;
        std::size_t idx = 0;
        unsigned i = 0;
        bool old = false;
    };

public:
    template <bool Const>
    class basic_iterator {
    public:
        using iterator_category = std::forward_iterator_tag;
        using value_type = std::pair<const Key, T>;
        using difference_type = std::ptrdiff_t;
        using reference = std::conditional_t<Const, const value_type&, value_type&>;
        using pointer = std::conditional_t<Const, const value_type*, value_type*>;

        basic_iterator() = default;
        template <bool C>
            requires(Const && !C)
        basic_iterator(const basic_iterator<C>& it) noexcept : m_(it.m_), p_(it.p_) {
#if SPANMAP_MAP_GENERATIONS
            gen_ = it.gen_;
#endif
        }

        reference operator*() const noexcept {
            check();
            return entry_at(p_.b, p_.i);
        }
        pointer operator->() const noexcept {
            check();
            return &entry_at(p_.b, p_.i);
        }
        basic_iterator& operator++() noexcept {
            check();
            ++p_.i;
            m_->settle(p_);
            return *this;
        }
        basic_iterator operator++(int) noexcept {
            basic_iterator before = *this;
            ++*this;
            return before;
        }
        friend bool operator==(const basic_iterator& a, const basic_iterator& b) noexcept {
            return a.p_.b == b.p_.b && a.p_.i == b.p_.i;
        }

    private:
        friend class map;
        template <bool>
        friend class basic_iterator;
        basic_iterator(const map* m, const position& p) noexcept : m_(m), p_(p) {
#if SPANMAP_MAP_GENERATIONS
            gen_ = m->generation_;
#endif
        }
        void check() const noexcept {
#if SPANMAP_MAP_GENERATIONS
            if (m_ && m_->generation_ != gen_)
                detail::fatal("spanmap::map iterator used after the map moved its entries (a growth, clear or assignment)");
#endif
        }

        const map* m_ = nullptr;
        position p_;
#if SPANMAP_MAP_GENERATIONS
        std::uint32_t gen_ = 0;
#endif
    };
    using iterator = basic_iterator<false>;
    using const_iterator = basic_iterator<true>;

    // An entry taken out of a map (extract) that another map of the same
    // allocator can take in (insert). A slot cannot leave its bucket, so the
    // node is a separate allocation of the entry, made with the map's
    // allocator. It holds a std::pair<Key, T> rather than the map's
    // std::pair<const Key, T>: key() hands out a Key& that may be assigned,
    // and that needs a key that is not const.
    class node_type {
        using pair_type = std::pair<Key, T>;
        using pair_alloc = typename std::allocator_traits<Allocator>::template rebind_alloc<pair_type>;
        using pair_traits = std::allocator_traits<pair_alloc>;

    public:
        using key_type = Key;
        using mapped_type = T;
        using allocator_type = Allocator;

        constexpr node_type() noexcept = default;
        node_type(node_type&& o) noexcept : p_(std::exchange(o.p_, nullptr)), alloc_(std::move(o.alloc_)) {
            o.alloc_.reset();
        }
        node_type& operator=(node_type&& o) noexcept {
            if (this != &o) {
                reset();
                p_ = std::exchange(o.p_, nullptr);
                alloc_ = std::move(o.alloc_);
                o.alloc_.reset();
            }
            return *this;
        }
        ~node_type() { reset(); }

        [[nodiscard]] bool empty() const noexcept { return p_ == nullptr; }
        explicit operator bool() const noexcept { return p_ != nullptr; }
        allocator_type get_allocator() const { return *alloc_; }
        key_type& key() const noexcept { return p_->first; }
        mapped_type& mapped() const noexcept { return p_->second; }

        void swap(node_type& o) noexcept {
            std::swap(p_, o.p_);
            std::swap(alloc_, o.alloc_);
        }
        friend void swap(node_type& a, node_type& b) noexcept { a.swap(b); }

    private:
        friend class map;
        // Takes the entry e out (moved where that cannot throw, copied
        // otherwise, so that a throw leaves e as it was).
        node_type(const Allocator& alloc, value_type& e) : alloc_(alloc) {
            pair_alloc a(*alloc_);
            pair_type* p = pair_traits::allocate(a, 1);
            try {
                pair_traits::construct(a, p, std::move_if_noexcept(const_cast<Key&>(e.first)),
                                       std::move_if_noexcept(e.second));
            } catch (...) {
                pair_traits::deallocate(a, p, 1);
                throw;
            }
            p_ = p;
        }
        void reset() noexcept {
            if (p_) {
                pair_alloc a(*alloc_);
                pair_traits::destroy(a, p_);
                pair_traits::deallocate(a, p_, 1);
                p_ = nullptr;
            }
            alloc_.reset();
        }

        pair_type* p_ = nullptr;
        std::optional<Allocator> alloc_;
    };
    struct insert_return_type {
        iterator position;
        bool inserted;
        node_type node;
    };

    // --- construction -------------------------------------------------------------
    map() noexcept(noexcept(Hash()) && noexcept(KeyEqual()) && noexcept(Allocator())) : map(0) {}
    // n: entries to make room for (Go's make(map, n)), not a bucket count.
    explicit map(size_type n, const Hash& hash = Hash(), const KeyEqual& eq = KeyEqual(),
                 const Allocator& alloc = Allocator())
        : hash_(hash), eq_(eq), alloc_(alloc) {
        if (n) reserve_impl(n);
    }
    explicit map(const Allocator& alloc) : alloc_(alloc) {}
    map(size_type n, const Allocator& alloc) : map(n, Hash(), KeyEqual(), alloc) {}
    map(size_type n, const Hash& hash, const Allocator& alloc) : map(n, hash, KeyEqual(), alloc) {}
    template <std::input_iterator It>
    map(It first, It last, size_type n = 0, const Hash& hash = Hash(), const KeyEqual& eq = KeyEqual(),
        const Allocator& alloc = Allocator())
        : map(n, hash, eq, alloc) {
        insert(first, last);
    }
    map(std::initializer_list<value_type> init, size_type n = 0, const Hash& hash = Hash(),
        const KeyEqual& eq = KeyEqual(), const Allocator& alloc = Allocator())
        : map(n ? n : init.size(), hash, eq, alloc) {
        insert(init);
    }
    template <std::input_iterator It>
    map(It first, It last, size_type n, const Allocator& alloc) : map(first, last, n, Hash(), KeyEqual(), alloc) {}
    template <std::input_iterator It>
    map(It first, It last, size_type n, const Hash& hash, const Allocator& alloc)
        : map(first, last, n, hash, KeyEqual(), alloc) {}
    map(std::initializer_list<value_type> init, size_type n, const Allocator& alloc)
        : map(init, n, Hash(), KeyEqual(), alloc) {}
    map(std::initializer_list<value_type> init, size_type n, const Hash& hash, const Allocator& alloc)
        : map(init, n, hash, KeyEqual(), alloc) {}

    map(const map& o) : map(o, alloc_traits::select_on_container_copy_construction(o.alloc_)) {}
    map(const map& o, const Allocator& alloc) : hash_(o.hash_), eq_(o.eq_), alloc_(alloc) {
        reserve_impl(o.size());
        for (const value_type& kv : o) emplace_impl(kv.first, make_with(kv));
    }
    // The allocator is copied, not moved: the moved-from map stays usable and
    // still needs one (allocator copies compare equal, so ownership is fine).
    map(map&& o) noexcept : h_(std::exchange(o.h_, hmap{})), hash_(o.hash_), eq_(o.eq_), alloc_(o.alloc_) {}
    map(map&& o, const Allocator& alloc) : hash_(o.hash_), eq_(o.eq_), alloc_(alloc) {
        if (alloc_ == o.alloc_) {
            h_ = std::exchange(o.h_, hmap{});
        } else {
            move_elements_from(o);
        }
    }

    ~map() { release_all(); }

    map& operator=(const map& o) {
        if (this == &o) return *this;
        // Copy, then swap in: a throwing copy leaves *this as it was.
        constexpr bool pocca = alloc_traits::propagate_on_container_copy_assignment::value;
        map copy(o, pocca ? o.alloc_ : alloc_);
        write_guard guard(*this);
        release_all();
        h_ = std::exchange(copy.h_, hmap{});
        if constexpr (pocca) alloc_ = o.alloc_;
        hash_ = o.hash_;
        eq_ = o.eq_;
        return *this;
    }

    map& operator=(map&& o) noexcept(alloc_traits::propagate_on_container_move_assignment::value ||
                                     alloc_traits::is_always_equal::value) {
        if (this == &o) return *this;
        write_guard guard(*this);
        hash_ = o.hash_;
        eq_ = o.eq_;
        if constexpr (alloc_traits::propagate_on_container_move_assignment::value) {
            release_all();
            alloc_ = o.alloc_;
            h_ = std::exchange(o.h_, hmap{});
        } else {
            if (alloc_ == o.alloc_) {
                release_all();
                h_ = std::exchange(o.h_, hmap{});
            } else {
                // Memory cannot change hands: move the elements one by one.
                clear_impl();
                move_elements_from(o);
            }
        }
        return *this;
    }

    map& operator=(std::initializer_list<value_type> init) {
        clear();
        insert(init);
        return *this;
    }

    void swap(map& o) noexcept(alloc_traits::propagate_on_container_swap::value ||
                               alloc_traits::is_always_equal::value) {
        if (this == &o) return;
        write_guard guard(*this);
        write_guard other_guard(o);
        if constexpr (alloc_traits::propagate_on_container_swap::value) {
            using std::swap;
            swap(alloc_, o.alloc_);
        } else {
            // As for std containers: swapping maps with unequal allocators
            // that do not propagate is undefined.
            assert(alloc_ == o.alloc_);
        }
        std::swap(h_, o.h_);
        std::swap(hash_, o.hash_);
        std::swap(eq_, o.eq_);
    }
    friend void swap(map& a, map& b) noexcept(noexcept(a.swap(b))) { a.swap(b); }

    // --- capacity -----------------------------------------------------------------
    [[nodiscard]] bool empty() const noexcept { return h_.count == 0; }
    size_type size() const noexcept { return h_.count; }
    size_type max_size() const noexcept {
        rebind<value_type> a(alloc_);
        return rebind_traits<value_type>::max_size(a);
    }

    // --- iteration ----------------------------------------------------------------
    iterator begin() noexcept { return iterator(this, first_position()); }
    const_iterator begin() const noexcept { return const_iterator(this, first_position()); }
    const_iterator cbegin() const noexcept { return begin(); }
    iterator end() noexcept { return iterator(this, position{}); }
    const_iterator end() const noexcept { return const_iterator(this, position{}); }
    const_iterator cend() const noexcept { return end(); }

    // --- lookup (never moves entries) ----------------------------------------------
    SPANMAP_MAP_INLINE iterator find(const Key& key) { return iterator(this, find_position(key)); }
    SPANMAP_MAP_INLINE const_iterator find(const Key& key) const { return const_iterator(this, find_position(key)); }
    template <class K>
        requires transparent
    SPANMAP_MAP_INLINE iterator find(const K& key) {
        return iterator(this, find_position(key));
    }
    template <class K>
        requires transparent
    SPANMAP_MAP_INLINE const_iterator find(const K& key) const {
        return const_iterator(this, find_position(key));
    }

    SPANMAP_MAP_INLINE bool contains(const Key& key) const { return find_position(key).b != nullptr; }
    template <class K>
        requires transparent
    SPANMAP_MAP_INLINE bool contains(const K& key) const {
        return find_position(key).b != nullptr;
    }
    size_type count(const Key& key) const { return contains(key) ? 1 : 0; }
    template <class K>
        requires transparent
    size_type count(const K& key) const {
        return contains(key) ? 1 : 0;
    }

    std::pair<iterator, iterator> equal_range(const Key& key) { return range_of(find(key)); }
    std::pair<const_iterator, const_iterator> equal_range(const Key& key) const { return range_of(find(key)); }
    template <class K>
        requires transparent
    std::pair<iterator, iterator> equal_range(const K& key) {
        return range_of(find(key));
    }
    template <class K>
        requires transparent
    std::pair<const_iterator, const_iterator> equal_range(const K& key) const {
        return range_of(find(key));
    }

    T& at(const Key& key) { return at_impl(key); }
    const T& at(const Key& key) const { return at_impl(key); }
    template <class K>
        requires transparent
    T& at(const K& key) {
        return at_impl(key);
    }
    template <class K>
        requires transparent
    const T& at(const K& key) const {
        return at_impl(key);
    }

    // --- insertion (may move entries: invalidates iterators) --------------------------
    T& operator[](const Key& key) { return try_emplace(key).first->second; }
    T& operator[](Key&& key) { return try_emplace(std::move(key)).first->second; }

    template <class... Args>
    std::pair<iterator, bool> try_emplace(const Key& key, Args&&... args) {
        write_guard guard(*this);
        return emplace_impl(key, make_with(std::piecewise_construct, std::forward_as_tuple(key),
                                           std::forward_as_tuple(std::forward<Args>(args)...)));
    }
    template <class... Args>
    std::pair<iterator, bool> try_emplace(Key&& key, Args&&... args) {
        write_guard guard(*this);
        return emplace_impl(key, make_with(std::piecewise_construct, std::forward_as_tuple(std::move(key)),
                                           std::forward_as_tuple(std::forward<Args>(args)...)));
    }
    template <class... Args>
    iterator try_emplace(const_iterator, const Key& key, Args&&... args) {
        return try_emplace(key, std::forward<Args>(args)...).first;
    }
    template <class... Args>
    iterator try_emplace(const_iterator, Key&& key, Args&&... args) {
        return try_emplace(std::move(key), std::forward<Args>(args)...).first;
    }

    template <class M>
    std::pair<iterator, bool> insert_or_assign(const Key& key, M&& obj) {
        write_guard guard(*this);
        return emplace_impl(key, make_with(key, std::forward<M>(obj)), [&](T& v) { v = std::forward<M>(obj); });
    }
    template <class M>
    std::pair<iterator, bool> insert_or_assign(Key&& key, M&& obj) {
        write_guard guard(*this);
        return emplace_impl(key, make_with(std::move(key), std::forward<M>(obj)),
                            [&](T& v) { v = std::forward<M>(obj); });
    }
    template <class M>
    iterator insert_or_assign(const_iterator, const Key& key, M&& obj) {
        return insert_or_assign(key, std::forward<M>(obj)).first;
    }
    template <class M>
    iterator insert_or_assign(const_iterator, Key&& key, M&& obj) {
        return insert_or_assign(std::move(key), std::forward<M>(obj)).first;
    }

    // emplace(key-ish, value-ish), emplace(pair-like), emplace(piecewise_construct, (k...), (v...)).
    // A key argument that is not a Key is first made into a temporary Key.
    template <class K, class V>
    std::pair<iterator, bool> emplace(K&& key, V&& value) {
        return emplace_with_key(std::forward<K>(key), std::forward_as_tuple(std::forward<V>(value)));
    }
    template <class P>
        requires requires(P&& p) {
            std::forward<P>(p).first;
            std::forward<P>(p).second;
        }
    std::pair<iterator, bool> emplace(P&& p) {
        return emplace_with_key(std::forward<P>(p).first, std::forward_as_tuple(std::forward<P>(p).second));
    }
    template <class... KArgs, class... VArgs>
    std::pair<iterator, bool> emplace(std::piecewise_construct_t, std::tuple<KArgs...> kargs,
                                      std::tuple<VArgs...> vargs) {
        if constexpr (sizeof...(KArgs) == 1 &&
                      (std::is_same_v<std::remove_cvref_t<KArgs>, Key> && ...)) {
            return emplace_with_key(std::get<0>(std::move(kargs)), std::move(vargs));
        } else {
            return emplace_with_key(std::make_from_tuple<Key>(std::move(kargs)), std::move(vargs));
        }
    }
    template <class... Args>
    iterator emplace_hint(const_iterator, Args&&... args) {
        return emplace(std::forward<Args>(args)...).first;
    }

    std::pair<iterator, bool> insert(const value_type& v) { return emplace(v); }
    std::pair<iterator, bool> insert(value_type&& v) { return emplace(std::move(v)); }
    template <class P>
        requires std::is_constructible_v<value_type, P&&>
    std::pair<iterator, bool> insert(P&& p) {
        return emplace(std::forward<P>(p));
    }
    // A node's entry goes in when its key is absent; else the node comes back
    // in insert_return_type::node, untouched.
    insert_return_type insert(node_type&& nh) {
        if (nh.empty()) return {end(), false, node_type()};
        assert(nh.get_allocator() == alloc_);
        auto& [key, value] = *nh.p_;
        write_guard guard(*this);
        const auto [it, inserted] = emplace_impl(
            key, make_with(std::piecewise_construct, std::forward_as_tuple(std::move(key)),
                           std::forward_as_tuple(std::move(value))));
        if (!inserted) return {it, false, std::move(nh)};
        nh.reset();
        return {it, true, node_type()};
    }
    iterator insert(const_iterator, node_type&& nh) { return insert(std::move(nh)).position; }
    iterator insert(const_iterator, const value_type& v) { return insert(v).first; }
    iterator insert(const_iterator, value_type&& v) { return insert(std::move(v)).first; }
    template <std::input_iterator It>
    void insert(It first, It last) {
        for (; first != last; ++first) emplace(*first);
    }
    void insert(std::initializer_list<value_type> init) { insert(init.begin(), init.end()); }

    // --- erasure --------------------------------------------------------------------
    // Moves nothing: invalidates only the erased entry; returns the next entry.
    iterator erase(const_iterator pos) {
        pos.check();
        write_guard guard(*this);
        position next = pos.p_;
        ++next.i;
        settle(next);
        bucket* head = (pos.p_.old ? h_.oldbuckets : h_.buckets) + pos.p_.idx;
        erase_slot(head, pos.p_.b, pos.p_.i);
        return iterator(this, next);
    }
    iterator erase(iterator pos) { return erase(const_iterator(pos)); }
    iterator erase(const_iterator first, const_iterator last) {
        while (first != last) first = erase(first);
        return iterator(this, last.p_);
    }
    // Erase by key: a write, so it evacuates like an insert (Go's mapdelete).
    SPANMAP_MAP_INLINE size_type erase(const Key& key) { return erase_key(key); }

    // Takes the entry out as a node (see node_type); like erase(iterator) it
    // moves nothing else. By key: an empty node when the key is absent.
    node_type extract(const_iterator pos) {
        pos.check();
        write_guard guard(*this);
        node_type nh(alloc_, entry_at(pos.p_.b, pos.p_.i));  // may throw: the map is unchanged
        erase_slot((pos.p_.old ? h_.oldbuckets : h_.buckets) + pos.p_.idx, pos.p_.b, pos.p_.i);
        return nh;
    }
    node_type extract(const Key& key) {
        const position p = find_position(key);
        return p.b ? extract(const_iterator(this, p)) : node_type();
    }

    // Moves in every entry of source whose key *this lacks (and erases it
    // from source); the others stay in source. Entries are moved, not
    // relinked (a slot lives in its bucket). If moving an entry throws, that
    // entry stays in source and the ones before it have moved.
    template <class H2, class E2>
    void merge(map<Key, T, H2, E2, Allocator>& source) {
        if (static_cast<void*>(&source) == static_cast<void*>(this)) return;
        for (auto it = source.begin(); it != source.end();) {
            value_type& e = *it;
            bool inserted;
            {
                write_guard guard(*this);
                inserted = emplace_impl(e.first, make_with(std::move_if_noexcept(const_cast<Key&>(e.first)),
                                                           std::move_if_noexcept(e.second)))
                               .second;
            }
            it = inserted ? source.erase(it) : std::next(it);
        }
    }
    template <class H2, class E2>
    void merge(map<Key, T, H2, E2, Allocator>&& source) {
        merge(source);
    }

    // Destroys every entry and keeps the current bucket array (as Go's clear).
    // O(buckets): it walks every chain to destroy entries and free overflow buckets.
    void clear() noexcept {
        write_guard guard(*this);
        clear_impl();
    }

    // --- buckets and growth ----------------------------------------------------------
    size_type bucket_count() const noexcept { return size_type{1} << h_.B; }
    float load_factor() const noexcept { return static_cast<float>(h_.count) / static_cast<float>(bucket_count()); }
    size_type max_bucket_count() const noexcept { return size_type{1} << (std::numeric_limits<size_type>::digits - 1); }
    static constexpr float max_load_factor() noexcept {
        return static_cast<float>(detail::load_factor_num) / static_cast<float>(detail::load_factor_den);
    }
    // The standard lets a map take a new maximum load factor as a hint
    // ([unord.req]: "may change ... using z as a hint"), and this one does not
    // take it: the growth trigger stays Go's 6.5 entries per bucket (an
    // overflow chain behind a bucket, not open addressing, so a load over 1
    // is the design, not a failure). Changing it would change the growth
    // points that the tests pin against Go's own map. To make room for n
    // entries up front, call reserve(n).
    void max_load_factor(float) noexcept {}

    // Room for at least `count` chains (and for size() entries); a growth
    // towards that size starts as reserve's does. It never shrinks the map
    // (shrink_to_fit does), and in the middle of a growth of a non-empty map
    // it does nothing.
    //
    // The bucket interface (bucket(key), bucket_size(n), local iterators) is
    // left out: a chain is visible in map_stats, and a local iterator would
    // have to span the old and the new array in the middle of a growth.
    void rehash(size_type count) {
        write_guard guard(*this);
        std::uint8_t target = detail::b_for_count(h_.count);
        while (target < std::numeric_limits<size_type>::digits - 1 && (size_type{1} << target) < count) ++target;
        reserve_buckets(target);
    }

    // Go's make(map, n): room for n entries without a growth. On an empty map
    // this replaces the array (cleared up front); on a non-empty map it starts
    // a growth to that size (doubling is incremental and lazy as for inserts;
    // more than doubling clears the new array up front). On a non-empty map
    // in the middle of a growth it does nothing.
    void reserve(size_type n) {
        write_guard guard(*this);
        reserve_impl(n);
    }

    // Starts an incremental regrow to the smallest B for size() (a same-size
    // regrow when B is already minimal but overflow buckets are in use); the
    // writes that follow finish it and hand the old array back to the
    // allocator. An empty map releases all its memory at once. On a non-empty
    // map in the middle of a growth it does nothing.
    void shrink_to_fit() {
        write_guard guard(*this);
        if (h_.count == 0) {
            release_all();  // nothing to evacuate, even mid-growth
            return;
        }
        if (growing()) return;
        const std::uint8_t target = detail::b_for_count(h_.count);
        if (target < h_.B) {
            hash_grow(target, false);
        } else if (target == h_.B && h_.overflow_in_use > 0) {
            hash_grow(target, true);
        }
    }

    // --- observers ------------------------------------------------------------------
    allocator_type get_allocator() const noexcept { return alloc_; }
    hasher hash_function() const { return hash_; }
    key_equal key_eq() const { return eq_; }

    map_stats stats() const noexcept;

    // Walks every chain and checks the map's invariants: count == live slots;
    // each live slot's tophash and chain index agree with its key's hash; in
    // every chain the empty_rest slots form the tail and the last slot before
    // them is not empty_one; an evacuated old bucket has only evacuation
    // markers and no overflow; every old bucket below nevacuate is evacuated;
    // overflow_in_use == overflow buckets linked; bucket_mask == 2^B - 1 and
    // the growth limits are B's. Returns true, or false with
    // the first violation written into why. Does not allocate.
    bool check_invariants(char* why = nullptr, std::size_t why_len = 0) const;

    friend bool operator==(const map& a, const map& b) {
        if (a.size() != b.size()) return false;
        for (auto&& [k, v] : a) {
            const position p = b.find_position(k);
            if (!p.b || !(value_at(p.b, p.i) == v)) return false;
        }
        return true;
    }

private:
    // --- slot access ------------------------------------------------------------------
    // tophash(b), overflow(b), slot_at(b, i), init_bucket(b) and evacuated(b)
    // are detail's (found by argument-dependent lookup on bucket*).
    static value_type& entry_at(bucket* b, unsigned i) noexcept {
        if constexpr (indirect) {
            return **std::launder(static_cast<value_type**>(slot_at(b, i)));
        } else {
            return *std::launder(static_cast<value_type*>(slot_at(b, i)));
        }
    }
    static const Key& key_at(bucket* b, unsigned i) noexcept { return entry_at(b, i).first; }
    static T& value_at(bucket* b, unsigned i) noexcept { return entry_at(b, i).second; }

    static constexpr std::size_t mask(std::uint8_t B) noexcept { return (std::size_t{1} << B) - 1; }
    // B and what is derived from it, kept together.
    void set_B(std::uint8_t B) noexcept {
        h_.B = B;
        h_.bucket_mask = mask(B);
        h_.load_limit = detail::load_limit(B);
        h_.overflow_limit = detail::overflow_limit(B);
    }
    bool growing() const noexcept { return h_.oldbuckets != nullptr; }

    // Has new bucket j been written since its array was allocated? (See
    // "Growth": a lazily initialised bucket waits for its old bucket.)
    bool initialised(std::size_t j) const noexcept {
        return !h_.lazy || evacuated(h_.oldbuckets + (j & mask(h_.oldB)));
    }

    template <class K>
    std::uint64_t hash_of(const K& key) const noexcept(detail::nothrow_hasher<Hash, K>()) {
        return hash_with(key, h_.seed);
    }
    // The seed as an argument: evacuation keeps it in a register while its
    // stores into buckets (which the compiler cannot tell from h_) go on.
    template <class K>
    std::uint64_t hash_with(const K& key, std::uint64_t seed) const noexcept(detail::nothrow_hasher<Hash, K>()) {
        if constexpr (detail::seeded_hasher<Hash, K>) {
            return static_cast<std::uint64_t>(hash_(key, seed));
        } else {
            return detail::hash_word(static_cast<std::uint64_t>(hash_(key)), seed);
        }
    }
    template <class K>
    bool equal(const K& key, const Key& stored) const {
        if constexpr (std::is_same_v<K, Key> || requires { typename KeyEqual::is_transparent; }) {
            return eq_(key, stored);
        } else {
            return key == stored;  // std::equal_to<Key> with a transparent hash: compare as std::equal_to<> would
        }
    }

    // --- element construction through the allocator --------------------------------------
    template <class U, class... Args>
    void construct(U* p, Args&&... args) {
        rebind<U> a(alloc_);
        rebind_traits<U>::construct(a, p, std::forward<Args>(args)...);
    }
    // A callable that constructs the entry at a given address from args (kept
    // by reference: it runs within the full expression that made it).
    template <class... Args>
    auto make_with(Args&&... args) {
        return [this, &args...](value_type* p) { construct(p, std::forward<Args>(args)...); };
    }

    // Builds the entry of a slot: in place, or (indirect) in a separate
    // allocation whose pointer goes into the slot. On a throw nothing is left.
    template <class Make>
    void make_entry(void* slot, Make& make) {
        detail::unpoison(slot, sizeof(slot_type));
        if constexpr (detail::asan) {
            try {
                make_entry_unpoisoned(slot, make);
            } catch (...) {
                detail::poison(slot, sizeof(slot_type));
                throw;
            }
        } else {
            make_entry_unpoisoned(slot, make);
        }
    }
    template <class Make>
    void make_entry_unpoisoned(void* slot, Make& make) {
        if constexpr (indirect) {
            rebind<value_type> a(alloc_);
            value_type* p = rebind_traits<value_type>::allocate(a, 1);
            try {
                make(p);
            } catch (...) {
                rebind_traits<value_type>::deallocate(a, p, 1);
                throw;
            }
            ::new (slot) value_type*(p);
        } else {
            make(static_cast<value_type*>(slot));
        }
    }
    void destroy_entry(bucket* b, unsigned i) noexcept {
        rebind<value_type> a(alloc_);
        value_type* p = &entry_at(b, i);
        rebind_traits<value_type>::destroy(a, p);
        if constexpr (indirect) rebind_traits<value_type>::deallocate(a, p, 1);
        detail::poison(slot_at(b, i), sizeof(slot_type));
    }
    // Moves the entry of slot `from` to the empty slot `to` (evacuation).
    //
    // A slot holds a real std::pair<const Key, T>, made by the allocator's
    // construct, so that *it, std::launder and the lifetime rules all see the
    // object the user sees. Its key is const, and a pair's own move
    // constructor would copy it (a string key: an allocation per entry moved,
    // and a copy may throw). So the new pair is built from the old key cast
    // to Key&& and the old value moved, and the old pair is destroyed right
    // after: the key is moved from in the last moment of its lifetime, the
    // one liberty taken — the same one std::map's node_handle::key() takes,
    // and no liberty at all for the trivially copyable keys most maps have.
    // The alternatives are less sound: a mutable std::pair<Key, T> handed out
    // through a cast to std::pair<const Key, T>& (libstdc++'s node handles,
    // Abseil's slot union) reads an object of one type through a reference to
    // another, which no rule allows, on every access rather than on a move.
    static void relocate_entry(void* from, void* to) noexcept {
        detail::unpoison(to, sizeof(slot_type));
        relocate_entry_unpoisoned(from, to);
        detail::poison(from, sizeof(slot_type));
    }
    static void relocate_entry_unpoisoned(void* from, void* to) noexcept {
        if constexpr (indirect) {
            ::new (to) value_type*(*std::launder(static_cast<value_type**>(from)));
        } else {
            value_type* src = std::launder(static_cast<value_type*>(from));
            std::construct_at(static_cast<value_type*>(to), std::piecewise_construct,
                              std::forward_as_tuple(std::move(const_cast<Key&>(src->first))),
                              std::forward_as_tuple(std::move(src->second)));
            std::destroy_at(src);
        }
    }

    // --- bucket memory ------------------------------------------------------------------
    // Buckets in an array for 2^B chains: from B = 4 on, 2^(B-4) more for the
    // first overflow buckets, rounded up to what the allocator hands out. Only
    // an allocator with good_size (detail::sizing_allocator, e.g. the arena's)
    // says what that is; for any other we cannot know and do not round.
    std::size_t array_buckets(std::uint8_t B) const noexcept {
        std::size_t n = std::size_t{1} << B;
        if (B >= 4) {
            n += std::size_t{1} << (B - 4);
            n = rounded_buckets(n);
        }
        return n;
    }
    std::size_t rounded_buckets(std::size_t n) const noexcept {
        if constexpr (detail::sizing_allocator<rebind<bucket>>) {
            const rebind<bucket> a(alloc_);
            return std::max<std::size_t>(n, a.good_size(n));
        } else {
            return n;
        }
    }
    // Bytes the allocator sets aside for n buckets (for stats): its size
    // class, which may exceed the whole buckets that fit in it.
    std::size_t rounded_bytes(std::size_t n) const noexcept {
        if constexpr (detail::sizing_allocator<rebind<unsigned char>>) {
            const rebind<unsigned char> a(alloc_);
            return std::max<std::size_t>(n * sizeof(bucket), a.good_size(n * sizeof(bucket)));
        } else {
            return n * sizeof(bucket);
        }
    }

    // An array of n buckets whose first `heads` buckets read as empty chains:
    // their tophash and overflow words are written here (not their slots,
    // which nobody reads before writing). Zeroed memory would do as well and
    // is free when an arena's pages are fresh, but the map then reads each
    // bucket before it writes it: the read maps the kernel's shared zero page
    // and the write faults a second time to replace it. Written up front,
    // each page faults once (reserve(1M) then 1M u64 inserts: 60 ns an
    // insert from fresh zeroed pages, 30 written). The array goes back
    // through the same allocator object's deallocate.
    bucket* allocate_array(std::size_t n, std::size_t heads) {
        rebind<bucket> a(alloc_);
        bucket* p = bucket_traits::allocate(a, n);
        for (std::size_t j = 0; j < heads; ++j) init_bucket(p + j);
        return p;
    }
    // Memory goes back unpoisoned: the allocator may write into it.
    void deallocate_array(bucket* p, std::size_t n) noexcept {
        detail::unpoison(p, n * sizeof(bucket));
        rebind<bucket> a(alloc_);
        bucket_traits::deallocate(a, p, n);
    }
    bucket* allocate_overflow() {
        rebind<bucket> a(alloc_);
        bucket* p = bucket_traits::allocate(a, 1);
        ++h_.overflow_owned;
        return p;
    }
    void free_overflow(bucket* b) noexcept {
        detail::unpoison(b, sizeof(bucket));
        rebind<bucket> a(alloc_);
        bucket_traits::deallocate(a, b, 1);
        --h_.overflow_owned;
    }
    static bool in_array(const bucket* b, const bucket* array, std::size_t n) noexcept {
        return std::less_equal<>()(array, b) && std::less<>()(b, array + n);
    }

    // Go's incrnoverflow: exact below B = 16; from there on counted with
    // probability 2^-(B-15), so the threshold 2^15 still means about as many
    // overflow buckets as buckets.
    void incr_noverflow() noexcept {
        if (h_.B < 16) {
            ++h_.noverflow;
            return;
        }
        const std::uint64_t m = (std::uint64_t{1} << (h_.B - 15)) - 1;
        if ((detail::thread_random() & m) == 0) ++h_.noverflow;
    }

    // Links a cleared overflow bucket behind b: a preallocated one from the
    // array's tail, else a spare, else a new allocation (the only step that can fail).
    SPANMAP_MAP_NOINLINE bucket* new_overflow(bucket* b) {
        bucket* ovf;
        if (h_.next_overflow < h_.nalloc) {
            ovf = h_.buckets + h_.next_overflow++;
        } else if (h_.spares) {
            ovf = h_.spares;
            h_.spares = overflow(ovf);
            --h_.nspares;
        } else {
            ovf = allocate_overflow();
        }
        init_bucket(ovf);
        overflow(b) = ovf;
        ++h_.overflow_in_use;
        incr_noverflow();
        return ovf;
    }
    // Makes sure `need` overflow buckets can be linked without allocating.
    void reserve_overflow(std::size_t need) {
        while ((h_.nalloc - h_.next_overflow) + h_.nspares < need) {
            bucket* s = allocate_overflow();
            ::new (static_cast<void*>(s->raw + bucket::overflow_offset)) bucket*(h_.spares);
            h_.spares = s;
            ++h_.nspares;
        }
    }
    void release_spares() noexcept {
        while (h_.spares) {
            bucket* next = overflow(h_.spares);
            free_overflow(h_.spares);
            h_.spares = next;
        }
        h_.nspares = 0;
    }

    // --- growth (Go's hashGrow, growWork, evacuate) ------------------------------------------
    // Starts evacuating the current array into a new one of 2^newB chains.
    // lazy (doubling or same size only): the new array is not cleared; each
    // new bucket is initialised when its old bucket is evacuated.
    void hash_grow(std::uint8_t newB, bool lazy) {
        assert(!growing());
        finish_retiring();  // before the new array is allocated: its pages may serve it
        assert(!lazy || newB == h_.B || newB == h_.B + 1);
        const std::size_t n = array_buckets(newB);
        bucket* nb = allocate_array(n, lazy ? 0 : std::size_t{1} << newB);  // may throw: nothing changed yet
        h_.oldbuckets = h_.buckets;
        h_.old_nalloc = h_.nalloc;
        h_.oldB = h_.B;
        h_.buckets = nb;
        h_.nalloc = n;
        h_.next_overflow = std::size_t{1} << newB;
        set_B(newB);
        h_.nevacuate = 0;
        h_.nevacuated = 0;
        h_.noverflow = 0;
        h_.lazy = lazy;
    }

    // Go's growWork, with detail::evacuations_per_write old buckets in
    // order where Go takes one. The key's bucket is mostly found evacuated
    // already (and not the mark to advance), without the call to evacuate;
    // the mark is moved past evacuated ones (advance_evacuation_mark).
    void grow_work(std::uint64_t hash) {
        evacuate_if_due(static_cast<std::size_t>(hash) & mask(h_.oldB));
        for (std::size_t k = 0; k < detail::evacuations_per_write && growing(); ++k) evacuate_if_due(h_.nevacuate);
    }
    SPANMAP_MAP_INLINE void evacuate_if_due(std::size_t o) {
        if (!evacuated(h_.oldbuckets + o) || o == h_.nevacuate) evacuate(o);
    }

    // A moving write position in a destination chain.
    struct evac_dst {
        bucket* b = nullptr;
        unsigned i = 0;
    };
    // The next empty slot at or after d; links an overflow bucket (from
    // reserve_overflow's stock: no allocation) when the chain is full.
    std::pair<bucket*, unsigned> take_slot(evac_dst& d) {
        for (;;) {
            const std::uint8_t* th = tophash(d.b);
            for (; d.i < detail::bucket_cnt; ++d.i) {
                if (th[d.i] <= detail::empty_one) return {d.b, d.i++};
            }
            bucket* next = overflow(d.b);
            d.b = next ? next : new_overflow(d.b);
            d.i = 0;
        }
    }

    // Hashes of the live entries of an old chain, computed before anything
    // moves when the hash may throw (so a throw leaves the chain untouched),
    // else on demand.
    class evac_hashes {
    public:
        evac_hashes(map& m, bucket* chain, std::size_t live) : m_(m), seed_(m.h_.seed) {
            if constexpr (!hash_nothrow) {
                if (live == 0) return;  // nothing to hash (or hashes not needed)
                if (live > std::size(inline_)) {
                    rebind<std::uint64_t> a(m.alloc_);
                    heap_ = rebind_traits<std::uint64_t>::allocate(a, live);
                    cap_ = live;
                }
                std::uint64_t* out = data();
                try {
                    for (bucket* b = chain; b; b = overflow(b)) {
                        for (unsigned i = 0; i < detail::bucket_cnt; ++i) {
                            if (detail::is_live(tophash(b)[i])) *out++ = m.hash_of(key_at(b, i));
                        }
                    }
                } catch (...) {
                    release();
                    throw;
                }
            } else {
                (void)chain;
                (void)live;
            }
        }
        ~evac_hashes() { release(); }
        evac_hashes(const evac_hashes&) = delete;
        evac_hashes& operator=(const evac_hashes&) = delete;

        std::uint64_t next(const Key& key) noexcept {
            if constexpr (hash_nothrow) {
                return m_.hash_with(key, seed_);
            } else {
                (void)key;
                return data()[used_++];
            }
        }

    private:
        std::uint64_t* data() noexcept { return heap_ ? heap_ : inline_; }
        void release() noexcept {
            if (heap_) {
                rebind<std::uint64_t> a(m_.alloc_);
                rebind_traits<std::uint64_t>::deallocate(a, heap_, cap_);
                heap_ = nullptr;
            }
        }
        map& m_;
        const std::uint64_t seed_;
        std::uint64_t inline_[hash_nothrow ? 1 : 64];
        std::uint64_t* heap_ = nullptr;
        std::size_t cap_ = 0;
        std::size_t used_ = 0;
    };

    // evacuate's moves when every destination starts empty and there are at
    // most two (a doubling: X, or Y when the hash has bit oldB, ybit, set;
    // a same-size regrow: X only). A destination's next free slot is then a
    // counter, and the old bucket's markers are written at once when its
    // entries have moved: evacuated_x or _y where an entry was, else
    // evacuated_empty. The destinations' overflow buckets are in stock
    // (reserve_overflow), so nothing here allocates.
    template <bool Up>
    void move_chain_to_fresh(bucket* ob, evac_dst (&xy)[2], std::size_t ybit, evac_hashes& hashes) {
        for (bucket* b = ob; b; b = overflow(b)) {
            std::uint8_t* th = tophash(b);
            // The markers are gathered in a register and stored as one word:
            // built in memory byte by byte, the word's load waited for the
            // byte stores (a failed store forward) once per bucket; growing
            // to 100k u64 keys took 19.2 ns an insert, now 18.0.
            std::uint64_t marks = detail::tophash_word::lsb * detail::evacuated_empty;
            for (auto m = detail::tophash_word::load(th).live(); m; m &= m - 1) {
                const unsigned i = detail::tophash_word::first(m);
                unsigned use_y = 0;
                if constexpr (Up) use_y = (hashes.next(key_at(b, i)) & ybit) != 0;
                marks ^= std::uint64_t{(detail::evacuated_x + use_y) ^ detail::evacuated_empty} << (8 * i);
                evac_dst& d = xy[use_y];
                if (d.i == detail::bucket_cnt) [[unlikely]] {
                    d.b = new_overflow(d.b);
                    d.i = 0;
                }
                relocate_entry(slot_at(b, i), slot_at(d.b, d.i));
                tophash(d.b)[d.i++] = th[i];
            }
            if constexpr (std::endian::native == std::endian::big) marks = __builtin_bswap64(marks);
            std::memcpy(th, &marks, sizeof marks);
        }
    }
    // The other moves: a shrink (several old buckets pour into one new
    // bucket, which may hold entries already) or a growth by more than
    // doubling (ways destinations; spread: the hash bits between oldB and B).
    // Each entry goes to the first free slot of its destination's chain.
    void move_chain(bucket* ob, std::size_t o, std::size_t base, std::size_t spread, std::size_t ways,
                    evac_hashes& hashes) {
        evac_dst xy[2];  // one running position per destination when there are at most two
        for (bucket* b = ob; b; b = overflow(b)) {
            std::uint8_t* th = tophash(b);
            for (unsigned i = 0; i < detail::bucket_cnt; ++i) {
                const std::uint8_t top = th[i];
                if (!detail::is_live(top)) {
                    th[i] = detail::evacuated_empty;
                    continue;
                }
                // A key whose hash is not stable (NaN) keeps to o's
                // destinations anyway: the high bits come from the hash,
                // the low bits are o's.
                const std::size_t j = spread ? base | (static_cast<std::size_t>(hashes.next(key_at(b, i))) & spread)
                                             : base;
                const unsigned use_y = j != o;
                th[i] = static_cast<std::uint8_t>(detail::evacuated_x + use_y);
                evac_dst single;
                evac_dst& d = ways <= 2 ? xy[use_y] : single;
                if (!d.b) d.b = h_.buckets + j;
                const auto [db, di] = take_slot(d);
                relocate_entry(slot_at(b, i), slot_at(db, di));
                tophash(db)[di] = top;
            }
        }
    }

    // Moves old bucket o's chain into the new array (Go's evacuate). Growing:
    // entry goes to o + (the hash bits between oldB and B) << oldB; same size:
    // to o; shrinking: to o mod 2^B. Everything that can throw happens before
    // the first entry moves.
    SPANMAP_MAP_NOINLINE void evacuate(std::size_t o) {
        bucket* const ob = h_.oldbuckets + o;
        if (!evacuated(ob)) {
            entries_moved();
            const bool up = h_.B > h_.oldB;
            const bool fresh = h_.B >= h_.oldB;  // every destination has ob as its only source
            std::size_t chain = 0;
            std::size_t live = 0;
            for (bucket* b = ob; b; b = overflow(b)) {
                ++chain;
                if constexpr (!hash_nothrow) {
                    for (unsigned i = 0; i < detail::bucket_cnt; ++i) live += detail::is_live(tophash(b)[i]);
                }
            }
            // Destinations need at most chain-1 overflow buckets when they
            // start empty (ceil(n/8)-1 per non-empty destination, n <= 8*chain
            // in all), at most chain when the one destination may be full.
            reserve_overflow(fresh ? chain - 1 : chain);
            evac_hashes hashes(*this, ob, up ? live : 0);

            const std::size_t ways = up ? std::size_t{1} << (h_.B - h_.oldB) : 1;
            if (h_.lazy) {
                for (std::size_t k = 0; k < ways; ++k) init_bucket(h_.buckets + (o + (k << h_.oldB)));
            }
            const std::size_t base = up ? o : (o & mask(h_.B));
            if (fresh && ways <= 2) {
                const std::size_t ybit = up ? std::size_t{1} << h_.oldB : 0;
                evac_dst xy[2] = {{h_.buckets + base, 0}, {up ? h_.buckets + (base | ybit) : nullptr, 0}};
                if (up) {
                    move_chain_to_fresh<true>(ob, xy, ybit, hashes);
                } else {
                    move_chain_to_fresh<false>(ob, xy, 0, hashes);
                }
            } else {
                move_chain(ob, o, base, up ? mask(h_.B) & ~mask(h_.oldB) : 0, ways, hashes);
            }
            // The old chain is empty now; its overflow buckets can go (those in
            // the old array's preallocated tail go with the array).
            bucket* b = overflow(ob);
            overflow(ob) = nullptr;
            while (b) {
                bucket* next = overflow(b);
                --h_.overflow_in_use;
                if (!in_array(b, h_.oldbuckets, h_.old_nalloc)) free_overflow(b);
                b = next;
            }
            ++h_.nevacuated;
        }
        if (o == h_.nevacuate) advance_evacuation_mark();
    }

    // Go's advanceEvacuationMark: nevacuate passes evacuated buckets (at most
    // 1024 per call, to stay O(1)); at the end the old array goes back.
    void advance_evacuation_mark() noexcept {
        ++h_.nevacuate;
        const std::size_t nold = std::size_t{1} << h_.oldB;
        const std::size_t stop = std::min(h_.nevacuate + 1024, nold);
        while (h_.nevacuate != stop && evacuated(h_.oldbuckets + h_.nevacuate)) ++h_.nevacuate;
        if (h_.nevacuate == nold) end_growth();
    }

    // The one end of a growth, whether evacuation finished or the map was
    // cleared: the old array goes back to the allocator at once, with the
    // spare overflow buckets set aside for evacuations. Nothing of this map
    // will ask for an array of that size again (it only grows until it is
    // cleared), so when the array is big (detail::release_min_bytes) an
    // allocator that can is told to return its pages to the OS now:
    // otherwise the map's resident set stays half as large again as its
    // array until the allocator's decay period passes. A smaller array is
    // freed as usual: it is the size the next small map asks for, and the
    // allocator keeps it for that request.
    //
    // Returning a big array's pages in one call stalls the insert that ends
    // the growth: 8 ms for the 150 MiB array of a map growing to 8M keys, the
    // longest pause that growth had (the kernel's work grows with the range,
    // and past 33 pages x86 Linux flushes the whole TLB). So from
    // detail::retire_min_bytes on, an allocator that can cut a live block
    // (spanmap::allocator's shrink_release) is given the array back a piece
    // at a time instead: it becomes `retiring`, and each
    // insert of a new key cuts the next piece off its tail (retire_step), the
    // last one freeing what is left. A map that stops inserting keeps the rest
    // until it grows again, is cleared or destroyed (map_stats::retiring_bytes).
    void end_growth() noexcept {
        const std::size_t old_bytes = h_.old_nalloc * sizeof(bucket);
        if constexpr (detail::releasing_allocator<rebind<bucket>>) {
            if (old_bytes >= detail::release_min_bytes) {
                bool retire = false;
                if constexpr (detail::shrinking_allocator<rebind<bucket>>) retire = old_bytes >= detail::retire_min_bytes;
                if (retire) {
                    finish_retiring();  // an earlier one (a growth cannot end before it is done)
                    h_.retiring = h_.oldbuckets;
                    h_.retiring_nalloc = h_.old_nalloc;
                    // Sends every insert of a new key to prepare_insert_slow,
                    // which does the work and puts the limit back at the end.
                    h_.overflow_limit = 0;
                } else {
                    detail::unpoison(h_.oldbuckets, old_bytes);
                    rebind<bucket> a(alloc_);
                    a.deallocate_release(h_.oldbuckets, h_.old_nalloc);
                }
            } else {
                deallocate_array(h_.oldbuckets, h_.old_nalloc);
            }
        } else {
            deallocate_array(h_.oldbuckets, h_.old_nalloc);
        }
        h_.oldbuckets = nullptr;
        h_.old_nalloc = 0;
        h_.oldB = 0;
        h_.nevacuate = 0;
        h_.nevacuated = 0;
        h_.lazy = false;
        release_spares();
    }

    // One piece of the retiring array back to the OS: its tail cut by
    // detail::retire_piece_bytes. The last piece frees the array.
    void retire_step() noexcept {
        constexpr std::size_t piece = std::max<std::size_t>(1, detail::retire_piece_bytes / sizeof(bucket));
        if (h_.retiring_nalloc <= piece) {
            finish_retiring();
            return;
        }
        h_.retiring_nalloc -= piece;
        detail::unpoison(h_.retiring + h_.retiring_nalloc, piece * sizeof(bucket));
        rebind<bucket> a(alloc_);
        a.shrink_release(h_.retiring, h_.retiring_nalloc);
    }
    void finish_retiring() noexcept {
        if constexpr (detail::shrinking_allocator<rebind<bucket>>) {
            if (!h_.retiring) return;
            detail::unpoison(h_.retiring, h_.retiring_nalloc * sizeof(bucket));
            rebind<bucket> a(alloc_);
            a.deallocate_release(h_.retiring, h_.retiring_nalloc);
            h_.retiring = nullptr;
            h_.retiring_nalloc = 0;
            h_.overflow_limit = detail::overflow_limit(h_.B);
        }
    }

    // --- insert (Go's mapassign) ------------------------------------------------------------------
    // Finds key, or an empty slot for it (starting a growth when the insert
    // would overload the map). The slot is not published: the caller
    // constructs the entry and then writes tophash and count.
    //
    // Most inserts find the map not growing and not due to grow: one probe,
    // two compares against the limits kept beside B, and at worst an
    // overflow bucket to link. That much is inlined; the first bucket,
    // evacuation work and the start of a growth go through
    // prepare_insert_slow, which probes again when it had to change the map.
    template <class K>
    SPANMAP_MAP_INLINE std::pair<position, bool> prepare_insert(const K& key, std::uint64_t hash) {
        if (growing() || !h_.buckets) [[unlikely]] return prepare_insert_slow(key, hash);
        const std::size_t idx = static_cast<std::size_t>(hash) & h_.bucket_mask;
        const probe_result r = probe<true>(h_.buckets + idx, detail::tophash_of(hash), key);
        if (r.b) return {position{r.b, idx, r.i, false}, true};
        if (h_.count >= h_.load_limit || h_.noverflow >= h_.overflow_limit) [[unlikely]]
            return prepare_insert_slow(key, hash);
        if (!r.empty) [[unlikely]] return {position{new_overflow(r.last), idx, 0, false}, false};
        return {position{r.empty, idx, r.empty_i, false}, false};
    }
    template <class K>
    SPANMAP_MAP_NOINLINE std::pair<position, bool> prepare_insert_slow(const K& key, std::uint64_t hash) {
        if (!h_.buckets) {
            // First insert: one bucket (Go's makemap_small allocates lazily too).
            h_.buckets = allocate_array(1, 1);
            h_.nalloc = 1;
            h_.next_overflow = 1;
        }
        if constexpr (detail::shrinking_allocator<rebind<bucket>>) {
            if (h_.retiring) retire_step();
        }
        const std::uint8_t top = detail::tophash_of(hash);
        for (;;) {
            if (growing()) grow_work(hash);
            const std::size_t idx = static_cast<std::size_t>(hash) & h_.bucket_mask;
            const probe_result r = probe<true>(h_.buckets + idx, top, key);
            if (r.b) return {position{r.b, idx, r.i, false}, true};
            bucket* ins = r.empty;  // the chain's first empty slot
            unsigned ins_i = r.empty_i;
            if (!growing()) {
                const bool bigger = h_.count >= h_.load_limit;  // count + 1 > load_limit: over the load factor
                // The limit itself, not h_.overflow_limit: that is 0 while an array retires.
                if (bigger || h_.noverflow >= detail::overflow_limit(h_.B)) {
                    hash_grow(bigger ? static_cast<std::uint8_t>(h_.B + 1) : h_.B, true);
                    continue;  // the key's place has changed: look again
                }
            }
            if (!ins) {
                ins = new_overflow(r.last);
                ins_i = 0;
            }
            return {position{ins, idx, ins_i, false}, false};
        }
    }

    struct no_assign {
        void operator()(T&) const noexcept {}
    };

    // The one insert path. make(p) constructs the entry at p; on_found(value)
    // runs when the key is present. The caller holds the write guard.
    template <class K, class Make, class OnFound = no_assign>
    std::pair<iterator, bool> emplace_impl(const K& key, Make&& make, OnFound&& on_found = {}) {
        const std::uint64_t hash = hash_of(key);
        const auto [p, found] = prepare_insert(key, hash);
        if (found) {
            on_found(value_at(p.b, p.i));
            return {iterator(this, p), false};
        }
        make_entry(slot_at(p.b, p.i), make);
        tophash(p.b)[p.i] = detail::tophash_of(hash);
        ++h_.count;
        return {iterator(this, p), true};
    }

    // emplace with a key argument: a Key is used as is; anything else first
    // becomes a temporary Key (before the write starts).
    // vargs: a tuple of the value's constructor arguments.
    template <class KArg, class VArgs>
    std::pair<iterator, bool> emplace_with_key(KArg&& karg, VArgs&& vargs) {
        if constexpr (std::is_same_v<std::remove_cvref_t<KArg>, Key>) {
            write_guard guard(*this);
            return emplace_impl(karg, make_with(std::piecewise_construct, std::forward_as_tuple(std::forward<KArg>(karg)),
                                                std::forward<VArgs>(vargs)));
        } else {
            Key key(std::forward<KArg>(karg));
            write_guard guard(*this);
            return emplace_impl(key, make_with(std::piecewise_construct, std::forward_as_tuple(std::move(key)),
                                               std::forward<VArgs>(vargs)));
        }
    }

    void move_elements_from(map& o) {
        reserve_impl(o.size());
        for (value_type& kv : o) {
            emplace_impl(kv.first, make_with(std::piecewise_construct,
                                             std::forward_as_tuple(std::move(const_cast<Key&>(kv.first))),
                                             std::forward_as_tuple(std::move(kv.second))));
        }
        o.clear();
    }

    // --- lookup (Go's mapaccess) -------------------------------------------------------------------
    template <class K>
    SPANMAP_MAP_INLINE position find_position(const K& key) const {
        if (h_.count == 0) return {};
        if (flags_ & hash_writing) detail::fatal("concurrent map read and map write");
        const std::uint64_t hash = hash_of(key);
        position p{nullptr, static_cast<std::size_t>(hash) & h_.bucket_mask, 0, false};
        bucket* b = h_.buckets + p.idx;
        if (growing()) {
            const std::size_t o = static_cast<std::size_t>(hash) & mask(h_.oldB);
            if (!evacuated(h_.oldbuckets + o)) {
                b = h_.oldbuckets + o;
                p.idx = o;
                p.old = true;
            }
        }
        const probe_result r = probe<false>(b, detail::tophash_of(hash), key);
        if (!r.b) return {};
        p.b = r.b;
        p.i = r.i;
        return p;
    }

    // The one probe, for find, insert and erase: walks the chain from head
    // for key (top: its tophash byte), testing a bucket's 8 tophash bytes at
    // once (detail::tophash_word), so a bucket without the byte is passed
    // without touching a key, and stopping at an empty_rest (no live slot
    // follows one). The overflow word, in the bucket's last cache line, is
    // read only when the bucket neither holds the key nor ends the chain:
    // reading it earlier (to prefetch the next bucket) costs a load and a
    // branch on every probe of a full bucket, and a hit rarely needs it. The
    // head bucket's slot lines are prefetched with its tophash line
    // (detail::prefetch_slots): a hit, and the insert or erase that follows
    // one, needs one of them next.
    // FindEmpty (insert) also notes the chain's first empty slot and its
    // last bucket.
    struct probe_result {
        bucket* b = nullptr;  // the key's slot (b == nullptr: absent)
        unsigned i = 0;
        bucket* empty = nullptr;  // FindEmpty: the first empty slot
        unsigned empty_i = 0;
        bucket* last = nullptr;  // FindEmpty: the last bucket walked
    };
    // head is never null: every caller has an array (a map with entries, or
    // prepare_insert's test), and saying so spares a test per probe.
    template <bool FindEmpty, class K>
    SPANMAP_MAP_INLINE probe_result probe(bucket* head, std::uint8_t top, const K& key) const {
        probe_result r;
        bucket* b = head;
        detail::prefetch_slots(head);
        do {
            const auto th = detail::tophash_word::load(tophash(b));
            for (auto m = th.matching(top); m; m &= m - 1) {
                const unsigned i = detail::tophash_word::first(m);
                if (equal(key, key_at(b, i))) {
                    r.b = b;
                    r.i = i;
                    return r;
                }
            }
            if constexpr (FindEmpty) {
                r.last = b;
                if (!r.empty) {
                    if (const auto e = th.empty()) {
                        r.empty = b;
                        r.empty_i = detail::tophash_word::first(e);
                    }
                }
            }
            if (th.has_empty_rest()) break;
        } while ((b = overflow(b)) != nullptr);
        return r;
    }

    template <class It>
    std::pair<It, It> range_of(It it) const noexcept {
        return {it, it.p_.b ? std::next(it) : it};
    }

    template <class K>
    T& at_impl(const K& key) const {
        const position p = find_position(key);
        if (!p.b) throw std::out_of_range("spanmap::map::at: key not found");
        return value_at(p.b, p.i);
    }

    // --- iteration order: unevacuated old chains, then the new array's chains ---------------------
    // p.b := head of the first chain at or after p.idx that may hold entries
    // (old array first, while growing); p.b = nullptr past the last.
    void seek_chain(position& p) const noexcept {
        if (p.old) {
            for (const std::size_t n = std::size_t{1} << h_.oldB; p.idx < n; ++p.idx) {
                if (!evacuated(h_.oldbuckets + p.idx)) {
                    p.b = h_.oldbuckets + p.idx;
                    p.i = 0;
                    return;
                }
            }
            p.old = false;
            p.idx = 0;
        }
        if (h_.buckets) {
            for (const std::size_t n = std::size_t{1} << h_.B; p.idx < n; ++p.idx) {
                if (initialised(p.idx)) {
                    p.b = h_.buckets + p.idx;
                    p.i = 0;
                    return;
                }
            }
        }
        p = position{};
    }
    // Moves p to the first live slot at or after it (end: p.b == nullptr).
    void settle(position& p) const noexcept {
        while (p.b) {
            const std::uint8_t* th = tophash(p.b);
            for (; p.i < detail::bucket_cnt; ++p.i) {
                if (detail::is_live(th[p.i])) return;
                if (th[p.i] == detail::empty_rest) break;  // the rest of the chain is empty
            }
            bucket* next = p.i < detail::bucket_cnt ? nullptr : overflow(p.b);
            if (next) {
                p.b = next;
                p.i = 0;
            } else {
                ++p.idx;
                seek_chain(p);
            }
        }
    }
    position first_position() const noexcept {
        if (h_.count == 0) return {};
        position p{nullptr, 0, 0, growing()};
        seek_chain(p);
        settle(p);
        return p;
    }

    // --- erase (Go's mapdelete) ---------------------------------------------------------------------
    template <class K>
    SPANMAP_MAP_INLINE size_type erase_key(const K& key) {
        write_guard guard(*this);
        if (h_.count == 0) return 0;
        const std::uint64_t hash = hash_of(key);
        if (growing()) grow_work(hash);
        bucket* const head = h_.buckets + (static_cast<std::size_t>(hash) & h_.bucket_mask);
        const probe_result r = probe<false>(head, detail::tophash_of(hash), key);
        if (!r.b) return 0;
        erase_slot(head, r.b, r.i);
        return 1;
    }

    // Destroys slot (b, i) of the chain starting at head. If the chain now
    // ends in a run of empty_one slots, they become empty_rest, so probes stop
    // early. Reseeds the map when it becomes empty (as Go does: hash flooding
    // cannot carry over from one filling to the next).
    void erase_slot(bucket* head, bucket* b, unsigned i) noexcept {
        destroy_entry(b, i);
        // Within a bucket the update is one word (detail::erase_tophash),
        // with no branch on the neighbours while the array fits a core's
        // cache; only slot 7 reads the overflow word, to see whether the next
        // bucket starts with empty_rest. A run that reaches slot 0 of an
        // overflow bucket goes on in the previous bucket of the chain.
        const bool tail_rest =
            i == detail::bucket_cnt - 1 && (!overflow(b) || tophash(overflow(b))[0] == detail::empty_rest);
        const bool reached_zero = h_.B <= branch_free_erase_max_B
                                      ? detail::erase_tophash<true>(tophash(b), i, tail_rest)
                                      : detail::erase_tophash<false>(tophash(b), i, tail_rest);
        if (__builtin_expect(b != head, 0) && reached_zero) clear_run_before(head, b);
        if (--h_.count == 0) h_.seed = detail::thread_random();
    }
    // The largest B whose array is under 4 MiB, which erase_slot treats as
    // in the core's cache: with u64 keys, on cores of 2 MiB of L2, the
    // branch-free update still gained 6% at 100k keys (a 2.4 MB array), and
    // lost 4% at 200k (4.7 MB) and 15% at 1M (see detail::erase_tophash).
    static constexpr std::uint8_t branch_free_erase_max_B =
        static_cast<std::uint8_t>(std::bit_width((std::size_t{4} << 20) / sizeof(bucket)) - 1);
    // Goes on with erase_slot's run of empty_one slots, which reached slot 0
    // of overflow bucket b, in the buckets before b.
    SPANMAP_MAP_NOINLINE static void clear_run_before(bucket* head, bucket* b) noexcept {
        do {
            bucket* const c = b;
            for (b = head; overflow(b) != c; b = overflow(b)) {
            }
            if (tophash(b)[detail::bucket_cnt - 1] != detail::empty_one) return;
        } while (detail::clear_empty_one_run(tophash(b), detail::bucket_cnt - 1) && b != head);
    }

    // --- whole-map operations ---------------------------------------------------------------------
    // Destroys the entries of the chain at head and frees its overflow
    // buckets that are not part of [array, array + n).
    void destroy_chain(bucket* head, bucket* array, std::size_t n) noexcept {
        for (bucket* b = head; b; b = overflow(b)) {
            if constexpr (!std::is_trivially_destructible_v<Key> || !std::is_trivially_destructible_v<T> ||
                          indirect) {
                for (unsigned i = 0; i < detail::bucket_cnt; ++i) {
                    if (detail::is_live(tophash(b)[i])) destroy_entry(b, i);
                }
            }
        }
        bucket* b = overflow(head);
        while (b) {
            bucket* next = overflow(b);
            if (!in_array(b, array, n)) free_overflow(b);
            b = next;
        }
    }

    // Destroys every entry, frees every overflow bucket and the old array;
    // keeps the current array (its chains left dirty: the caller reinitialises
    // or frees it).
    void destroy_contents() noexcept {
        finish_retiring();
        if (!h_.buckets) return;
        if (h_.count != 0 || h_.overflow_in_use != 0) {
            const std::size_t n = std::size_t{1} << h_.B;
            for (std::size_t j = 0; j < n; ++j) {
                if (initialised(j)) destroy_chain(h_.buckets + j, h_.buckets, h_.nalloc);
            }
            if (growing()) {
                for (std::size_t o = 0, nold = std::size_t{1} << h_.oldB; o < nold; ++o) {
                    if (!evacuated(h_.oldbuckets + o)) destroy_chain(h_.oldbuckets + o, h_.oldbuckets, h_.old_nalloc);
                }
            }
        }
        if (growing()) {
            end_growth();
        } else {
            release_spares();
        }
    }

    void clear_impl() noexcept {
        entries_moved();
        if (h_.count != 0 || h_.overflow_in_use != 0 || growing()) {
            const bool dirty_heads = h_.count != 0 || h_.overflow_in_use != 0 || h_.lazy;
            destroy_contents();
            if (dirty_heads) {
                for (std::size_t j = 0, n = std::size_t{1} << h_.B; j < n; ++j) init_bucket(h_.buckets + j);
            }
            h_.next_overflow = std::size_t{1} << h_.B;
            h_.overflow_in_use = 0;
            h_.noverflow = 0;
            h_.count = 0;
        }
        h_.seed = detail::thread_random();
    }

    // Frees everything; the map is left empty with no buckets.
    void release_all() noexcept {
        entries_moved();
        destroy_contents();
        if (h_.buckets) deallocate_array(h_.buckets, h_.nalloc);
        assert(h_.overflow_owned == 0 || !h_.buckets);
        h_ = hmap{};
    }

    void reserve_impl(size_type n) { reserve_buckets(detail::b_for_count(n)); }
    void reserve_buckets(std::uint8_t target) {
        if (h_.buckets ? target <= h_.B : target == 0) return;
        if (h_.count == 0) {  // also mid-growth: nothing to evacuate
            const std::size_t nb = array_buckets(target);
            bucket* array = allocate_array(nb, std::size_t{1} << target);
            release_all();
            h_.buckets = array;
            h_.nalloc = nb;
            h_.next_overflow = std::size_t{1} << target;
            set_B(target);
            return;
        }
        if (!growing()) hash_grow(target, target == h_.B + 1);
    }

    // Entries moved: iterators of earlier generations are stale.
    void entries_moved() noexcept {
#if SPANMAP_MAP_GENERATIONS
        ++generation_;
#endif
    }

    hmap h_;
    std::uint8_t flags_ = 0;
#if SPANMAP_MAP_GENERATIONS
    std::uint32_t generation_ = 0;
#endif
    [[no_unique_address]] Hash hash_;
    [[no_unique_address]] KeyEqual eq_;
    [[no_unique_address]] Allocator alloc_;
};

template <class Key, class T, class Hash, class KeyEqual, class Allocator>
map_stats map<Key, T, Hash, KeyEqual, Allocator>::stats() const noexcept {
    map_stats s;
    s.count = h_.count;
    s.B = h_.B;
    s.bucket_count = bucket_count();
    s.bucket_bytes = sizeof(bucket);
    s.overflow_buckets = h_.overflow_in_use;
    s.overflow_preallocated_left = h_.nalloc - h_.next_overflow;
    s.noverflow = h_.noverflow;
    s.growing = growing();
    s.same_size_growth = growing() && h_.oldB == h_.B;
    s.shrinking = growing() && h_.oldB > h_.B;
    s.old_B = growing() ? h_.oldB : 0;
    s.old_bucket_count = growing() ? std::size_t{1} << h_.oldB : 0;
    s.old_buckets_evacuated = h_.nevacuated;
    if (h_.buckets) s.bucket_array_bytes += rounded_bytes(h_.nalloc);
    if (growing()) s.bucket_array_bytes += rounded_bytes(h_.old_nalloc);
    if (h_.retiring) s.retiring_bytes = h_.retiring_nalloc * sizeof(bucket);
    s.overflow_bytes = h_.overflow_owned * rounded_bytes(1);
    s.load_factor = static_cast<double>(h_.count) / static_cast<double>(bucket_count());
    auto chain_length = [](bucket* b) {
        std::size_t n = 0;
        for (; b; b = overflow(b)) ++n;
        return n;
    };
    if (h_.buckets) {
        for (std::size_t j = 0, n = std::size_t{1} << h_.B; j < n; ++j) {
            if (initialised(j)) s.longest_chain = std::max(s.longest_chain, chain_length(h_.buckets + j));
        }
        s.buckets = {reinterpret_cast<std::uintptr_t>(h_.buckets),
                     reinterpret_cast<std::uintptr_t>(h_.buckets + h_.nalloc)};
    }
    if (growing()) {
        for (std::size_t o = 0, n = std::size_t{1} << h_.oldB; o < n; ++o) {
            if (!evacuated(h_.oldbuckets + o)) s.longest_chain = std::max(s.longest_chain, chain_length(h_.oldbuckets + o));
        }
        s.old_buckets = {reinterpret_cast<std::uintptr_t>(h_.oldbuckets),
                         reinterpret_cast<std::uintptr_t>(h_.oldbuckets + h_.old_nalloc)};
    }
    return s;
}

template <class Key, class T, class Hash, class KeyEqual, class Allocator>
bool map<Key, T, Hash, KeyEqual, Allocator>::check_invariants(char* why, std::size_t why_len) const {
    auto fail = [&](const char* what, std::size_t where) {
        if (why && why_len) std::snprintf(why, why_len, "%s (bucket %zu)", what, where);
        return false;
    };
    std::size_t live = 0;
    std::size_t overflows = 0;
    // One chain: slot states, and each live key's hash against where it sits.
    auto check_chain = [&](bucket* head, std::size_t idx, std::uint8_t B, const char*& err) {
        std::size_t filled = 0;  // slots before the empty_rest tail
        std::size_t total = 0;
        for (bucket* b = head; b; b = overflow(b)) {
            if (b != head) ++overflows;
            for (unsigned i = 0; i < detail::bucket_cnt; ++i, ++total) {
                if (tophash(b)[i] != detail::empty_rest) filled = total + 1;
            }
        }
        std::size_t k = 0;
        for (bucket* b = head; b; b = overflow(b)) {
            for (unsigned i = 0; i < detail::bucket_cnt; ++i, ++k) {
                const std::uint8_t t = tophash(b)[i];
                if (k < filled && t == detail::empty_rest) err = "empty_rest before a non-empty_rest slot";
                if (k + 1 == filled && t == detail::empty_one) err = "the last slot before the empty_rest tail is empty_one";
                if (t > detail::empty_one && t < detail::min_top_hash) err = "evacuation marker in a live chain";
                if (!detail::is_live(t)) continue;
                ++live;
                const Key& key = key_at(b, i);
                if (!equal(key, key)) continue;  // NaN-like: its hash is not stable
                const std::uint64_t hash = hash_of(key);
                if (detail::tophash_of(hash) != t) err = "tophash does not match the key's hash";
                if ((static_cast<std::size_t>(hash) & mask(B)) != idx) err = "entry in the wrong chain";
            }
        }
    };
    const char* err = nullptr;
    if (h_.buckets) {
        for (std::size_t j = 0, n = std::size_t{1} << h_.B; j < n && !err; ++j) {
            if (initialised(j)) {
                check_chain(h_.buckets + j, j, h_.B, err);
            }
            if (err) return fail(err, j);
        }
        if (h_.next_overflow < (std::size_t{1} << h_.B) || h_.next_overflow > h_.nalloc)
            return fail("next_overflow outside the preallocated tail", h_.next_overflow);
    } else if (h_.count != 0 || growing()) {
        return fail("entries without buckets", 0);
    }
    if (growing()) {
        std::size_t evacuated_count = 0;
        for (std::size_t o = 0, n = std::size_t{1} << h_.oldB; o < n; ++o) {
            bucket* ob = h_.oldbuckets + o;
            if (evacuated(ob)) {
                ++evacuated_count;
                if (overflow(ob)) return fail("evacuated old bucket still has overflow buckets", o);
                for (unsigned i = 0; i < detail::bucket_cnt; ++i) {
                    const std::uint8_t t = tophash(ob)[i];
                    if (t < detail::evacuated_x || t > detail::evacuated_empty)
                        return fail("evacuated old bucket has a non-marker slot", o);
                }
            } else {
                if (o < h_.nevacuate) return fail("old bucket below nevacuate not evacuated", o);
                check_chain(ob, o, h_.oldB, err);
                if (err) return fail(err, o);
            }
        }
        if (evacuated_count != h_.nevacuated) return fail("nevacuated does not count evacuated old buckets", evacuated_count);
        if (h_.lazy && h_.B != h_.oldB && h_.B != h_.oldB + 1) return fail("lazy growth by more than doubling", h_.B);
    } else if (h_.lazy) {
        return fail("lazy without a growth", 0);
    }
    if (h_.bucket_mask != mask(h_.B)) return fail("bucket_mask is not 2^B - 1", h_.bucket_mask);
    if (h_.load_limit != detail::load_limit(h_.B) ||
        h_.overflow_limit != (h_.retiring ? 0 : detail::overflow_limit(h_.B)))
        return fail("growth limits do not match B", h_.B);
    if (h_.retiring && (h_.retiring_nalloc == 0 || growing()))
        return fail("a retiring array fully given back, or one beside a growth", h_.retiring_nalloc);
    if (live != h_.count) return fail("count differs from live slots", live);
    if (overflows != h_.overflow_in_use) return fail("overflow_in_use differs from linked overflow buckets", overflows);
    return true;
}

namespace detail {
template <class It>
using iter_key_t = std::remove_const_t<typename std::iterator_traits<It>::value_type::first_type>;
template <class It>
using iter_val_t = typename std::iterator_traits<It>::value_type::second_type;
template <class It>
using iter_to_alloc_t = std::pair<const iter_key_t<It>, iter_val_t<It>>;
// What the deduction guides take for an allocator (and never for a hash).
template <class A>
concept allocator_like = requires(A& a) {
    typename A::value_type;
    a.allocate(std::size_t{});
};
}  // namespace detail

// Deduction guides, as std::unordered_map's: spanmap::map m(v.begin(), v.end()).
template <std::input_iterator It, class Hash = spanmap::hash<detail::iter_key_t<It>>,
          class Pred = std::equal_to<detail::iter_key_t<It>>,
          class Alloc = spanmap::allocator<detail::iter_to_alloc_t<It>>>
    requires(!std::is_integral_v<Hash> && !detail::allocator_like<Hash> && !detail::allocator_like<Pred> &&
             detail::allocator_like<Alloc>)
map(It, It, std::size_t = 0, Hash = Hash(), Pred = Pred(), Alloc = Alloc())
    -> map<detail::iter_key_t<It>, detail::iter_val_t<It>, Hash, Pred, Alloc>;

template <class Key, class T, class Hash = spanmap::hash<Key>, class Pred = std::equal_to<Key>,
          class Alloc = spanmap::allocator<std::pair<const Key, T>>>
    requires(!std::is_integral_v<Hash> && !detail::allocator_like<Hash> && !detail::allocator_like<Pred> &&
             detail::allocator_like<Alloc>)
map(std::initializer_list<std::pair<Key, T>>, std::size_t = 0, Hash = Hash(), Pred = Pred(), Alloc = Alloc())
    -> map<Key, T, Hash, Pred, Alloc>;

template <std::input_iterator It, class Alloc>
    requires detail::allocator_like<Alloc>
map(It, It, std::size_t, Alloc) -> map<detail::iter_key_t<It>, detail::iter_val_t<It>,
                                       spanmap::hash<detail::iter_key_t<It>>,
                                       std::equal_to<detail::iter_key_t<It>>, Alloc>;

template <std::input_iterator It, class Hash, class Alloc>
    requires(detail::allocator_like<Alloc> && !detail::allocator_like<Hash>)
map(It, It, std::size_t, Hash, Alloc)
    -> map<detail::iter_key_t<It>, detail::iter_val_t<It>, Hash, std::equal_to<detail::iter_key_t<It>>, Alloc>;

template <class Key, class T, class Alloc>
    requires detail::allocator_like<Alloc>
map(std::initializer_list<std::pair<Key, T>>, std::size_t, Alloc)
    -> map<Key, T, spanmap::hash<Key>, std::equal_to<Key>, Alloc>;

// Erases every entry for which pred(*it) holds; returns how many. Found by
// argument-dependent lookup: write erase_if(m, pred) (std::erase_if only
// knows std's containers).
template <class Key, class T, class Hash, class KeyEqual, class Allocator, class Pred>
typename map<Key, T, Hash, KeyEqual, Allocator>::size_type erase_if(map<Key, T, Hash, KeyEqual, Allocator>& m,
                                                                     Pred pred) {
    const auto before = m.size();
    for (auto it = m.begin(); it != m.end();) it = pred(*it) ? m.erase(it) : std::next(it);
    return before - m.size();
}

}  // namespace spanmap

#pragma once
// Helpers shared by the map tests: a tracking allocator (with a ledger that
// knows every live block, and selectable propagation traits), an
// instance-counting element type, and types that throw on demand.

#include <spanmap/map.h>

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <new>
#include <string>
#include <type_traits>
#include <unordered_map>

namespace spanmap_test {

// Sizes the suites are run at; smaller under sanitizers (several times slower).
#if defined(SPANMAP_SANITIZER) && SPANMAP_SANITIZER
inline constexpr bool sanitized = true;
#else
inline constexpr bool sanitized = false;
#endif
inline constexpr int scaled(int normal, int sanitizer) { return sanitized ? sanitizer : normal; }

// Every block a tracking_allocator hands out, by address, with its size: a
// free of a foreign pointer, a wrong size or a double free is a test failure,
// and bytes == 0 at the end means nothing leaked.
struct ledger {
    std::unordered_map<const void*, std::size_t> live;
    std::size_t bytes = 0;
    std::size_t allocations = 0;
    std::size_t deallocations = 0;

    // Fresh blocks are filled with 0xA5, a byte that reads as a live tophash:
    // a map that trusted unwritten memory to be zero would show it at once.
    void* allocate(std::size_t size, std::size_t align) {
        void* p = ::operator new(size, std::align_val_t(align));
        std::memset(p, 0xA5, size);
        live.emplace(p, size);
        bytes += size;
        ++allocations;
        return p;
    }
    void deallocate(void* p, std::size_t size, std::size_t align) {
        auto it = live.find(p);
        if (it == live.end()) {
            ADD_FAILURE() << "deallocate of a block this ledger did not hand out: " << p;
            return;
        }
        EXPECT_EQ(it->second, size) << "deallocate with a different size";
        live.erase(it);
        bytes -= size;
        ++deallocations;
        ::operator delete(p, std::align_val_t(align));
    }
};

template <class T, bool POCCA = true, bool POCMA = true, bool POCS = true>
class tracking_allocator {
public:
    using value_type = T;
    using propagate_on_container_copy_assignment = std::bool_constant<POCCA>;
    using propagate_on_container_move_assignment = std::bool_constant<POCMA>;
    using propagate_on_container_swap = std::bool_constant<POCS>;
    using is_always_equal = std::false_type;
    template <class U>
    struct rebind {
        using other = tracking_allocator<U, POCCA, POCMA, POCS>;
    };

    explicit tracking_allocator(ledger* l) noexcept : ledger_(l) {}
    template <class U>
    tracking_allocator(const tracking_allocator<U, POCCA, POCMA, POCS>& o) noexcept : ledger_(o.get_ledger()) {}

    T* allocate(std::size_t n) { return static_cast<T*>(ledger_->allocate(n * sizeof(T), alignof(T))); }
    void deallocate(T* p, std::size_t n) { ledger_->deallocate(p, n * sizeof(T), alignof(T)); }

    ledger* get_ledger() const noexcept { return ledger_; }
    template <class U>
    bool operator==(const tracking_allocator<U, POCCA, POCMA, POCS>& o) const noexcept {
        return ledger_ == o.get_ledger();
    }

private:
    ledger* ledger_;
};

// Counts constructions, destructions, copies and moves of its instances.
struct counted {
    static inline long constructed = 0;
    static inline long destroyed = 0;
    static inline long copies = 0;
    static inline long moves = 0;
    static void reset() { constructed = destroyed = copies = moves = 0; }
    static long alive() { return constructed - destroyed; }

    int value = 0;
    explicit counted(int v = 0) : value(v) { ++constructed; }
    counted(const counted& o) : value(o.value) {
        ++constructed;
        ++copies;
    }
    counted(counted&& o) noexcept : value(o.value) {
        ++constructed;
        ++moves;
    }
    counted& operator=(const counted& o) {
        value = o.value;
        ++copies;
        return *this;
    }
    counted& operator=(counted&& o) noexcept {
        value = o.value;
        ++moves;
        return *this;
    }
    ~counted() { ++destroyed; }
    friend bool operator==(const counted& a, const counted& b) { return a.value == b.value; }
};

// A std-style hash without a seed parameter (the map mixes its seed in).
struct counted_hash {
    std::size_t operator()(const counted& c) const noexcept { return std::hash<int>{}(c.value); }
};

struct injected_failure : std::exception {};

// Throws from its constructors while `armed` says so (counting down: throws
// once the countdown reaches zero; -1 disarms).
struct throwing_value {
    static inline int countdown = -1;
    static inline long alive = 0;
    static void maybe_throw() {
        if (countdown < 0) return;
        if (countdown-- == 0) throw injected_failure();
    }
    int value = 0;
    throwing_value(int v = 0) : value(v) {
        maybe_throw();
        ++alive;
    }
    throwing_value(const throwing_value& o) : value(o.value) {
        maybe_throw();
        ++alive;
    }
    ~throwing_value() { --alive; }
    friend bool operator==(const throwing_value& a, const throwing_value& b) { return a.value == b.value; }
};

}  // namespace spanmap_test

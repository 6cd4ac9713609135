#pragma once
// spanmap's allocator, for C++: spanmap::allocator<T> and the heap's checks
// (spanmap::debug). The C API is <spanmap/spanmap.h>; the design — the tiers,
// the paths of a malloc and a free, the modules — is DESIGN.md.

#include <spanmap/spanmap.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>
#include <type_traits>

namespace spanmap {

inline constexpr std::size_t default_alignment = __STDCPP_DEFAULT_NEW_ALIGNMENT__;

// Throws std::bad_alloc on failure. alignment: a power of two.
[[nodiscard]] void* allocate(std::size_t size, std::size_t alignment = default_alignment);
// Memory that reads as zero; fresh pages are not cleared a second time.
[[nodiscard]] void* allocate_zeroed(std::size_t size, std::size_t alignment = default_alignment);
void deallocate(void* p) noexcept;
// Sized: size and alignment as given to allocate (checked against the span).
void deallocate(void* p, std::size_t size, std::size_t alignment = default_alignment) noexcept;
// deallocate, and a large block's pages back to the OS now (see spanmap_free_release).
void deallocate_release(void* p, std::size_t size, std::size_t alignment = default_alignment) noexcept;
// A large block cut in place, its tail back to the OS now (see spanmap_shrink_release).
void shrink_release(void* block, std::size_t size) noexcept;
std::size_t usable_size(const void* p) noexcept;
// What allocate(size, alignment) would make usable: Go's roundupsize.
std::size_t good_size(std::size_t size, std::size_t alignment = default_alignment) noexcept;
// All free memory back to the OS now (see spanmap_release_free_memory).
inline std::size_t release_free_memory() noexcept { return spanmap_release_free_memory(); }

template <class T>
class allocator {
public:
    using value_type = T;
    using size_type = std::size_t;
    using difference_type = std::ptrdiff_t;
    using propagate_on_container_move_assignment = std::true_type;
    using is_always_equal = std::true_type;

    constexpr allocator() noexcept = default;
    template <class U>
    constexpr allocator(const allocator<U>&) noexcept {}

    [[nodiscard]] T* allocate(std::size_t n) {
        if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_array_new_length();
        return static_cast<T*>(spanmap::allocate(n * sizeof(T), alignof(T)));
    }
    void deallocate(T* p, std::size_t n) noexcept { spanmap::deallocate(p, n * sizeof(T), alignof(T)); }

    // Beyond std::allocator: a container that finds these members uses them
    // (spanmap::map uses good_size for its bucket arrays). allocate_zeroed(n)
    // is allocate(n) with the memory zeroed, free of a memset when the pages
    // are fresh; good_size(n) is how many T the block of allocate(n) really holds.
    // Either block goes back through deallocate(p, m) for any m in [n, good_size(n)].
    [[nodiscard]] T* allocate_zeroed(std::size_t n) {
        if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_array_new_length();
        return static_cast<T*>(spanmap::allocate_zeroed(n * sizeof(T), alignof(T)));
    }
    std::size_t good_size(std::size_t n) const noexcept {
        if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) return n;
        return spanmap::good_size(n * sizeof(T), alignof(T)) / sizeof(T);
    }
    // deallocate(p, n) for a block its owner will not want back soon (a
    // hash map's bucket array once the map has moved to a bigger one): a
    // large block's pages leave the resident set now.
    void deallocate_release(T* p, std::size_t n) noexcept {
        spanmap::deallocate_release(p, n * sizeof(T), alignof(T));
    }
    // The live array p cut to its first n elements, the memory after them
    // back to the OS now (see spanmap_shrink_release); deallocate it with n.
    void shrink_release(T* p, std::size_t n) noexcept { spanmap::shrink_release(p, n * sizeof(T)); }

    template <class U>
    friend constexpr bool operator==(const allocator&, const allocator<U>&) noexcept { return true; }
};

}  // namespace spanmap

// Introspection for tests and tools; never allocates.
namespace spanmap::debug {

struct heap_info {
    std::size_t arenas;          // 64 MiB arenas reserved from the OS
    std::size_t pages_in_use;    // 8 KiB pages held by spans (small and large)
    std::size_t pages_free;      // reserved pages held by no span
    std::size_t small_spans;     // spans carved into objects (mcentral's, and the span cache's)
    std::size_t cached_spans;    // of them, empty ones the heap keeps whole for their class
    std::size_t cached_span_bytes;
    std::size_t large_objects;   // spans holding one live object over 32 KiB
    std::size_t live_caches;     // thread caches attached to a running thread
    std::size_t pooled_caches;   // caches of exited threads, kept for reuse
    std::size_t cached_objects;  // objects sitting in thread caches (exact only when quiet)
    std::size_t cached_bytes;
    std::size_t transfer_objects;  // objects in transit between caches (the transfer tier)
    std::size_t transfer_bytes;
    std::size_t large_cached_objects;  // freed large objects kept whole for reuse (the large cache)
    std::size_t large_cached_bytes;
};
heap_info read_heap_info() noexcept;

// Walks every tier and checks its invariants (for a span: allocated + free ==
// objects; for the heap: every page is in exactly one span or free; a cached
// object belongs to an in-use span of its class and is not also free there).
// Call only at a quiet point: no other thread may be allocating or freeing.
// Returns true, or false with the first violation written into why.
bool check_invariants(char* why, std::size_t why_len) noexcept;

}  // namespace spanmap::debug

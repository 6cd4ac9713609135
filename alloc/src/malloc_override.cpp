// The malloc replacement: libspanmap_malloc.so, for LD_PRELOAD or for linking
// ahead of the C library. Every allocation entry point of glibc and of the C++
// runtime lands here and goes to the spanmap API.
//
// The traps, and how they are met:
//   * Calls arrive before any constructor runs and from inside the loader:
//     the allocator initialises lazily on first use, from constant-initialised
//     state, and its initialisation allocates nothing.
//   * GCC rewrites malloc+memset into calloc: every allocator source is built
//     with -fno-builtin-malloc/-calloc/-free, so that never recurses.
//   * Thread-local state is one initial-exec pointer plus a pthread key; a
//     C++ thread_local with a destructor would call calloc from inside
//     __cxa_thread_atexit. Calls after the thread's cleanup ran are served
//     straight from mcentral (see cache.h).
//   * fork: handlers registered at first initialisation take every allocator
//     lock in one order (see fork_prepare in cache.cpp).
//   * Preloading must not load a C++ runtime into a C program: the library
//     is built without exceptions and RTTI and links the C library alone.
//     operator new's failure path borrows the program's libstdc++ (below),
//     and the profiler opens libunwind when it starts (alloc/profile/capture.cpp).
//   * free keeps errno; posix_memalign reports EINVAL for a bad alignment;
//     pvalloc(0) is one page; realloc(p, 0) frees p and returns NULL (glibc's
//     behaviour); a pointer from another heap stops the process with a message.
//
// Exports are limited by malloc_override.map, so the allocator's internals
// bind inside the library and never to a copy elsewhere in the process.
// malloc, free and operator new and delete inline the fast paths themselves
// (fastpath.h): no call or jump stands between the program and the bin.
#include "fastpath.h"

#include <spanmap/alloc.h>
#include <spanmap/spanmap.h>

#include <dlfcn.h>
#include <malloc.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <new>

#define SPANMAP_EXPORT extern "C" __attribute__((visibility("default")))

namespace spanmap::detail {
// Throws std::bad_alloc through the program's C++ runtime (api.cpp).
[[noreturn]] void throw_bad_alloc();
}  // namespace spanmap::detail

namespace {

constexpr std::size_t os_page = 4096;  // what valloc and pvalloc mean by a page

bool is_pow2(std::size_t x) { return x != 0 && (x & (x - 1)) == 0; }

void* aligned_or_enomem(std::size_t align, std::size_t size) {
    if (align <= 16) return spanmap::detail::malloc_fast(size);
    return spanmap_aligned_alloc(align, size);
}

// memalign and friends take any alignment: glibc rounds it up to a power of two.
void* memalign_impl(std::size_t align, std::size_t size) {
    if (align > (SIZE_MAX >> 1) + 1) {
        errno = EINVAL;
        return nullptr;
    }
    if (!is_pow2(align)) align = std::size_t{1} << (64 - __builtin_clzll(align));
    return aligned_or_enomem(align, size);
}

// --- operator new's failure path ------------------------------------------------
//
// This library carries no C++ runtime (see alloc/CMakeLists.txt), yet a failed
// operator new must call the program's new_handler and throw std::bad_alloc
// that the program can catch. Both belong to the program's own libstdc++, and
// a program that calls operator new has one loaded: its functions are found by
// name when an allocation has failed, never on the way to a successful one.
// Without a C++ runtime (a C program calling the exported C++ API), the
// failure stops the process with a message instead.

// One attempt at operator new's allocation: the inlined malloc fast path,
// or an aligned allocation above the default alignment.
inline void* try_new(std::size_t size, std::size_t align) noexcept {
    return align <= __STDCPP_DEFAULT_NEW_ALIGNMENT__ ? spanmap::detail::malloc_fast(size)
                                                     : spanmap_aligned_alloc(align, size);
}

template <class Fn>
Fn runtime_function(void* handle, const char* name) noexcept {
    return reinterpret_cast<Fn>(::dlsym(handle, name));
}

std::new_handler program_new_handler() noexcept {
    using get_fn = std::new_handler (*)() noexcept;
    const get_fn get = runtime_function<get_fn>(RTLD_DEFAULT, "_ZSt15get_new_handlerv");
    return get != nullptr ? get() : nullptr;
}

[[gnu::cold, gnu::noinline]] void* new_failed(std::size_t size, std::size_t align) {
    for (;;) {
        const std::new_handler handler = program_new_handler();
        if (handler == nullptr) spanmap::detail::throw_bad_alloc();
        handler();
        void* p = try_new(size, align);
        if (p != nullptr) return p;
    }
}

// What malloc's fast path leaves at the default alignment (an empty bin, a
// size over the small classes): malloc's slow path, then the new_handler loop.
[[gnu::noinline]] void* new_slow(std::size_t size) {
    void* p = spanmap::detail::malloc_slow(size);
    if (p != nullptr) [[likely]] return p;
    return new_failed(size, 0);
}

// At the default alignment a popped object is never null, so the fast path
// is malloc's own, and its slow path a tail call that may throw: no test of
// the result and no saved register on the way.
inline void* new_impl(std::size_t size, std::size_t align) {
    if (align <= __STDCPP_DEFAULT_NEW_ALIGNMENT__) [[likely]]
        return spanmap::detail::malloc_fast_or(size, [size] { return new_slow(size); });
    void* p = spanmap_aligned_alloc(align, size);
    if (p != nullptr) [[likely]] return p;
    return new_failed(size, align);
}

// The nothrow forms return NULL where the plain ones throw, and a new_handler
// may throw too; catching needs the C++ runtime, so when a handler is set the
// program's libstdc++ does it: its nothrow operator new calls the plain
// operator new (this library's, it is replaceable) inside a try block.
[[gnu::cold, gnu::noinline]] void* new_nothrow_failed(std::size_t size, std::size_t align) noexcept {
    if (program_new_handler() == nullptr) return nullptr;
    using nothrow_fn = void* (*)(std::size_t, const std::nothrow_t&) noexcept;
    using nothrow_aligned_fn = void* (*)(std::size_t, std::align_val_t, const std::nothrow_t&) noexcept;
    if (align == 0) {
        const auto fn = runtime_function<nothrow_fn>(RTLD_NEXT, "_ZnwmRKSt9nothrow_t");
        return fn != nullptr ? fn(size, std::nothrow_t{}) : nullptr;
    }
    const auto fn = runtime_function<nothrow_aligned_fn>(RTLD_NEXT, "_ZnwmSt11align_val_tRKSt9nothrow_t");
    return fn != nullptr ? fn(size, std::align_val_t{align}, std::nothrow_t{}) : nullptr;
}

inline void* new_nothrow(std::size_t size, std::size_t align) noexcept {
    void* p = try_new(size, align);
    if (p != nullptr) [[likely]] return p;
    return new_nothrow_failed(size, align);
}

}  // namespace

// Every function of this library is spanmap's: the heap profiler drops all
// their frames from its stacks (the weak default in alloc/profile/capture.cpp says no).
namespace spanmap::detail {
bool profile_whole_module() noexcept { return true; }
}  // namespace spanmap::detail

// --- C ------------------------------------------------------------------------

using spanmap::detail::free_any;
using spanmap::detail::malloc_fast;

SPANMAP_EXPORT void* malloc(std::size_t size) { return malloc_fast(size); }
SPANMAP_EXPORT void free(void* p) { free_any(p); }
SPANMAP_EXPORT void cfree(void* p) { free_any(p); }
SPANMAP_EXPORT void* calloc(std::size_t n, std::size_t size) { return spanmap_calloc(n, size); }
SPANMAP_EXPORT void* realloc(void* p, std::size_t size) { return spanmap_realloc(p, size); }

SPANMAP_EXPORT void* reallocarray(void* p, std::size_t n, std::size_t size) {
    std::size_t bytes = 0;
    if (__builtin_mul_overflow(n, size, &bytes)) {
        errno = ENOMEM;
        return nullptr;
    }
    return spanmap_realloc(p, bytes);
}

SPANMAP_EXPORT void* memalign(std::size_t align, std::size_t size) { return memalign_impl(align, size); }

SPANMAP_EXPORT void* aligned_alloc(std::size_t align, std::size_t size) {
    if (!is_pow2(align)) {
        errno = EINVAL;
        return nullptr;
    }
    return aligned_or_enomem(align, size);
}

SPANMAP_EXPORT int posix_memalign(void** out, std::size_t align, std::size_t size) {
    if (!is_pow2(align) || align % sizeof(void*) != 0) return EINVAL;
    const int saved = errno;
    void* p = aligned_or_enomem(align, size);
    errno = saved;
    if (p == nullptr) return ENOMEM;
    *out = p;
    return 0;
}

SPANMAP_EXPORT void* valloc(std::size_t size) { return aligned_or_enomem(os_page, size); }

SPANMAP_EXPORT void* pvalloc(std::size_t size) {
    if (size > SIZE_MAX - os_page) {
        errno = ENOMEM;
        return nullptr;
    }
    const std::size_t rounded = size == 0 ? os_page : (size + os_page - 1) & ~(os_page - 1);
    return aligned_or_enomem(os_page, rounded);
}

SPANMAP_EXPORT std::size_t malloc_usable_size(void* p) { return spanmap_usable_size(p); }
SPANMAP_EXPORT void free_sized(void* p, std::size_t size) { free_any(p, size); }
SPANMAP_EXPORT void free_aligned_sized(void* p, std::size_t /*align*/, std::size_t size) { free_any(p, size); }

// glibc's internal names, called by parts of glibc itself and by programs
// that want "the real malloc".
SPANMAP_EXPORT void* __libc_malloc(std::size_t size) { return malloc_fast(size); }
SPANMAP_EXPORT void __libc_free(void* p) { free_any(p); }
SPANMAP_EXPORT void* __libc_calloc(std::size_t n, std::size_t size) { return spanmap_calloc(n, size); }
SPANMAP_EXPORT void* __libc_realloc(void* p, std::size_t size) { return spanmap_realloc(p, size); }
SPANMAP_EXPORT void* __libc_memalign(std::size_t align, std::size_t size) { return memalign_impl(align, size); }
SPANMAP_EXPORT void* __libc_valloc(std::size_t size) { return valloc(size); }
SPANMAP_EXPORT void* __libc_pvalloc(std::size_t size) { return pvalloc(size); }
SPANMAP_EXPORT int __posix_memalign(void** out, std::size_t align, std::size_t size) {
    return posix_memalign(out, align, size);
}

// Returns all free memory to the OS; 1 when some was released, as glibc does.
SPANMAP_EXPORT int malloc_trim(std::size_t /*pad*/) { return spanmap_release_free_memory() != 0 ? 1 : 0; }

// glibc's tuning knobs do not apply; accepting them keeps programs that set
// them running.
SPANMAP_EXPORT int mallopt(int /*param*/, int /*value*/) { return 1; }

SPANMAP_EXPORT struct mallinfo2 mallinfo2() {
    const spanmap::debug::heap_info h = spanmap::debug::read_heap_info();
    struct mallinfo2 mi {};
    constexpr std::size_t page = 8192;
    mi.arena = (h.pages_in_use + h.pages_free) * page;  // address space of the heap
    mi.hblks = h.large_objects;
    mi.uordblks = h.pages_in_use * page;                // bytes in spans
    mi.fordblks = h.pages_free * page;                  // bytes in free pages
    mi.fsmblks = h.cached_bytes;                        // free objects in thread caches
    mi.keepcost = 0;
    return mi;
}

SPANMAP_EXPORT struct mallinfo mallinfo() {
    const struct mallinfo2 m2 = mallinfo2();
    struct mallinfo mi {};
    mi.arena = static_cast<int>(m2.arena);
    mi.hblks = static_cast<int>(m2.hblks);
    mi.uordblks = static_cast<int>(m2.uordblks);
    mi.fordblks = static_cast<int>(m2.fordblks);
    mi.fsmblks = static_cast<int>(m2.fsmblks);
    return mi;
}

// --- C++: the 20 replaceable operator new / operator delete forms --------------

#define SPANMAP_NEW_EXPORT __attribute__((visibility("default")))

SPANMAP_NEW_EXPORT void* operator new(std::size_t n) { return new_impl(n, 0); }
SPANMAP_NEW_EXPORT void* operator new[](std::size_t n) { return new_impl(n, 0); }
SPANMAP_NEW_EXPORT void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return new_nothrow(n, 0); }
SPANMAP_NEW_EXPORT void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return new_nothrow(n, 0); }
SPANMAP_NEW_EXPORT void* operator new(std::size_t n, std::align_val_t a) { return new_impl(n, static_cast<std::size_t>(a)); }
SPANMAP_NEW_EXPORT void* operator new[](std::size_t n, std::align_val_t a) { return new_impl(n, static_cast<std::size_t>(a)); }
SPANMAP_NEW_EXPORT void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    return new_nothrow(n, static_cast<std::size_t>(a));
}
SPANMAP_NEW_EXPORT void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    return new_nothrow(n, static_cast<std::size_t>(a));
}

SPANMAP_NEW_EXPORT void operator delete(void* p) noexcept { free_any(p); }
SPANMAP_NEW_EXPORT void operator delete[](void* p) noexcept { free_any(p); }
SPANMAP_NEW_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept { free_any(p); }
SPANMAP_NEW_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept { free_any(p); }
SPANMAP_NEW_EXPORT void operator delete(void* p, std::size_t n) noexcept { free_any(p, n); }
SPANMAP_NEW_EXPORT void operator delete[](void* p, std::size_t n) noexcept { free_any(p, n); }
SPANMAP_NEW_EXPORT void operator delete(void* p, std::align_val_t) noexcept { free_any(p); }
SPANMAP_NEW_EXPORT void operator delete[](void* p, std::align_val_t) noexcept { free_any(p); }
SPANMAP_NEW_EXPORT void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { free_any(p); }
SPANMAP_NEW_EXPORT void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { free_any(p); }
SPANMAP_NEW_EXPORT void operator delete(void* p, std::size_t n, std::align_val_t) noexcept { free_any(p, n); }
SPANMAP_NEW_EXPORT void operator delete[](void* p, std::size_t n, std::align_val_t) noexcept { free_any(p, n); }

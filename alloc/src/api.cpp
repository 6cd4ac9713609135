// The C and C++ entry points: size to class, the small and large paths, and
// the checks every free makes before it trusts a pointer.
#include "fastpath.h"
#include "large.h"
#include "sampling.h"
#include "scavenge.h"

#include <spanmap/alloc.h>
#include <spanmap/spanmap.h>

#include <dlfcn.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace spanmap::detail {
namespace {

constexpr bool is_pow2(std::size_t x) { return x != 0 && (x & (x - 1)) == 0; }

std::size_t pages_for(std::size_t n) { return n == 0 ? 1 : round_up(n, page_size) >> page_shift; }

// Dirty large blocks at least this big are zeroed by giving their pages back
// to the kernel (which maps zero pages on the next touch) instead of writing
// every byte. Below it, memset: a block that is then used (a map's reserve()
// clears and fills its array) pays a page fault and the kernel's own clearing
// for every 4 KiB after madvise, which costs more than the memset it saved —
// the arena map's reserve(1e5) ran 1.5x slower than on std::allocator with a
// 256 KiB limit here (bench/map_peers_bench insert_reserved). glibc's calloc
// likewise clears reused heap memory and skips only fresh mmap chunks, whose
// threshold it grows up to 32 MiB.
constexpr std::size_t zero_by_madvise_bytes = 32 << 20;

SPANMAP_ALLOC_TEXT void* alloc_large(std::size_t n, std::size_t align, bool zero) noexcept {
    if (n > max_request || align > max_request) return nullptr;
    ensure_init();
    const std::size_t npages = pages_for(n);
    // The thread's large slots first (large.h); a thread that has only ever
    // allocated large blocks gets its cache here.
    cache_front* const f = tls_cache;
    mcache* mc = cache_usable(f) ? static_cast<mcache*>(f) : nullptr;
    if (__builtin_expect(f == no_cache_yet, 0)) {
        const int saved_errno = errno;
        mc = attach();
        errno = saved_errno;
    }
    thread_large_slots* slots = mc != nullptr ? &mc->large : nullptr;
    mspan* s = nullptr;
    if (__builtin_expect(align <= page_size && slots != nullptr, 1)) s = large_slots_take(*slots, npages);
    if (s == nullptr) {
        s = large_alloc_span(npages, align > page_size ? align >> page_shift : 1, slots);
        if (s == nullptr) return nullptr;
        maybe_start_scavenger();
    }
    void* p = reinterpret_cast<void*>(s->base);
    unpoison(p, s->end() - s->base);
    if (zero && s->needzero) {
        const std::size_t bytes = std::size_t{s->npages} << page_shift;
        if (bytes < zero_by_madvise_bytes || !os_discard(p, bytes)) std::memset(p, 0, n);
    }
    // The heap profiler's countdown, on this slow path with no lock held.
    if (__builtin_expect(
            mc != nullptr ? mc->prof.profiling.load(std::memory_order_relaxed) != profiling_off : f == no_cache_yet, 0))
        sample_large(p, s);
    return p;
}

SPANMAP_ALLOC_TEXT void* alloc(std::size_t n, std::size_t align) noexcept {
    const unsigned c = size_class_aligned(n, align);
    if (c != 0) return alloc_small(c);
    return alloc_large(n, align, false);
}

SPANMAP_ALLOC_TEXT void* alloc_zeroed(std::size_t n, std::size_t align) noexcept {
    const unsigned c = size_class_aligned(n, align);
    if (c == 0) return alloc_large(n, align, true);
    void* p = alloc_small(c);
    if (p != nullptr) std::memset(p, 0, n);
    return p;
}

SPANMAP_ALLOC_TEXT void* malloc_impl(std::size_t n) noexcept {
    const unsigned c = size_class_malloc(n);
    if (__builtin_expect(c != 0, 1)) return alloc_small(c);
    return alloc_large(n, page_size, false);
}

void* fail_enomem() noexcept {
    errno = ENOMEM;
    return nullptr;
}

[[noreturn]] __attribute__((noinline, cold)) void bad_free(const char* what, const void* p) noexcept {
    // Past its first page, a large block has no entry of its own in the page
    // map (heap.h): say so rather than "no object".
    if (span_containing(reinterpret_cast<std::uintptr_t>(p)) != nullptr)
        fatal(what, p, "pointer into the middle of a large object, not its start");
    if (arena_of(reinterpret_cast<std::uintptr_t>(p)) != nullptr)
        fatal(what, p, "double free or invalid pointer (no object of spanmap's heap is allocated there)");
    fatal(what, p, "pointer not allocated by spanmap");
}

// The span of a pointer about to be freed, reallocated or measured, after
// checking that p is a live object's start: every test free_fast makes, each
// with its own message. Stops the process if one fails.
mspan* checked_span(const void* ptr, const char* what) noexcept {
    const auto p = reinterpret_cast<std::uintptr_t>(ptr);
    mspan* s = span_of(p);
    if (__builtin_expect(s == nullptr, 0)) bad_free(what, ptr);
    if (__builtin_expect(s->size_class != 0, 1)) {
        if (__builtin_expect(!is_object_start(s, p), 0))
            fatal(what, ptr, "pointer into the middle of a small object, not its start");
        if (__builtin_expect(!is_handed_object_start(s, p), 0))
            fatal(what, ptr, "invalid pointer (an object that was never allocated)");
        if (__builtin_expect(*static_cast<const std::uintptr_t*>(ptr) == free_mark(p), 0))
            fatal(what, ptr, "double free (the object is already free)");
        if (__builtin_expect(free_in_span(s, object_index(s, p)), 0))
            fatal(what, ptr, "double free or invalid pointer (the object is free in its span: never handed out)");
    } else if (__builtin_expect(p != s->base, 0)) {
        fatal(what, ptr, "pointer into the middle of a large object, not its start");
    } else if (__builtin_expect(s->parked.load(std::memory_order_relaxed), 0)) {
        fatal(what, ptr, "double free (the large block is already free)");
    }
    return s;
}

std::size_t span_usable(const mspan* s) noexcept {
    return s->size_class != 0 ? s->elem_size : std::size_t{s->npages} << page_shift;
}

// Frees the live object ptr of span s (checked_span's answer).
void free_checked(void* ptr, mspan* s) noexcept {
    if (__builtin_expect(s->live_samples.load(std::memory_order_relaxed) != 0, 0)) sampled_free(ptr, s);
    if (__builtin_expect(s->size_class != 0, 1)) {
        free_small_slow(s->size_class, ptr);
        return;
    }
    poison(ptr, s->end() - s->base);
    mcache* mc = thread_cache();
    if (__builtin_expect(mc != nullptr, 1) && large_slots_put(mc->large, s)) {
        // Also a fork child's clock: it ticks on the paths that free.
        maybe_start_scavenger(large_slots_pages(mc->large));
        return;
    }
    const int saved = errno;
    large_free_span(s, ptr);
    errno = saved;
}

}  // namespace

// The slow path of every free: what free_fast declined, checked and done.
// `size` as for free_fast.
void free_slow(void* ptr, std::size_t size) noexcept {
    if (ptr == nullptr) return;
    mspan* s = checked_span(ptr, "free");
    if (__builtin_expect(size > span_usable(s), 0))
        fatal("free", ptr, "sized free with a size larger than the block (wrong size or wrong pointer)");
    free_checked(ptr, s);
}

// free_slow, except that a large block's pages go back to the OS at once
// instead of waiting in the large cache and then the decay: for a block the
// program knows it will not want back soon. The madvise runs before the pages
// are free, with no lock held, while they are still the span's and nobody
// else can take them; they then join the heap as released pages. A small
// object is freed as by free_slow: its span's other objects are live.
void free_release(void* ptr, std::size_t size) noexcept {
    if (ptr == nullptr) return;
    mspan* s = checked_span(ptr, "free");
    if (__builtin_expect(size > span_usable(s), 0))
        fatal("free", ptr, "sized free with a size larger than the block (wrong size or wrong pointer)");
    if (s->size_class != 0) {
        free_checked(ptr, s);
        return;
    }
    if (__builtin_expect(s->live_samples.load(std::memory_order_relaxed) != 0, 0)) sampled_free(ptr, s);
    const int saved = errno;
    const std::size_t bytes = s->end() - s->base;
    os_release(ptr, bytes);
    poison(ptr, bytes);
    g.heap.free_span(s, /*released=*/true);
    errno = saved;
}

SPANMAP_ALLOC_TEXT void* malloc_slow(std::size_t size) noexcept {
    void* p = malloc_impl(size);
    return p != nullptr ? p : fail_enomem();
}

namespace {

SPANMAP_ALLOC_TEXT void* realloc_impl(void* ptr, std::size_t n) noexcept {
    if (ptr == nullptr) return malloc_impl(n);
    mspan* s = checked_span(ptr, "realloc");
    const std::size_t old = span_usable(s);
    if (s->size_class != 0) {
        if (size_class_malloc(n) == s->size_class) return ptr;
    } else if (n > max_small_size && n <= max_request) {
        // A large block changes size in place when it can: pages at its tail
        // go back to the heap, or the free pages after it are taken.
        const std::size_t want = pages_for(n);
        if (want == s->npages) return ptr;
        if (want < s->npages) {
            const std::uintptr_t old_end = s->end();
            g.heap.shrink_span(s, want);
            poison(reinterpret_cast<void*>(s->end()), old_end - s->end());
            return ptr;
        }
        if (g.heap.grow_span(s, want)) {
            unpoison(ptr, s->end() - s->base);
            return ptr;
        }
    }
    void* q = malloc_impl(n);
    if (q == nullptr) return nullptr;
    std::memcpy(q, ptr, old < n ? old : n);
    free_checked(ptr, s);
    return q;
}

}  // namespace
}  // namespace spanmap::detail

using namespace spanmap::detail;

extern "C" {

SPANMAP_ALLOC_TEXT void* spanmap_malloc(size_t size) noexcept { return malloc_fast(size); }

SPANMAP_ALLOC_TEXT void* spanmap_calloc(size_t count, size_t size) noexcept {
    size_t n = 0;
    if (__builtin_mul_overflow(count, size, &n)) return fail_enomem();
    void* p = alloc_zeroed(n, n <= 8 ? 8 : 16);
    return p != nullptr ? p : fail_enomem();
}

SPANMAP_ALLOC_TEXT void* spanmap_realloc(void* p, size_t size) noexcept {
    if (p != nullptr && size == 0) {
        // glibc's choice: realloc(p, 0) frees p and returns NULL.
        free_slow(p, 0);  // also checks p
        return nullptr;
    }
    void* q = realloc_impl(p, size);
    return q != nullptr ? q : fail_enomem();
}

void spanmap_free(void* p) noexcept { free_any(p); }

void spanmap_free_sized(void* p, size_t size) noexcept { free_any(p, size); }

void spanmap_free_release(void* p) noexcept { free_release(p, 0); }

// realloc's shrink in place, with the tail's memory given back to the OS
// before its pages go back to the heap (outside the heap's lock, as
// free_release does), so that they join the free set as released pages. The
// block is checked as a free would check it: a foreign or freed pointer stops
// the process here too, and so does a size past the block's end.
void spanmap_shrink_release(void* block, size_t size) noexcept {
    if (block == nullptr) return;
    mspan* s = checked_span(block, "shrink_release");
    if (__builtin_expect(size > span_usable(s), 0)) fatal("shrink_release", block, "size beyond the end of the block");
    if (s->size_class != 0) return;  // a small object shares its pages
    const std::size_t want = pages_for(size);
    if (want >= s->npages) return;
    const int saved = errno;
    const std::uintptr_t cut = s->base + want * page_size;
    const std::size_t bytes = s->end() - cut;
    os_release(reinterpret_cast<void*>(cut), bytes);
    poison(reinterpret_cast<void*>(cut), bytes);
    g.heap.shrink_span(s, want, /*released=*/true);
    errno = saved;
}

SPANMAP_ALLOC_TEXT void* spanmap_aligned_alloc(size_t alignment, size_t size) noexcept {
    if (!is_pow2(alignment)) {
        errno = EINVAL;
        return nullptr;
    }
    void* p = alloc(size, alignment);
    return p != nullptr ? p : fail_enomem();
}

void spanmap_free_aligned_sized(void* p, size_t /*alignment*/, size_t size) noexcept { free_any(p, size); }

size_t spanmap_usable_size(const void* p) noexcept {
    if (p == nullptr) return 0;
    return span_usable(checked_span(p, "usable_size"));
}

size_t spanmap_good_size(size_t size) noexcept {
    const unsigned c = size_class_malloc(size);
    if (c != 0) return spanmap::sc::class_size[c];
    return size > max_request ? size : pages_for(size) << page_shift;
}

void spanmap_thread_cache_flush(void) noexcept {
    flush_thread_cache();
    if (mcache* mc = thread_cache(); mc != nullptr) large_slots_flush(mc->large);
}

size_t spanmap_release_free_memory(void) noexcept { return release_free_memory(); }

}  // extern "C"

namespace spanmap {

namespace detail {

// Inside the malloc replacement, built without exceptions and without a C++
// runtime of its own, std::bad_alloc is thrown by the program's libstdc++,
// found by name once an allocation has failed (see malloc_override.cpp).
[[noreturn, gnu::cold, gnu::noinline]] void throw_bad_alloc() {
#if defined(__cpp_exceptions)
    throw std::bad_alloc();
#else
    using throw_fn = void (*)();
    if (auto fn = reinterpret_cast<throw_fn>(::dlsym(RTLD_DEFAULT, "_ZSt17__throw_bad_allocv"))) fn();
    write_stderr("spanmap: out of memory in a C++ allocation, and no C++ runtime to throw std::bad_alloc\n");
    std::abort();
#endif
}

// allocate whole: every size and alignment, the throw included.
SPANMAP_ALLOC_TEXT __attribute__((noinline)) void* allocate_slow(std::size_t size, std::size_t alignment) {
    void* p = is_pow2(alignment) ? alloc(size, alignment) : nullptr;
    if (p == nullptr) throw_bad_alloc();
    return p;
}

}  // namespace detail

// The common request, a small size at an alignment of at most 16 (what
// spanmap::allocator asks for its T, and the default), pops its bin as malloc
// does; everything else, an empty bin and every failure (and its throw) are
// allocate_slow's, a tail call. The bin comes from tables of bin offsets, as
// malloc's (size_class_aligned's first two cases).
SPANMAP_ALLOC_TEXT void* allocate(std::size_t size, std::size_t alignment) {
    const auto slow = [size, alignment] { return detail::allocate_slow(size, alignment); };
    if (__builtin_expect(alignment - 1 < 16 && (alignment & (alignment - 1)) == 0, 1))
        return alloc_size_or(size, alignment > 8 ? aligned16_size_to_bin8 : aligned8_size_to_bin8, slow);
    return slow();
}

SPANMAP_ALLOC_TEXT void* allocate_zeroed(std::size_t size, std::size_t alignment) {
    void* p = is_pow2(alignment) ? alloc_zeroed(size, alignment) : nullptr;
    if (p == nullptr) detail::throw_bad_alloc();
    return p;
}

void deallocate(void* p) noexcept { free_any(p); }

void deallocate(void* p, std::size_t size, std::size_t /*alignment*/) noexcept { free_any(p, size); }

void deallocate_release(void* p, std::size_t size, std::size_t /*alignment*/) noexcept {
    detail::free_release(p, size);
}

void shrink_release(void* block, std::size_t size) noexcept { spanmap_shrink_release(block, size); }

std::size_t usable_size(const void* p) noexcept { return spanmap_usable_size(p); }

std::size_t good_size(std::size_t size, std::size_t alignment) noexcept {
    const unsigned c = is_pow2(alignment) ? size_class_aligned(size, alignment) : 0;
    if (c != 0) return sc::class_size[c];
    return size > max_request ? size : pages_for(size) << page_shift;
}

}  // namespace spanmap

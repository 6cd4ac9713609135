// The stack of a heap profile's sample. See profile.h.
#include "profile.h"

#ifdef SPANMAP_HAVE_LIBUNWIND
#define UNW_LOCAL_ONLY
#include <libunwind.h>
// The malloc replacement opens libunwind itself (see load_unwinder below).
#ifdef SPANMAP_LIBUNWIND_SONAME
#define SPANMAP_UNWIND_DLOPEN 1
#include <dlfcn.h>
#endif
#endif

#include <link.h>
#include <sched.h>

extern "C" {
// The ends of the spanmap_alloc_text section (SPANMAP_ALLOC_TEXT), made by the
// linker because the name is a C identifier.
extern const char __start_spanmap_alloc_text[] __attribute__((visibility("hidden")));
extern const char __stop_spanmap_alloc_text[] __attribute__((visibility("hidden")));
// The ELF header of the executable or shared object this code is linked into.
extern const ElfW(Ehdr) __ehdr_start __attribute__((visibility("hidden")));
}

namespace spanmap::detail {

// True where every function of the object this code is linked into is
// spanmap's: libspanmap_malloc.so defines it so (malloc_override.cpp), and
// then the profiler drops all its frames, the malloc entry points included.
__attribute__((weak)) bool profile_whole_module() noexcept { return false; }

namespace {

// unw_backtrace is asked for this many frames beyond the kept depth, room
// for libunwind's own frame and spanmap's, which are dropped.
constexpr std::size_t dropped_frames_max = 16;

// The object's executable range when profile_whole_module(); else empty.
std::atomic<std::uintptr_t> module_lo{0};
std::atomic<std::uintptr_t> module_hi{0};
// The fork gate: threads inside libunwind, and whether a fork waits for
// them to leave (libunwind's own locks would be held forever in the child).
std::atomic<int> capturing{0};
std::atomic<bool> fork_pending{false};

// Whether the return address ip is in a function of spanmap's: ip - 1 is in
// the call instruction, inside its function even when the call is the last
// instruction there.
bool is_ours(std::uintptr_t ip) noexcept {
    const std::uintptr_t at = ip - 1;
    if (at >= reinterpret_cast<std::uintptr_t>(__start_spanmap_alloc_text) &&
        at < reinterpret_cast<std::uintptr_t>(__stop_spanmap_alloc_text))
        return true;
    return at >= module_lo.load(std::memory_order_relaxed) && at < module_hi.load(std::memory_order_relaxed);
}

// The executable range of the object this code is in, from its own program
// headers (no call into the loader).
void find_module_range() noexcept {
    if (!profile_whole_module() || module_hi.load(std::memory_order_relaxed) != 0) return;
    const auto base = reinterpret_cast<std::uintptr_t>(&__ehdr_start);
    const auto* ph = reinterpret_cast<const ElfW(Phdr)*>(base + __ehdr_start.e_phoff);
    std::uintptr_t bias = base;  // where vaddr 0 is: the header is at offset 0
    for (unsigned i = 0; i < __ehdr_start.e_phnum; ++i)
        if (ph[i].p_type == PT_LOAD && ph[i].p_offset == 0) bias = base - ph[i].p_vaddr;
    std::uintptr_t lo = ~std::uintptr_t{0}, hi = 0;
    for (unsigned i = 0; i < __ehdr_start.e_phnum; ++i) {
        if (ph[i].p_type != PT_LOAD || (ph[i].p_flags & PF_X) == 0) continue;
        const std::uintptr_t start = bias + ph[i].p_vaddr;
        if (start < lo) lo = start;
        if (start + ph[i].p_memsz > hi) hi = start + ph[i].p_memsz;
    }
    if (hi == 0) return;
    module_lo.store(lo, std::memory_order_relaxed);
    module_hi.store(hi, std::memory_order_relaxed);
}

#ifdef SPANMAP_UNWIND_DLOPEN
// libspanmap_malloc.so needs the C library alone, so libunwind is not linked
// into it: the functions the profiler calls are looked up in a dlopen'ed
// copy when profiling starts — from profile_start(), or for
// SPANMAP_CONF=prof:true from the library's constructor (start_from_conf),
// never from inside malloc, where the loader may hold its lock and dlopen
// would allocate. RTLD_LOCAL: libunwind also defines the C++ exception ABI
// and backtrace(), which must not take over the program's.
struct unwinder_functions {
    int (*backtrace)(void**, int);
    int (*getcontext)(unw_context_t*);
    int (*init_local)(unw_cursor_t*, unw_context_t*);
};
constinit unwinder_functions unw{};
std::atomic<bool> unw_loaded{false};  // release: unw is filled in
pthread_mutex_t unw_load_lock = PTHREAD_MUTEX_INITIALIZER;

#define SPANMAP_UNW_NAME2(x) #x
#define SPANMAP_UNW_NAME(x) SPANMAP_UNW_NAME2(x)  // the symbol a libunwind macro expands to

bool open_unwinder() noexcept {
    if (unw_loaded.load(std::memory_order_acquire)) return true;
    pthread_mutex_lock(&unw_load_lock);
    if (!unw_loaded.load(std::memory_order_relaxed)) {
        if (void* h = ::dlopen(SPANMAP_LIBUNWIND_SONAME, RTLD_NOW | RTLD_LOCAL)) {
            unw.backtrace = reinterpret_cast<int (*)(void**, int)>(::dlsym(h, SPANMAP_UNW_NAME(unw_backtrace)));
            unw.getcontext = reinterpret_cast<int (*)(unw_context_t*)>(::dlsym(h, SPANMAP_UNW_NAME(unw_tdep_getcontext)));
            unw.init_local = reinterpret_cast<int (*)(unw_cursor_t*, unw_context_t*)>(
                ::dlsym(h, SPANMAP_UNW_NAME(unw_init_local)));
            if (unw.backtrace != nullptr && unw.getcontext != nullptr && unw.init_local != nullptr)
                unw_loaded.store(true, std::memory_order_release);
            else
                ::dlclose(h);
        }
    }
    pthread_mutex_unlock(&unw_load_lock);
    return unw_loaded.load(std::memory_order_acquire);
}
#else
bool open_unwinder() noexcept { return true; }  // linked in, or absent (have_unwinder())
#endif

// The return addresses of the calling stack, innermost first. (Without
// libunwind profiling never starts and nothing calls this.)
__attribute__((always_inline)) inline int capture_stack(void** out, int max) noexcept {
#if !defined(SPANMAP_HAVE_LIBUNWIND)
    (void)out;
    (void)max;
    return 0;
#elif defined(SPANMAP_UNWIND_DLOPEN)
    return unw.backtrace(out, max);
#elif defined(__SANITIZE_THREAD__)
    // unw_backtrace keeps a per-thread cache that frees itself in the last
    // round of thread-specific-data destructors, through a mutex that
    // ThreadSanitizer intercepts after it has already ended the thread (a
    // crash at thread exit). Frame by frame, libunwind keeps no such cache.
    unw_context_t uc;
    unw_cursor_t cursor;
    if (unw_getcontext(&uc) != 0 || unw_init_local(&cursor, &uc) != 0) return 0;
    int n = 0;
    do {
        unw_word_t ip = 0;
        if (unw_get_reg(&cursor, UNW_REG_IP, &ip) != 0) break;
        out[n++] = reinterpret_cast<void*>(ip);
    } while (n < max && unw_step(&cursor) > 0);
    return n;
#else
    return unw_backtrace(out, max);
#endif
}

// libunwind initialises itself at first use behind a plain flag, and then
// other threads read what it set up (a signal mask) without its lock: a race
// when two threads sample first at once. Done here, before any cache is told
// to sample, the flag's release store (and the owner's acquire in redraw())
// orders it before every use. unw_init_local does it without touching the
// loader's tables, so this is safe under init_lock (SPANMAP_CONF's start).
void warm_up_unwinder() noexcept {
#if defined(SPANMAP_UNWIND_DLOPEN)
    unw_context_t uc;
    unw_cursor_t cursor;
    if (unw.getcontext(&uc) == 0) unw.init_local(&cursor, &uc);
#elif defined(SPANMAP_HAVE_LIBUNWIND)
    unw_context_t uc;
    unw_cursor_t cursor;
    if (unw_getcontext(&uc) == 0) unw_init_local(&cursor, &uc);
#endif
}

}  // namespace

bool load_unwinder() noexcept { return open_unwinder(); }

void prepare_capture() noexcept {
    find_module_range();
    warm_up_unwinder();
}

SPANMAP_ALLOC_TEXT std::size_t capture_program_stack(std::uintptr_t* frames, std::size_t max) noexcept {
    void* raw[max_profile_depth + dropped_frames_max];
    // Through the fork gate: a thread arriving while a fork waits does not
    // wait (it may hold the loader lock the threads inside libunwind need);
    // its sample gets an unknown stack.
    int got = 0;
    capturing.fetch_add(1);
    if (!fork_pending.load()) got = capture_stack(raw, static_cast<int>(sizeof raw / sizeof raw[0]));
    capturing.fetch_sub(1);
    const std::size_t n = got > 0 ? static_cast<std::size_t>(got) : 0;
    // The first frames are libunwind's and then ours (the recorder, the
    // sampler, the allocation path, the entry point); the program's come
    // after them.
    std::size_t first = 0;
    while (first < n && first < dropped_frames_max && !is_ours(reinterpret_cast<std::uintptr_t>(raw[first]))) ++first;
    if (first == n || first == dropped_frames_max) first = 0;  // none of ours found: keep them all
    while (first < n && is_ours(reinterpret_cast<std::uintptr_t>(raw[first]))) ++first;
    std::size_t depth = 0;
    for (std::size_t i = first; i < n && depth < max; ++i) frames[depth++] = reinterpret_cast<std::uintptr_t>(raw[i]);
    if (depth == 0) frames[depth++] = 0;  // pprof wants a frame: an unknown one
    return depth;
}

void capture_fork_prepare() noexcept {
    fork_pending.store(true);
    while (capturing.load() != 0) ::sched_yield();
}

void capture_fork_done() noexcept { fork_pending.store(false); }

void capture_fork_child() noexcept {
    // The one thread here is not capturing; a thread that was turned back
    // at the gate while fork went on left its count behind.
    capturing.store(0);
}

}  // namespace spanmap::detail

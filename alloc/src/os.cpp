// The allocator's only contact with the operating system: mappings, their
// names and the advice given on them (which madvise, chosen here from the
// configuration), what the kernel would commit, randomness, futexes and the
// last words of a fatal error. Nothing here may allocate: this code runs when
// spanmap is malloc.
#include "internal.h"
#include "conf.h"
#include "writer.h"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>

#ifndef MADV_FREE
#define MADV_FREE 8
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

namespace spanmap::detail {

std::atomic<std::size_t> metadata_sys{0};

void write_stderr(const char* s) noexcept {
    text_writer w(STDERR_FILENO);
    w << s;
    w.finish();
}

// One write for the whole line where it fits, so that messages of threads
// dying at once do not interleave; nothing here allocates (the heap is in no
// state to be entered again).
[[gnu::cold]] void fatal(const char* what, const void* ptr, const char* detail) noexcept {
    text_writer w(STDERR_FILENO);
    w << "spanmap: " << what << " ";
    w.hex(reinterpret_cast<std::uintptr_t>(ptr));
    w << ": " << detail << "\n";
    w.finish();
    std::abort();
}

namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

}  // namespace

void mutex::lock_slow() noexcept {
    // A short spin first: critical sections are a few hundred nanoseconds.
    for (int i = 0; i < 100; ++i) {
        int expected = 0;
        if (state_.load(std::memory_order_relaxed) == 0 &&
            state_.compare_exchange_weak(expected, 1, std::memory_order_acquire))
            return;
        cpu_relax();
    }
    // Mark the lock contended; whoever unlocks it then wakes a sleeper.
    const int saved = errno;
    while (state_.exchange(2, std::memory_order_acquire) != 0)
        ::syscall(SYS_futex, reinterpret_cast<int*>(&state_), FUTEX_WAIT_PRIVATE, 2, nullptr, nullptr, 0);
    errno = saved;
}

void mutex::wake_one() noexcept {
    const int saved = errno;
    ::syscall(SYS_futex, reinterpret_cast<int*>(&state_), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
    errno = saved;
}

void* os_map(std::size_t bytes) noexcept {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
}

void os_unmap(void* p, std::size_t bytes) noexcept { ::munmap(p, bytes); }

void* os_map_at(void* want, std::size_t bytes) noexcept {
    void* p = ::mmap(want, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE,
                     -1, 0);
    if (p == MAP_FAILED) return nullptr;
    if (p != want) {
        ::munmap(p, bytes);
        return nullptr;
    }
    return p;
}

namespace {

// The unsigned number after `key` in the text, or 0.
std::uint64_t number_after(const char* text, const char* key) noexcept {
    const char* at = std::strstr(text, key);
    if (at == nullptr) return 0;
    at += std::strlen(key);
    while (*at == ' ' || *at == '\t' || *at == ':') ++at;
    std::uint64_t v = 0;
    while (*at >= '0' && *at <= '9') v = v * 10 + static_cast<std::uint64_t>(*at++ - '0');
    return v;
}

// A small file of /proc into buf (NUL-terminated), without stdio: no malloc.
bool read_small_file(const char* path, char* buf, std::size_t len) noexcept {
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    std::size_t got = 0;
    while (got + 1 < len) {
        const ssize_t n = ::read(fd, buf + got, len - 1 - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
    }
    ::close(fd);
    buf[got] = '\0';
    return got > 0;
}

}  // namespace

bool os_can_commit(std::size_t bytes) noexcept {
    // Our mappings are MAP_NORESERVE, so the kernel never refuses them by its
    // overcommit policy (but under policy 2, which ignores the flag); a page
    // it cannot back would kill the process when first touched instead. So
    // the heap applies the policy itself, once per new reservation.
    const int saved = errno;
    char buf[4096];
    int policy = 0;
    if (read_small_file("/proc/sys/vm/overcommit_memory", buf, sizeof buf)) policy = buf[0] - '0';
    bool ok = true;
    if (policy == 0) {
        // The kernel's heuristic (__vm_enough_memory): one request may not
        // exceed RAM plus swap.
        struct sysinfo si{};
        if (::sysinfo(&si) == 0) {
            const std::uint64_t unit = si.mem_unit != 0 ? si.mem_unit : 1;
            const std::uint64_t total = (std::uint64_t{si.totalram} + si.totalswap) * unit;
            ok = bytes <= total;
        }
    } else if (policy == 2 && read_small_file("/proc/meminfo", buf, sizeof buf)) {
        const std::uint64_t limit = number_after(buf, "CommitLimit") << 10;
        const std::uint64_t committed = number_after(buf, "Committed_AS") << 10;
        ok = limit == 0 || (committed <= limit && bytes <= limit - committed);
    }
    errno = saved;
    return ok;
}

void* os_map_aligned(std::size_t bytes, std::size_t align) noexcept {
    // Over-reserve by the alignment, then give back the unaligned head and the
    // tail: the kernel has no aligned mmap.
    if (bytes + align < bytes) return nullptr;
    auto* raw = static_cast<char*>(os_map(bytes + align));
    if (raw == nullptr) return nullptr;
    const auto addr = reinterpret_cast<std::uintptr_t>(raw);
    const std::uintptr_t aligned = (addr + align - 1) & ~(std::uintptr_t{align} - 1);
    const std::size_t head = aligned - addr;
    if (head != 0) os_unmap(raw, head);
    if (align - head != 0) os_unmap(reinterpret_cast<char*>(aligned) + bytes, align - head);
    return reinterpret_cast<void*>(aligned);
}

bool os_name(void* p, std::size_t bytes, const char* name) noexcept {
    return ::prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, reinterpret_cast<unsigned long>(p), bytes,
                   reinterpret_cast<unsigned long>(name)) == 0;
}

bool os_release_zeroes() noexcept { return !conf.madv_free; }

void os_release(void* p, std::size_t bytes) noexcept {
    const int saved = errno;
    if (!conf.madv_free || ::madvise(p, bytes, MADV_FREE) != 0) ::madvise(p, bytes, MADV_DONTNEED);
    errno = saved;
}

bool os_discard(void* p, std::size_t bytes) noexcept {
    const int saved = errno;
    const bool ok = ::madvise(p, bytes, MADV_DONTNEED) == 0;
    errno = saved;
    return ok;
}

void os_huge_page_advice(void* base, std::size_t bytes) noexcept {
    if (conf.thp == thp_mode::system) return;
    const int saved = errno;
    ::madvise(base, bytes, conf.thp == thp_mode::always ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    errno = saved;
}

std::uint64_t os_random() noexcept {
    std::uint64_t v = 0;
    const int saved = errno;
    if (::getrandom(&v, sizeof v, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof v)) {
        // Early boot or a seccomp filter: any unpredictable-enough mix will do,
        // the value only guards against a freed word being mistaken for live data.
        timespec ts{};
        ::clock_gettime(CLOCK_MONOTONIC, &ts);
        v = static_cast<std::uint64_t>(ts.tv_nsec) * 0x9e3779b97f4a7c15ull ^ reinterpret_cast<std::uintptr_t>(&v);
    }
    errno = saved;
    return v | 1;  // never zero: zero is what fresh and handed-out objects hold
}

bool os_heavy_fence_register() noexcept {
    const int saved = errno;
    const bool ok = ::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
    errno = saved;
    return ok;
}

bool os_heavy_fence() noexcept {
    const int saved = errno;
    const bool ok = ::syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
    errno = saved;
    return ok;
}

}  // namespace spanmap::detail

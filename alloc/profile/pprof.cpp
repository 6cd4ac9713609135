// The profile as pprof reads it: the legacy heap_v2 text format, then the
// process's mappings. See <spanmap/profile.h> for the format.
#include "profile.h"
#include "writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

namespace spanmap::detail {
namespace {

// Copies /proc/self/maps into w; without it pprof cannot place the addresses
// of a position-independent executable.
void copy_maps(text_writer& w) noexcept {
    const int fd = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    char buf[4096];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        w.bytes(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
}

}  // namespace

[[gnu::cold]] bool write_profile(const char* path) noexcept {
    const int fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return false;
    bool ok = false;
    {
        text_writer w(fd);
        {
            tables_lock lk;
            const profile_totals t = totals_locked();
            w << "heap profile: " << t.inuse_objects << ": " << t.inuse_bytes << " [" << t.alloc_objects << ": "
              << t.alloc_bytes << "] @ heap_v2/" << sampler::rate() << "\n";
            for (std::size_t i = 0; i < tables.stack_slots; ++i) {
                const stack_record* r = tables.stacks[i];
                if (r == nullptr) continue;
                w << (r->alloc_objects - r->free_objects) << ": " << (r->alloc_bytes - r->free_bytes) << " ["
                  << r->alloc_objects << ": " << r->alloc_bytes << "] @";
                for (std::uint32_t f = 0; f < r->depth; ++f) {
                    w << " ";
                    w.hex(r->frames()[f]);
                }
                w << "\n";
            }
        }
        w << "\nMAPPED_LIBRARIES:\n";
        copy_maps(w);
        w.finish();
        ok = w.ok();
    }
    const int saved = errno;
    if (::close(fd) != 0 && ok) return false;
    errno = saved;
    return ok;
}

namespace {

// SPANMAP_CONF=prof:true: the profile at exit, to <prof_prefix>.<pid>.heap. A
// destructor function, as the statistics report at exit (stats/src/report.cpp): it
// runs after the program's static destructors, and registering it allocates
// nothing. This object is linked with the profiler (profiler.cpp refers to it).
__attribute__((destructor)) void dump_at_exit() {
    if (!sampler::initialised() || !sampler::conf_prof() || !have_unwinder()) return;
    // "<prefix>.<pid>.heap", spelled by hand: nothing here may allocate.
    char path[sampler::max_prof_prefix + 32];
    std::size_t n = std::strlen(sampler::conf_prof_prefix());
    std::memcpy(path, sampler::conf_prof_prefix(), n);
    path[n++] = '.';
    char digits[20];
    int k = 0;
    for (auto pid = static_cast<unsigned long>(::getpid()); k == 0 || pid != 0; pid /= 10)
        digits[k++] = static_cast<char>('0' + pid % 10);
    while (k > 0) path[n++] = digits[--k];
    std::memcpy(path + n, ".heap", sizeof ".heap");
    if (!write_profile(path)) {
        text_writer w(STDERR_FILENO);
        w << "spanmap: SPANMAP_CONF=prof:true: cannot write the heap profile " << path << "\n";
        w.finish();
    }
}

}  // namespace
}  // namespace spanmap::detail

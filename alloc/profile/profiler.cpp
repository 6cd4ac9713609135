// The heap profiler's API, and SPANMAP_CONF=prof:true. See profile.h.
#include "profile.h"
#include "writer.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

// A static library links only the objects something refers to, and nothing
// in the allocator refers up to the profiler: libspanmap.a's users keep this
// anchor (-Wl,-u,spanmap_profile_module, in the CMake target and
// spanmap-static.pc) so that SPANMAP_CONF=prof:true works in every program.
extern "C" __attribute__((used)) void spanmap_profile_module() {}

namespace spanmap::detail {
namespace {

// Sampling from now on, at `rate`; false with errno when it cannot be had.
bool start(std::uint64_t rate) noexcept {
    if (!have_unwinder() || !load_unwinder()) {
        errno = ENOSYS;
        return false;
    }
    sampler::install(&profile_recorder);
    prepare_capture();
    sampler::start(rate);
    return true;
}

// SPANMAP_CONF=prof:true: profiling starts when this object's constructor
// runs — before the program's own constructors and main where spanmap is
// linked in or preloaded; allocations made before it (the loader's) go
// unsampled. Not from inside the first malloc: opening libunwind there
// (the malloc replacement's case) would allocate under the loader's lock.
__attribute__((constructor)) void start_from_conf() {
    // A process that has not allocated yet is left uninitialised unless it
    // may ask for profiling: preloading must not cost /bin/true a heap.
    if (!sampler::initialised()) {
        const char* text = ::secure_getenv("SPANMAP_CONF");
        if (text == nullptr || std::strstr(text, "prof") == nullptr) return;
    }
    sampler::init();
    if (!sampler::conf_prof() || sampler::active()) return;
    if (start(sampler::conf_prof_rate())) return;
    text_writer w(STDERR_FILENO);
    if (!have_unwinder())
        w << "spanmap: SPANMAP_CONF: prof:true, but spanmap was built without libunwind: no profile\n";
    else
#ifdef SPANMAP_LIBUNWIND_SONAME
        w << "spanmap: SPANMAP_CONF: prof:true, but " SPANMAP_LIBUNWIND_SONAME " cannot be opened: no profile\n";
#else
        w << "spanmap: SPANMAP_CONF: prof:true, but libunwind cannot be had: no profile\n";
#endif
    w.finish();
}

}  // namespace

void profile_seed(std::uint64_t seed) noexcept { sampler::seed(seed); }

}  // namespace spanmap::detail

namespace spanmap {

bool profile_start(std::size_t rate) noexcept {
    if (rate == 0) {
        errno = EINVAL;
        return false;
    }
    return detail::start(rate);
}

void profile_stop() noexcept { sampler::stop(); }

bool profile_dump(const char* path) noexcept {
    if (path == nullptr) {
        errno = EINVAL;
        return false;
    }
    if (!detail::have_unwinder()) {
        errno = ENOSYS;
        return false;
    }
    return detail::write_profile(path);
}

}  // namespace spanmap

extern "C" {

int spanmap_profile_start(size_t rate) noexcept { return spanmap::profile_start(rate) ? 1 : 0; }
void spanmap_profile_stop(void) noexcept { spanmap::profile_stop(); }
int spanmap_profile_dump(const char* path) noexcept { return spanmap::profile_dump(path) ? 1 : 0; }

}  // extern "C"

/* spanmap's sampling heap profiler, written in the pprof heap format.
 *
 * While profiling is on, every thread samples its allocations as a Poisson
 * process over bytes with mean `rate` (Go's MemProfileRate, default 512 KiB):
 * an allocation of s bytes is sampled with probability 1 - exp(-s/rate). A
 * sampled allocation records its stack (libunwind); its free is noticed, so
 * the profile says what is in use now and what was allocated in total.
 *
 * profile_dump writes the legacy heap profile that google-pprof (Debian's
 * google-perftools), jeprof and Go's pprof read:
 *
 *   heap profile: <inuse objs>: <inuse bytes> [<alloc objs>: <alloc bytes>] @ heap_v2/<rate>
 *   <inuse objs>: <inuse bytes> [<alloc objs>: <alloc bytes>] @ 0x<leaf> 0x<caller> ...
 *   ...
 *
 *   MAPPED_LIBRARIES:
 *   <a copy of /proc/self/maps>
 *
 * The counts are the samples as taken; readers unscale each stack by
 * 1 / (1 - exp(-(bytes/objs)/rate)). Read it with
 *   google-pprof --text <program> <profile>        (in use; --alloc_space: all)
 *   google-pprof --svg <program> <profile> > heap.svg   (needs graphviz)
 *
 * The same without changing the program: SPANMAP_CONF=prof:true (with
 * prof_rate:<bytes>, prof_prefix:<path>) starts profiling when the allocator
 * initialises and dumps to <prefix>.<pid>.heap at exit (prefix "spanmap" by
 * default) — also under the malloc replacement, libspanmap_malloc.so.
 *
 * Profiling needs libunwind: a build without it (see alloc/CMakeLists.txt)
 * keeps the API, and profile_start fails with ENOSYS. */
#ifndef SPANMAP_PROFILE_H
#define SPANMAP_PROFILE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#define SPANMAP_NOEXCEPT noexcept
#else
#define SPANMAP_NOEXCEPT
#endif

/* Starts sampling (or changes the rate) and returns 1; 0 with errno = EINVAL
 * for rate 0, ENOSYS when built without libunwind. A thread sees the change at
 * its next allocation. Samples already taken stay; a profile holding samples
 * taken at several rates is unscaled with the last one. */
int spanmap_profile_start(size_t rate) SPANMAP_NOEXCEPT;
/* Stops sampling. Sampled objects stay in the profile until they are freed. */
void spanmap_profile_stop(void) SPANMAP_NOEXCEPT;
/* Writes the profile to path (created or truncated); 1, or 0 with errno set.
 * Never allocates; may be called with profiling on or off. */
int spanmap_profile_dump(const char* path) SPANMAP_NOEXCEPT;

#ifdef __cplusplus
}
#endif
#undef SPANMAP_NOEXCEPT

#ifdef __cplusplus
#include <cstddef>

namespace spanmap {

// Go's MemProfileRate: the mean number of bytes allocated between samples.
inline constexpr std::size_t default_profile_rate = 512 << 10;

// As the C functions above: false when profiling is unavailable (errno ENOSYS)
// or rate is 0 (EINVAL).
bool profile_start(std::size_t rate = default_profile_rate) noexcept;
void profile_stop() noexcept;
bool profile_dump(const char* path) noexcept;

}  // namespace spanmap
#endif

#endif /* SPANMAP_PROFILE_H */

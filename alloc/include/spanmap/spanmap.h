/* spanmap C API: a Go-runtime-style allocator (thread caches, per-class
 * central lists, a page heap over 64 MiB arenas). See DESIGN.md for
 * the design; this header is the C-callable surface.
 *
 * Contracts: requests above 8 bytes are 16-byte aligned; spanmap_malloc(0)
 * returns a unique pointer; failure returns NULL with errno = ENOMEM;
 * spanmap_free(NULL) is a no-op and leaves errno alone. A pointer spanmap did
 * not hand out, or one freed twice, stops the process with a message naming
 * it. */
#ifndef SPANMAP_SPANMAP_H
#define SPANMAP_SPANMAP_H

#include <stddef.h>

#include <spanmap/mem_stats.h>

#ifdef __cplusplus
extern "C" {
#define SPANMAP_NOEXCEPT noexcept
#else
#define SPANMAP_NOEXCEPT
#endif

void* spanmap_malloc(size_t size) SPANMAP_NOEXCEPT;
/* Zeroed memory; count * size overflowing fails with ENOMEM. Pages the heap
 * has never handed out are known to be zero and are not cleared again. */
void* spanmap_calloc(size_t count, size_t size) SPANMAP_NOEXCEPT;
/* realloc(NULL, n) is malloc(n); realloc(p, 0) frees p and returns NULL, as
 * glibc does; contents up to the smaller size are kept. On failure p is
 * untouched and NULL is returned with errno = ENOMEM. */
void* spanmap_realloc(void* p, size_t size) SPANMAP_NOEXCEPT;
void spanmap_free(void* p) SPANMAP_NOEXCEPT;
/* size: the size that was requested (anything up to the usable size is
 * accepted); a size larger than the block stops the process. */
void spanmap_free_sized(void* p, size_t size) SPANMAP_NOEXCEPT;
/* spanmap_free, and for a large block (above 32 KiB) its pages go back to the
 * OS now, instead of being kept for the next request of its size until the
 * scavenger's decay: for a block the program will not want again soon. A
 * small object is freed as by spanmap_free. */
void spanmap_free_release(void* p) SPANMAP_NOEXCEPT;
/* A large block (above 32 KiB) cut in place to its first `size` bytes,
 * rounded up to whole 8 KiB pages (at least one): the pages after them go
 * back to the heap and their memory to the OS now, as spanmap_free_release
 * does for a whole block. The block keeps its address and is freed as usual;
 * spanmap_usable_size says its new size. A small object shares its pages,
 * and nothing happens. A size past the block's usable size stops the
 * process, as a bad block pointer does. A growing container gives back a big
 * array it has finished with a piece at a time this way, where one
 * spanmap_free_release of it all would stall the caller for milliseconds. */
void spanmap_shrink_release(void* block, size_t size) SPANMAP_NOEXCEPT;
/* alignment: any power of two (EINVAL otherwise). */
void* spanmap_aligned_alloc(size_t alignment, size_t size) SPANMAP_NOEXCEPT;
void spanmap_free_aligned_sized(void* p, size_t alignment, size_t size) SPANMAP_NOEXCEPT;
/* Bytes usable at p (its size class, or its pages for a large object). */
size_t spanmap_usable_size(const void* p) SPANMAP_NOEXCEPT;
/* The usable size spanmap_malloc(size) would return (jemalloc's nallocx). */
size_t spanmap_good_size(size_t size) SPANMAP_NOEXCEPT;
/* Hands the calling thread's cached free objects back to the central lists. */
void spanmap_thread_cache_flush(void) SPANMAP_NOEXCEPT;
/* Returns all free memory to the OS now: the calling thread's cache, every
 * central list's empty spans and every free page (madvise). Returns the bytes
 * released. Other threads' caches are left alone. */
size_t spanmap_release_free_memory(void) SPANMAP_NOEXCEPT;
/* Fills *out with the allocator's statistics (see <spanmap/mem_stats.h> and
 * <spanmap/stats.h>); never allocates. Exact when no thread is allocating. */
void spanmap_read_mem_stats(struct spanmap_mem_stats* out) SPANMAP_NOEXCEPT;

#ifdef __cplusplus
}
#endif
#undef SPANMAP_NOEXCEPT

#endif /* SPANMAP_SPANMAP_H */

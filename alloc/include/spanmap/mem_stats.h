/* spanmap's statistics snapshot, shaped like Go's runtime.MemStats; C and C++
 * share this one definition. <spanmap/stats.h> says what each figure means,
 * which identities tie them together and how they are kept cheap.
 *
 * Every field is a uint64_t, bytes unless the name says objects or counts.
 * Fill one with spanmap_read_mem_stats() (C) or spanmap::read_mem_stats(). */
#ifndef SPANMAP_MEM_STATS_H
#define SPANMAP_MEM_STATS_H

#include <stdint.h>

/* Go's 67 small size classes plus index 0, which stands for large objects. */
#define SPANMAP_NUM_SIZE_CLASSES 68

struct spanmap_size_class_stats {
    uint64_t size;    /* the class's object size; 0 for index 0 (large objects, whole pages) */
    uint64_t mallocs; /* objects of this class handed to the program, ever */
    uint64_t frees;   /* objects of this class the program gave back, ever */
};

struct spanmap_mem_stats {
    /* Go's general statistics */
    uint64_t alloc;       /* bytes of live objects, as their class rounds them (large: whole pages) */
    uint64_t total_alloc; /* bytes ever allocated (grows only) */
    uint64_t sys;         /* bytes mapped from the OS: heap_sys + mspan_sys + mcache_sys + other_sys */
    uint64_t mallocs;     /* objects ever allocated */
    uint64_t frees;       /* objects ever freed */

    /* Go's heap statistics */
    uint64_t heap_alloc;    /* == alloc */
    uint64_t heap_sys;      /* arenas reserved: arenas x 64 MiB */
    uint64_t heap_idle;     /* pages held by no span */
    uint64_t heap_inuse;    /* pages held by spans (small and large) */
    uint64_t heap_released; /* idle pages returned to the OS (<= heap_idle) */
    uint64_t heap_objects;  /* live objects: mallocs - frees */

    /* Go's off-heap statistics: the allocator's own records */
    uint64_t mspan_inuse;  /* span records in use */
    uint64_t mspan_sys;    /* span records mapped */
    uint64_t mcache_inuse; /* thread caches attached to a running thread */
    uint64_t mcache_sys;   /* thread caches mapped (live and parked) */
    uint64_t other_sys;    /* all other metadata: arena records, the arena list, the heap profiler's tables */

    /* spanmap's own: where heap_inuse goes, and the heap's shape */
    uint64_t large_objects;  /* live large objects (over 32 KiB or over-aligned) */
    uint64_t large_bytes;    /* their bytes (whole pages); part of alloc */
    uint64_t cached_objects; /* free objects sitting in thread caches and the transfer tier */
    uint64_t cached_bytes;   /* their bytes */
    uint64_t span_free;      /* bytes of free objects in small spans (held by mcentral) */
    uint64_t span_waste;     /* bytes at the tails of small spans where no object fits */
    uint64_t small_spans;    /* spans carved into objects */
    uint64_t arenas;         /* 64 MiB arenas reserved */

    struct spanmap_size_class_stats by_size[SPANMAP_NUM_SIZE_CLASSES];
};

/* The scalar fields in order, for code that walks them (reports, tests):
 * X(name). A field added to the struct and not here breaks the build (a
 * static_assert in stats/src counts them); a field added here and not known to
 * the tests fails them, as Go's TestMemStats fails on an unknown field. */
#define SPANMAP_MEM_STATS_FIELDS(X)                                           \
    X(alloc) X(total_alloc) X(sys) X(mallocs) X(frees)                        \
    X(heap_alloc) X(heap_sys) X(heap_idle) X(heap_inuse) X(heap_released)     \
    X(heap_objects)                                                           \
    X(mspan_inuse) X(mspan_sys) X(mcache_inuse) X(mcache_sys) X(other_sys)    \
    X(large_objects) X(large_bytes) X(cached_objects) X(cached_bytes)         \
    X(span_free) X(span_waste) X(small_spans) X(arenas)

#endif /* SPANMAP_MEM_STATS_H */

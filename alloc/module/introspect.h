// What the allocator shows of itself to the modules built on it — the
// statistics (stats/) and tools — and nothing more.
//
// The statistics once read the allocator's private structures directly: the
// thread caches' bins, the heap's arena list, span fields, the locks and the
// order to take them in. Every change to a tier then meant reading the report
// code too. Here the allocator copies out plain figures instead, taking its
// own locks in its own order, and a module above needs no allocator header
// but this one. The figures are raw (counts of objects, pages and records);
// what they add up to — mem_stats, the class table, the report — is the
// statistics' business.
//
// Two readings of the heap's shape, for the same figures: from the running
// counters (cheap, a blur while threads allocate), or from a walk of every
// arena page, span and cache under every lock (exact, stops the world). A
// test compares them, which is only meaningful because the figures built
// from either go through the same code above.
//
// None of these functions allocates: the allocator may be malloc.
#pragma once

#include <cstddef>
#include <cstdint>

namespace spanmap::introspect {

// Size classes, class 0 included (large objects: size 0, one object a span).
inline constexpr unsigned num_classes = 68;
// The heap's page and arena, in bytes.
inline constexpr std::size_t page_size = 8192;
inline constexpr std::size_t arena_bytes = std::size_t{64} << 20;
inline constexpr std::size_t arena_pages = arena_bytes / page_size;
// The name the heap gives its arenas' mappings ("[anon:spanmap: heap]").
inline constexpr char arena_vma_name[] = "spanmap: heap";

std::uint32_t class_size(unsigned c) noexcept;
std::uint32_t class_pages(unsigned c) noexcept;

// Initialises the allocator if nothing has yet (reads SPANMAP_CONF).
void ensure_init() noexcept;
// SPANMAP_CONF=stats_print:true: print the report at exit.
bool stats_print_requested() noexcept;

// Figures only counting can know, and the heap's running totals.
struct counters {
    // Per class; index 0 counts large objects.
    std::uint64_t nmalloc[num_classes];
    std::uint64_t nfree[num_classes];
    std::uint64_t large_bytes_alloc;  // cumulative, whole pages, in-place growth included
    std::uint64_t large_bytes_freed;
    std::uint64_t pages_released;
    std::uint64_t metadata_sys;  // everything the allocator mapped for itself
    std::uint64_t span_records_mapped;
    std::uint64_t caches_mapped;
    std::uint64_t live_caches;
    std::uint64_t parked_caches;
    // The sizes of the records these count.
    std::uint64_t span_record_bytes;
    std::uint64_t cache_record_bytes;
    std::uint64_t cache_mapped_bytes;  // one cache's mapping
};

// Where the objects and pages are now.
struct heap_shape {
    std::uint64_t arenas;
    std::uint64_t pages_in_use;
    std::uint64_t pages_idle;
    std::uint64_t span_records;        // span records in use
    std::uint64_t spans[num_classes];  // [0]: large objects' spans
    std::uint64_t live[num_classes];   // objects with the program; [0]: large objects
    std::uint64_t cached[num_classes];
    std::uint64_t free[num_classes];  // free in their spans
    std::uint64_t large_bytes;
    // Large spans parked in the large cache: free, so cached, not the program's.
    std::uint64_t parked_spans;
    std::uint64_t parked_bytes;
};

// The counters, each lock taken alone in turn.
void read_counters(counters& k) noexcept;
// The shape, from the counters.
void shape_from_counters(const counters& k, heap_shape& h) noexcept;
// Both in one walk under every lock: the world stops meanwhile.
void walk(counters& k, heap_shape& h) noexcept;

// One thread cache: its identity (the record's address, for telling caches
// apart; never dereference it), whether it is the caller's, what it holds.
struct cache_row {
    const void* id;
    bool own;
    std::uint64_t objects;
    std::uint64_t bytes;
};
// fn(ctx, row) for each live cache, under the cache list's lock (fn must not
// allocate or call into the allocator); returns how many there are.
std::size_t read_caches(void (*fn)(void* ctx, const cache_row& row), void* ctx) noexcept;

// What the heap knows about one address.
enum class place : std::uint8_t { not_in_heap, idle_page, span_tail, allocated, cached, free };
struct address_facts {
    place where;
    std::uintptr_t arena;  // 0 when not in the heap
    std::uintptr_t span_start, span_end;
    std::uint32_t pages;
    std::uint32_t size_class;  // 0: a large object
    std::uintptr_t object_start;
    std::size_t object_size;
    std::uint32_t object_index;
    bool interior;
};
address_facts look_up(const void* p) noexcept;

// The arenas, in address order, each with its reserved pages, read under the
// heap's lock: fn(ctx, base, reserved_pages) for each. fn must not allocate
// or call into the allocator.
void for_each_arena(void (*fn)(void* ctx, std::uintptr_t base, std::uint32_t reserved_pages), void* ctx) noexcept;
// One arena's pages as the heap has them now: which are free, and whether it
// took its name. false when no arena starts at base.
struct arena_pages_copy {
    std::uintptr_t base;
    bool named;
    std::uint32_t reserved_pages;
    std::uint64_t free_bits[arena_pages / 64];  // bit set: a free page
};
bool copy_arena(std::uintptr_t base, arena_pages_copy& out) noexcept;

struct heap_totals {
    std::uint64_t arenas;
    std::uint64_t pages_reserved;
    std::uint64_t pages_released;
    int name_errno;  // errno of the first arena whose naming failed; 0 if none did
};
heap_totals read_heap_totals() noexcept;

}  // namespace spanmap::introspect

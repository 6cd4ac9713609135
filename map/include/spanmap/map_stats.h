#pragma once
// spanmap::map_stats — one map's shape, as map::stats() reports it. See
// <spanmap/map.h> for what buckets, overflow buckets and growth are.

#include <cstddef>
#include <cstdint>

namespace spanmap {

struct map_stats {
    // [begin, end) of a bucket array in memory, so it can be found in
    // /proc/self/maps; {0, 0} when there is no such array.
    struct address_range {
        std::uintptr_t begin = 0;
        std::uintptr_t end = 0;
    };

    std::size_t count = 0;         // live entries (size())
    std::uint8_t B = 0;            // log2 of bucket_count
    std::size_t bucket_count = 0;  // 2^B buckets of the current array (its preallocated overflow not counted)
    std::size_t bucket_bytes = 0;  // bytes of one bucket, padding included

    // Overflow buckets linked into chains (current and old array), counted exactly.
    std::size_t overflow_buckets = 0;
    // Preallocated overflow buckets at the tail of the current array not yet handed out.
    std::size_t overflow_preallocated_left = 0;
    // Go's noverflow: the (approximate from B >= 16 on) count of overflow
    // buckets since the last growth that drives same-size growth.
    std::size_t noverflow = 0;

    bool growing = false;           // an old array is still being evacuated
    bool same_size_growth = false;  // ... into an array of the same size (compaction)
    bool shrinking = false;         // ... into a smaller array (shrink_to_fit)
    std::uint8_t old_B = 0;                   // log2 of the old array's bucket count (when growing)
    std::size_t old_bucket_count = 0;         // 2^old_B when growing, else 0
    std::size_t old_buckets_evacuated = 0;    // of old_bucket_count

    // Bytes as the allocator rounded them (its good_size member, as the arena
    // allocator has; the bytes requested for an allocator without one).
    std::size_t bucket_array_bytes = 0;  // current array plus old array while growing
    std::size_t overflow_bytes = 0;      // separately allocated overflow buckets
    // A finished old array of 4 MiB or more still being given back to the
    // OS, a piece per insert of a new key: the bytes of it not yet given back.
    std::size_t retiring_bytes = 0;

    double load_factor = 0;           // count / bucket_count
    std::size_t longest_chain = 0;    // buckets in the longest chain (1 = no overflow; 0 = no buckets)

    address_range buckets;      // the current array, preallocated overflow included
    address_range old_buckets;  // the old array while growing
};

}  // namespace spanmap

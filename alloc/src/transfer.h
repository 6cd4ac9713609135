// The transfer tier: one per size class, between the thread caches and
// mcentral. See DESIGN.md for the overview.
//
// A thread cache moves objects in batches (bin_batch objects of a class).
// When a full bin gives a batch up (or several: bin_move), it is parked here
// as it is — an array of pointers copied in — and the next cache of the class
// that runs dry takes it back the same way. Neither end touches a span: no
// span list, no free bitmap, no page map, just a copy under a lock held for
// that copy.
// So a producer thread and a consumer thread, or any two threads that
// allocate and free the same class at different rates, trade whole batches
// in O(1), and mcentral (whose lock covers span walks) sees only the
// overflow: batches that find the tier full, and refills that find it empty.
//
// Objects here are free and carry the free mark (fastpath.h): they came out
// of a bin. The tier holds at most `capacity` objects, whole batches only, so
// what it can keep from the spans below is bounded per class
// (transfer_slots); flush_thread_cache and release_free_memory drain it.
//
// Lock order: a transfer lock is taken alone, never with another allocator
// lock held, except by lock_all (fork, checks, statistics), which takes it
// after every mcentral's and before mheap's.
#pragma once

#include "central.h"

namespace spanmap::detail {

// Objects of class c the tier may hold: 16 batches, but no more than 128 KiB
// of them — at least one batch.
constexpr std::uint32_t transfer_slots(std::uint32_t batch, std::uint32_t size) {
    const std::uint32_t by_bytes = (128u << 10) / size / batch * batch;
    const std::uint32_t by_batches = 16 * batch;
    const std::uint32_t n = by_bytes < by_batches ? by_bytes : by_batches;
    return n < batch ? batch : n;
}

class transfer_cache {
public:
    constexpr transfer_cache() noexcept = default;
    transfer_cache(const transfer_cache&) = delete;
    transfer_cache& operator=(const transfer_cache&) = delete;

    void init(void** slots, std::uint32_t capacity, std::uint32_t batch) noexcept {
        slots_ = slots;
        capacity_ = capacity;
        batch_ = batch;
    }
    // Parks as many whole batches from the front of objs[0..n) as it has
    // room for; returns how many objects it took (0 when not one batch).
    std::uint32_t put(void* const* objs, std::uint32_t n) noexcept;
    // Moves as many whole batches as it holds, up to n objects, into out,
    // the newest ones in their order; returns how many objects it moved.
    std::uint32_t take(void** out, std::uint32_t n) noexcept;
    // Moves everything into out (room for capacity() objects); returns how many.
    std::uint32_t take_all(void** out) noexcept;

    std::uint32_t capacity() const noexcept { return capacity_; }
    // For walkers: hold lock() while reading.
    mutex& lock() noexcept { return lock_; }
    std::uint32_t size() const noexcept { return count_.load(std::memory_order_relaxed); }
    void* const* objects() const noexcept { return slots_; }

private:
    mutex lock_;
    void** slots_ = nullptr;  // [0, count_) hold objects
    // Written under the lock; read without it by statistics.
    std::atomic<std::uint32_t> count_{0};
    std::uint32_t capacity_ = 0;
    std::uint32_t batch_ = 0;
};

}  // namespace spanmap::detail

#include "transfer.h"

#include <cstring>

namespace spanmap::detail {

bool transfer_cache::put(void* const* objs, std::uint32_t n) noexcept {
    if (n != batch_) return false;
    lock_guard lk(lock_);
    const std::uint32_t have = count_.load(std::memory_order_relaxed);
    if (capacity_ - have < n) return false;
    std::memcpy(slots_ + have, objs, n * sizeof(void*));
    count_.store(have + n, std::memory_order_relaxed);
    return true;
}

bool transfer_cache::take(void** out, std::uint32_t n) noexcept {
    // A racy peek first: a refill that would find the tier empty (the common
    // case in a program that never frees across threads) skips the lock.
    if (n != batch_ || count_.load(std::memory_order_relaxed) < n) return false;
    lock_guard lk(lock_);
    const std::uint32_t have = count_.load(std::memory_order_relaxed);
    if (have < n) return false;
    std::memcpy(out, slots_ + have - n, n * sizeof(void*));
    count_.store(have - n, std::memory_order_relaxed);
    return true;
}

std::uint32_t transfer_cache::take_all(void** out) noexcept {
    lock_guard lk(lock_);
    const std::uint32_t have = count_.load(std::memory_order_relaxed);
    if (have == 0) return 0;  // also before initialisation, with no slots yet
    std::memcpy(out, slots_, have * sizeof(void*));
    count_.store(0, std::memory_order_relaxed);
    return have;
}

}  // namespace spanmap::detail

#include "transfer.h"

#include <cstring>

namespace spanmap::detail {

std::uint32_t transfer_cache::put(void* const* objs, std::uint32_t n) noexcept {
    // A racy peek first, as take's: a flush that would find the tier full
    // (a thread whose working set of the class overflows its bin, batch
    // after batch) skips the lock.
    if (n < batch_ || capacity_ - count_.load(std::memory_order_relaxed) < batch_) return 0;
    lock_guard lk(lock_);
    const std::uint32_t have = count_.load(std::memory_order_relaxed);
    const std::uint32_t room = capacity_ - have;
    std::uint32_t k = (n < room ? n : room) / batch_ * batch_;
    if (k == 0) return 0;
    std::memcpy(slots_ + have, objs, k * sizeof(void*));
    count_.store(have + k, std::memory_order_relaxed);
    return k;
}

std::uint32_t transfer_cache::take(void** out, std::uint32_t n) noexcept {
    // A racy peek first: a refill that would find the tier empty (the common
    // case in a program that never frees across threads) skips the lock.
    if (n < batch_ || count_.load(std::memory_order_relaxed) < batch_) return 0;
    lock_guard lk(lock_);
    const std::uint32_t have = count_.load(std::memory_order_relaxed);
    const std::uint32_t k = (n < have ? n : have) / batch_ * batch_;
    if (k == 0) return 0;
    std::memcpy(out, slots_ + have - k, k * sizeof(void*));
    count_.store(have - k, std::memory_order_relaxed);
    return k;
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

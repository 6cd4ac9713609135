#pragma once
// spanmap as a std::pmr::memory_resource: any pmr container on the arena.
//
// do_allocate honours every power-of-two alignment (small ones from a size
// class whose objects are aligned to it, larger ones from pages placed on an
// aligned boundary) and size 0, and throws std::bad_alloc on failure.
// do_deallocate passes the size it is given to spanmap's sized free, which
// checks it against the block. All spanmap resources share the one process
// heap, so any two compare equal: memory from one may go back through another.

#include <spanmap/alloc.h>

#include <memory_resource>

namespace spanmap {

class memory_resource : public std::pmr::memory_resource {
public:
    constexpr memory_resource() noexcept = default;

protected:
    void* do_allocate(std::size_t bytes, std::size_t alignment) override;
    void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override;
    bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override;
};

// The process-wide resource; never destroyed, so usable from static
// destructors and atexit handlers.
memory_resource* pmr_resource() noexcept;

}  // namespace spanmap

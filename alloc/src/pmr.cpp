#include "internal.h"

#include <spanmap/pmr.h>

namespace spanmap {

SPANMAP_ALLOC_TEXT void* memory_resource::do_allocate(std::size_t bytes, std::size_t alignment) {
    return spanmap::allocate(bytes, alignment);
}

void memory_resource::do_deallocate(void* p, std::size_t bytes, std::size_t alignment) {
    spanmap::deallocate(p, bytes, alignment);
}

bool memory_resource::do_is_equal(const std::pmr::memory_resource& other) const noexcept {
    return this == &other || dynamic_cast<const memory_resource*>(&other) != nullptr;
}

namespace {

// A union member is never destroyed: the resource outlives every static
// object that might still hand memory back to it at exit.
union resource_holder {
    constexpr resource_holder() noexcept : resource() {}
    ~resource_holder() {}
    memory_resource resource;
};

constinit resource_holder holder;

}  // namespace

memory_resource* pmr_resource() noexcept { return &holder.resource; }

}  // namespace spanmap

// A C++ program using an installed spanmap through <spanmap/alloc.h>.
#include <spanmap/alloc.h>

#include <cstdint>
#include <cstdio>
#include <numeric>
#include <vector>

int main() {
    std::vector<long, spanmap::allocator<long>> v(1000);
    std::iota(v.begin(), v.end(), 1L);
    if (std::accumulate(v.begin(), v.end(), 0L) != 500500L) return 1;
    if (spanmap::usable_size(v.data()) < v.size() * sizeof(long)) return 1;

    void* p = spanmap::allocate(64, 64);
    if (reinterpret_cast<std::uintptr_t>(p) % 64 != 0) return 1;
    spanmap::deallocate(p, 64, 64);
    std::printf("spanmap consumer ok (C++)\n");
    return 0;
}

// alloc_tour: a short walk through spanmap's allocator that prints what it
// did — size classes, reuse of freed memory, threads freeing each other's
// objects, a large object, aligned memory, a std::vector on
// spanmap::allocator, and the heap before and after.
#include <spanmap/alloc.h>
#include <spanmap/spanmap.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

namespace {

void print_heap(const char* when) {
    const spanmap::debug::heap_info h = spanmap::debug::read_heap_info();
    std::printf("heap %-6s %zu arena(s), pages: %zu in use, %zu free; %zu small spans, "
                "%zu large objects; thread caches: %zu live, %zu pooled\n",
                when, h.arenas, h.pages_in_use, h.pages_free, h.small_spans, h.large_objects,
                h.live_caches, h.pooled_caches);
}

std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

// 1. What a request of n bytes really gets: Go's size classes, except that
//    malloc's 16-byte alignment sends 17..24 bytes to the 32-byte class.
void size_classes() {
    std::printf("\n1. size classes (request -> usable bytes)\n  ");
    const std::size_t sizes[] = {0, 1, 8, 9, 16, 17, 24, 25, 33, 100, 1000, 1025, 9000, 32768, 32769};
    for (std::size_t n : sizes) {
        void* p = spanmap_malloc(n);
        std::printf(" %zu->%zu", n, spanmap_usable_size(p));
        spanmap_free(p);
    }
    void* p = spanmap::allocate(24, 8);
    std::printf("\n   C++, sized and aligned to 8: allocate(24, 8) -> %zu usable (the 24-byte class)\n",
                spanmap::usable_size(p));
    spanmap::deallocate(p, 24, 8);
}

// 2. Freed objects go back to the thread's cache and come out again. A
//    thread's cache is bounded: past that, freed objects return to their
//    spans in mcentral, from where they may be handed out again.
std::size_t reused(std::size_t n, std::size_t size) {
    std::vector<void*> first(n), second(n);
    for (auto& p : first) p = spanmap_malloc(size);
    for (void* p : first) spanmap_free(p);
    for (auto& p : second) p = spanmap_malloc(size);
    std::sort(first.begin(), first.end());
    const auto count = std::count_if(second.begin(), second.end(), [&](void* p) {
        return std::binary_search(first.begin(), first.end(), p);
    });
    for (void* p : second) spanmap_free(p);
    return static_cast<std::size_t>(count);
}

void reuse() {
    std::printf("\n2. reuse: 48 B objects allocated, freed, allocated again: %zu of 100 addresses came back "
                "(from the thread cache), %zu of 10000 (the rest via mcentral)\n",
                reused(100, 48), reused(10000, 48));
}

// 3. Threads allocate objects of every small class, fill them with a pattern,
//    then each thread checks and frees the objects of the next one.
std::size_t object_size(std::size_t i) { return 8 + (i * 37) % 505; }  // 8..512 bytes: classes 1..26

void threads() {
    constexpr int nthreads = 4;
    constexpr std::size_t per_thread = 100'000;
    std::vector<std::vector<unsigned char*>> objects(nthreads);
    const auto start = std::chrono::steady_clock::now();

    auto run = [&](auto body) {
        std::vector<std::thread> ts;
        for (int t = 0; t < nthreads; ++t) ts.emplace_back(body, t);
        for (auto& th : ts) th.join();
    };
    run([&](int t) {
        auto& mine = objects[t];
        mine.reserve(per_thread);
        for (std::size_t i = 0; i < per_thread; ++i) {
            const std::size_t size = object_size(i);
            auto* p = static_cast<unsigned char*>(spanmap_malloc(size));
            std::memset(p, t + 1, size);
            mine.push_back(p);
        }
    });
    std::vector<std::size_t> bad_per_thread(nthreads);
    run([&](int t) {
        const int owner = (t + 1) % nthreads;
        for (std::size_t i = 0; i < per_thread; ++i) {
            unsigned char* p = objects[owner][i];
            const std::size_t size = object_size(i);
            if (p[0] != owner + 1 || p[size - 1] != owner + 1) ++bad_per_thread[t];
            spanmap_free(p);
        }
    });
    std::size_t bad = 0;
    for (std::size_t b : bad_per_thread) bad += b;
    const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start);
    std::printf("\n3. threads: %d threads x %zu objects of 8..512 B, each freed by another thread: "
                "%zu corrupted, %.0f ms\n",
                nthreads, per_thread, bad, ms.count());
}

// 4. Over 32 KiB an object is a span of its own, rounded up to 8 KiB pages.
void large() {
    const std::size_t n = (1u << 20) + 1;
    void* p = spanmap_malloc(n);
    std::memset(p, 0xab, n);
    std::printf("\n4. large: malloc(%zu) -> %zu usable (%zu pages)\n", n, spanmap_usable_size(p),
                spanmap_usable_size(p) / 8192);
    print_heap("with");
    spanmap_free(p);
}

// 5. Any power-of-two alignment.
void aligned() {
    std::printf("\n5. aligned:");
    for (std::size_t align : {64u, 4096u, 1u << 20}) {
        void* p = spanmap_aligned_alloc(align, 100);
        std::printf(" aligned_alloc(%zu, 100) %% %zu = %zu;", align, align, addr(p) % align);
        spanmap_free(p);
    }
    std::printf("\n");
}

// 6. A standard container on spanmap::allocator (sized deallocation).
void vector() {
    std::vector<std::uint64_t, spanmap::allocator<std::uint64_t>> v;
    std::size_t moves = 0;
    const std::uint64_t* data = nullptr;
    for (std::uint64_t i = 0; i < 1'000'000; ++i) {
        v.push_back(i);
        if (v.data() != data) {
            ++moves;
            data = v.data();
        }
    }
    std::uint64_t sum = 0;
    for (std::uint64_t x : v) sum += x;
    std::printf("\n6. vector<uint64_t, spanmap::allocator>: 1e6 push_backs, %zu buffers, sum %llu, "
                "capacity %zu, usable %zu B\n",
                moves, static_cast<unsigned long long>(sum), v.capacity(), spanmap::usable_size(v.data()));
}

}  // namespace

int main() {
    std::printf("spanmap alloc tour: Go's size classes, thread caches, central lists, a page heap\n");
    print_heap("before");
    size_classes();
    reuse();
    threads();
    large();
    aligned();
    vector();

    spanmap_thread_cache_flush();
    std::printf("\n");
    print_heap("after");
    char why[256] = "";
    const bool ok = spanmap::debug::check_invariants(why, sizeof why);
    std::printf("invariants: %s%s\n", ok ? "ok" : "VIOLATED: ", why);
    return ok ? 0 : 1;
}

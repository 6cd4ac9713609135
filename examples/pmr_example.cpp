// pmr containers on spanmap's arena: a std::pmr::unordered_map of
// std::pmr::string to std::pmr::vector, all of it allocated from spanmap
// through one memory_resource, and a pool resource stacked on top.
#include <spanmap/pmr.h>

#include <cstdio>
#include <memory_resource>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

// Counts what passes through to the resource below it.
class counting_resource : public std::pmr::memory_resource {
public:
    explicit counting_resource(std::pmr::memory_resource* upstream) : upstream_(upstream) {}
    std::size_t allocations = 0;
    std::size_t bytes = 0;

private:
    void* do_allocate(std::size_t n, std::size_t align) override {
        ++allocations;
        bytes += n;
        return upstream_->allocate(n, align);
    }
    void do_deallocate(void* p, std::size_t n, std::size_t align) override { upstream_->deallocate(p, n, align); }
    bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override { return this == &other; }
    std::pmr::memory_resource* upstream_;
};

}  // namespace

int main() {
    counting_resource arena(spanmap::pmr_resource());
    {
        // Every node, bucket array, key string and value vector comes from the
        // arena: the map hands its resource down to what it contains.
        std::pmr::unordered_map<std::pmr::string, std::pmr::vector<int>> index(&arena);
        const char* words[] = {"span", "arena", "mcache", "mcentral", "mheap", "page", "class"};
        for (int i = 0; i < 20000; ++i) {
            std::pmr::string key(words[i % 7], &arena);
            key += "-";
            key += std::to_string(i % 1000).c_str();
            index[key].push_back(i);
        }
        std::printf("unordered_map: %zu keys, %zu allocations, %zu bytes requested from spanmap\n", index.size(),
                    arena.allocations, arena.bytes);
        const auto& v = index.at(std::pmr::string("mheap-4", &arena));
        std::printf("  mheap-4 -> %zu values, first %d\n", v.size(), v.front());
    }
    const std::size_t before = arena.allocations;
    {
        // A pool in front of the arena: small blocks come from the pool's
        // chunks, and only the chunks are requested from spanmap.
        std::pmr::unsynchronized_pool_resource pool(&arena);
        std::pmr::vector<std::pmr::string> names(&pool);
        for (int i = 0; i < 20000; ++i) names.emplace_back(std::to_string(i * 7919).c_str());
        std::printf("pool on top: %zu strings, %zu allocations reached spanmap\n", names.size(),
                    arena.allocations - before);
    }
    void* p = spanmap::pmr_resource()->allocate(1 << 20, 1 << 21);
    std::printf("a 1 MiB block aligned to 2 MiB at %p (usable %zu bytes)\n", p, spanmap::usable_size(p));
    spanmap::pmr_resource()->deallocate(p, 1 << 20, 1 << 21);
    return 0;
}

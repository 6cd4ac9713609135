// spanmap::memory_resource: alignment and size sweep, standard pmr containers
// and pool resources on top of it, each under a wrapper that checks every
// deallocate against its allocate.
#include <spanmap/pmr.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <list>
#include <map>
#include <memory_resource>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace {

// Forwards to an upstream resource and remembers every live block, so that a
// deallocate with another size or alignment, or of an unknown pointer, fails
// the test. Its bookkeeping lives on the default global heap, not upstream.
class checking_resource : public std::pmr::memory_resource {
public:
    explicit checking_resource(std::pmr::memory_resource* upstream) : upstream_(upstream) {}
    ~checking_resource() override { EXPECT_TRUE(live_.empty()) << live_.size() << " blocks never deallocated"; }

    std::size_t allocations() const { return allocations_; }
    std::size_t live() const { return live_.size(); }

private:
    struct block {
        std::size_t bytes;
        std::size_t alignment;
    };

    void* do_allocate(std::size_t bytes, std::size_t alignment) override {
        void* p = upstream_->allocate(bytes, alignment);
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % alignment, 0u) << bytes << " bytes aligned " << alignment;
        EXPECT_TRUE(live_.emplace(p, block{bytes, alignment}).second) << "block handed out twice: " << p;
        ++allocations_;
        return p;
    }
    void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override {
        auto it = live_.find(p);
        if (it == live_.end()) {
            ADD_FAILURE() << "deallocate of an unknown pointer " << p;
            return;
        }
        EXPECT_EQ(it->second.bytes, bytes) << "size differs from the allocation at " << p;
        EXPECT_EQ(it->second.alignment, alignment) << "alignment differs from the allocation at " << p;
        live_.erase(it);
        upstream_->deallocate(p, bytes, alignment);
    }
    bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override { return this == &other; }

    std::pmr::memory_resource* upstream_;
    std::map<void*, block> live_;
    std::size_t allocations_ = 0;
};

TEST(Pmr, AlignmentAndSizeSweep) {
    std::pmr::memory_resource* r = spanmap::pmr_resource();
    const std::size_t sizes[] = {0, 1, 7, 8, 9, 16, 24, 33, 100, 1000, 4096, 5000, 32768, 32769, 100000, (1 << 20) + 5};
    for (std::size_t align = 1; align <= (std::size_t{2} << 20); align <<= 1) {
        for (std::size_t size : sizes) {
            void* p = r->allocate(size, align);
            ASSERT_NE(p, nullptr);
            EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % align, 0u) << size << " bytes aligned " << align;
            EXPECT_GE(spanmap::usable_size(p), size);
            if (size > 0) {
                std::memset(p, 0x5a, size);
                EXPECT_EQ(static_cast<unsigned char*>(p)[size - 1], 0x5a);
            }
            r->deallocate(p, size, align);
        }
    }
}

TEST(Pmr, SizeZeroGivesDistinctBlocks) {
    std::pmr::memory_resource* r = spanmap::pmr_resource();
    void* a = r->allocate(0, 16);
    void* b = r->allocate(0, 16);
    EXPECT_NE(a, b);
    r->deallocate(a, 0, 16);
    r->deallocate(b, 0, 16);
}

TEST(Pmr, FailureThrowsBadAlloc) {
    std::pmr::memory_resource* r = spanmap::pmr_resource();
    EXPECT_THROW((void)r->allocate(std::size_t{1} << 62, 16), std::bad_alloc);
    EXPECT_THROW((void)r->allocate(64, std::size_t{1} << 62), std::bad_alloc);
}

TEST(Pmr, ResourcesOverTheSameHeapAreEqual) {
    spanmap::memory_resource other;
    EXPECT_TRUE(spanmap::pmr_resource()->is_equal(other));
    EXPECT_TRUE(*spanmap::pmr_resource() == other);
    EXPECT_FALSE(spanmap::pmr_resource()->is_equal(*std::pmr::new_delete_resource()));
    // Memory may go back through any resource over the heap.
    void* p = other.allocate(100, 8);
    spanmap::pmr_resource()->deallocate(p, 100, 8);
}

TEST(Pmr, FreedBlocksAreReused) {
    std::pmr::memory_resource* r = spanmap::pmr_resource();
    void* p = r->allocate(200, 16);
    r->deallocate(p, 200, 16);
    void* q = r->allocate(200, 16);
    EXPECT_EQ(p, q);
    r->deallocate(q, 200, 16);
}

TEST(Pmr, StandardContainers) {
    checking_resource check(spanmap::pmr_resource());
    {
        std::pmr::vector<int> v(&check);
        for (int i = 0; i < 100000; ++i) v.push_back(i);
        std::pmr::string s("a string long enough to leave the small-string buffer behind", &check);
        for (int i = 0; i < 1000; ++i) s += static_cast<char>('a' + i % 26);
        std::pmr::list<std::pmr::string> l(&check);
        for (int i = 0; i < 1000; ++i) l.emplace_back(std::to_string(i) + " is a number written out long enough");
        std::pmr::unordered_map<std::pmr::string, std::pmr::vector<int>> m(&check);
        for (int i = 0; i < 5000; ++i) {
            auto& vec = m[std::pmr::string("key number ") + std::to_string(i).c_str()];
            vec.assign(static_cast<std::size_t>(i % 17), i);
        }
        // Contents survive the rehashes and reallocations.
        for (int i = 0; i < 100000; i += 997) EXPECT_EQ(v[static_cast<std::size_t>(i)], i);
        EXPECT_EQ(s.size(), 60u + 1000u);
        EXPECT_EQ(l.size(), 1000u);
        EXPECT_EQ(std::string_view(l.back()), "999 is a number written out long enough");
        ASSERT_EQ(m.size(), 5000u);
        const auto& found = m.at(std::pmr::string("key number 4999"));
        EXPECT_EQ(found.size(), 4999u % 17);
        // Nested containers take the outer allocator (uses-allocator construction).
        EXPECT_EQ(found.get_allocator().resource(), &check);
        EXPECT_GT(check.allocations(), 5000u);
    }
    EXPECT_EQ(check.live(), 0u);
}

TEST(Pmr, UpstreamOfMonotonicAndPoolResources) {
    checking_resource check(spanmap::pmr_resource());
    {
        std::pmr::monotonic_buffer_resource mono(&check);
        std::pmr::vector<std::pmr::string> v(&mono);
        for (int i = 0; i < 10000; ++i) v.emplace_back(std::string(40, static_cast<char>('a' + i % 26)).c_str());
        EXPECT_EQ(std::string_view(v[9999]), std::string(40, static_cast<char>('a' + 9999 % 26)));
    }
    {
        std::pmr::unsynchronized_pool_resource pool(&check);
        std::pmr::list<int> l(&pool);
        for (int i = 0; i < 50000; ++i) l.push_back(i);
        long sum = 0;
        for (int x : l) sum += x;
        EXPECT_EQ(sum, 50000L * 49999 / 2);
    }
    {
        std::pmr::synchronized_pool_resource pool(&check);
        std::pmr::unordered_map<int, std::pmr::string> m(&pool);
        for (int i = 0; i < 20000; ++i) m.emplace(i, std::to_string(i).c_str());
        EXPECT_EQ(std::string_view(m.at(12345)), "12345");
        // A request beyond the pool's largest block goes upstream as is.
        void* big = pool.allocate(1 << 22, 64);
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(big) % 64, 0u);
        pool.deallocate(big, 1 << 22, 64);
    }
    EXPECT_EQ(check.live(), 0u);
}

TEST(Pmr, DefaultResource) {
    checking_resource check(spanmap::pmr_resource());
    std::pmr::memory_resource* previous = std::pmr::set_default_resource(&check);
    {
        std::pmr::vector<long> v;  // picks up the default resource
        for (long i = 0; i < 1000; ++i) v.push_back(i * i);
        EXPECT_EQ(v.get_allocator().resource(), &check);
        EXPECT_EQ(v[999], 999L * 999);
    }
    std::pmr::set_default_resource(previous);
    EXPECT_GT(check.allocations(), 0u);
    EXPECT_EQ(check.live(), 0u);
}

}  // namespace

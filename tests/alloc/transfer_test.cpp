// The transfer tier alone, against a model: a stack of whole batches. Random
// puts and takes of one or more batches and of sizes between (of which it
// moves the whole batches that fit) over a tier with its own storage; after
// every step its contents equal the model's, object for object.
#include "transfer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace {

using spanmap::detail::transfer_cache;

TEST(TransferTier, MatchesAModelOfWholeBatches) {
    for (const std::uint32_t batch : {1u, 5u, 64u}) {
        const std::uint32_t capacity = 4 * batch;
        std::vector<void*> storage(capacity);
        transfer_cache t;
        t.init(storage.data(), capacity, batch);
        std::vector<void*> model;
        std::uint64_t rng = 0x2545f4914f6cdd1dULL + batch;
        auto next = [&rng](std::uint64_t bound) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            return rng % bound;
        };
        std::uintptr_t fresh = 0x1000;
        for (int step = 0; step < 2000; ++step) {
            // One to three batches, or a size between, or less than one.
            const std::uint32_t n = static_cast<std::uint32_t>(next(3 * batch + 2));
            std::vector<void*> objs(n);
            if (next(2) == 0) {
                for (void*& p : objs) p = reinterpret_cast<void*>(fresh += 16);
                const std::uint32_t room = capacity - static_cast<std::uint32_t>(model.size());
                const std::uint32_t fits = std::min(n, room) / batch * batch;
                ASSERT_EQ(t.put(objs.data(), n), fits) << "step " << step;
                // The front of objs, in order.
                model.insert(model.end(), objs.begin(), objs.begin() + fits);
            } else {
                const std::uint32_t has = std::min<std::uint32_t>(n, static_cast<std::uint32_t>(model.size())) / batch * batch;
                ASSERT_EQ(t.take(objs.data(), n), has) << "step " << step;
                // The newest objects, in order.
                ASSERT_TRUE(std::equal(objs.begin(), objs.begin() + has, model.end() - has)) << "step " << step;
                model.resize(model.size() - has);
            }
            ASSERT_EQ(t.size(), model.size());
            ASSERT_TRUE(std::equal(model.begin(), model.end(), t.objects()));
        }
        std::vector<void*> all(capacity);
        ASSERT_EQ(t.take_all(all.data()), model.size());
        all.resize(model.size());
        EXPECT_EQ(all, model);
        EXPECT_EQ(t.size(), 0u);
    }
}

}  // namespace

// The transfer tier alone, against a model: a stack of whole batches. Random
// puts and takes of batches (and of sizes that are not a batch, which it
// refuses) over a tier with its own storage; after every step its contents
// equal the model's, object for object.
#include "transfer.h"

#include <gtest/gtest.h>

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
            // Mostly whole batches; now and then a size the tier must refuse.
            const std::uint32_t n = next(8) == 0 ? batch + 1 : batch;
            std::vector<void*> objs(n);
            if (next(2) == 0) {
                for (void*& p : objs) p = reinterpret_cast<void*>(fresh += 16);
                const bool fits = n == batch && model.size() + n <= capacity;
                ASSERT_EQ(t.put(objs.data(), n), fits) << "step " << step;
                if (fits) model.insert(model.end(), objs.begin(), objs.end());
            } else {
                const bool has = n == batch && model.size() >= n;
                ASSERT_EQ(t.take(objs.data(), n), has) << "step " << step;
                if (has) {
                    // The newest batch, whole and in order.
                    ASSERT_TRUE(std::equal(objs.begin(), objs.end(), model.end() - n)) << "step " << step;
                    model.resize(model.size() - n);
                }
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

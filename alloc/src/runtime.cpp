#include "runtime.h"

#include "cache.h"
#include "conf.h"
#include "sampling.h"
#include "scavenge.h"

namespace spanmap::detail {

constinit global_state g;
constinit free_keys free_key{};

namespace {

// Every class's transfer slots, carved up by init_slow.
void* transfer_storage[total_transfer_slots()];

void fork_prepare() noexcept {
    sampler_fork_prepare();
    g.init_lock.lock();
    lock_all();
}

void fork_parent() noexcept {
    unlock_all();
    g.init_lock.unlock();
    sampler_fork_parent();
}

void fork_child() noexcept {
    large_slots_after_fork_child();
    fork_parent();
    sampler_fork_child();
    scavenger_after_fork_child();
    // Only the forking thread lives on in the child: the caches of the others
    // would hold their objects forever, so they are emptied and parked now.
    for (;;) {
        mcache* orphan = nullptr;
        {
            lock_guard lk(g.caches_lock);
            for (mcache* mc = g.live; mc != nullptr; mc = mc->next)
                if (mc != thread_cache()) {
                    orphan = mc;
                    break;
                }
        }
        if (orphan == nullptr) break;
        retire(orphan);
    }
}

}  // namespace

void lock_all() noexcept {
    for (unsigned c = 1; c < num_classes; ++c) g.central[c].lock().lock();
    for (unsigned c = 1; c < num_classes; ++c) g.transfer[c].lock().lock();
    g.large.lock().lock();
    g.heap.lock().lock();
    g.caches_lock.lock();
}

void unlock_all() noexcept {
    g.caches_lock.unlock();
    g.heap.lock().unlock();
    g.large.lock().unlock();
    for (unsigned c = num_classes - 1; c >= 1; --c) g.transfer[c].lock().unlock();
    for (unsigned c = num_classes - 1; c >= 1; --c) g.central[c].lock().unlock();
}

void init_slow() noexcept {
    {
        lock_guard lk(g.init_lock);
        if (g.init_state.load(std::memory_order_relaxed) == 2) return;
        for (unsigned c = 0; c < num_classes; ++c) g.central[c].init(c, &g.heap);
        std::size_t slot = 0;
        for (unsigned c = 1; c < num_classes; ++c) {
            g.transfer[c].init(&transfer_storage[slot], class_transfer_slots(c), bin_batch(c));
            slot += class_transfer_slots(c);
        }
        free_key.xor_key = os_random() | 15;
        free_key.mul_key = os_random() | 1;
        if (pthread_key_create(&g.exit_key, cache_thread_exit) != 0)
            fatal("init", nullptr, "no pthread key left for thread-exit cleanup");
        read_conf();
        large_slots_init();
        g.init_state.store(2, std::memory_order_release);
    }
    // Registered once the allocator is usable and outside the init lock:
    // glibc may allocate to record the handlers, which must not recurse into
    // an initialisation in progress.
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

}  // namespace spanmap::detail

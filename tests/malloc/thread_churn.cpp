// 1000 threads, created and joined in waves; each frees the blocks its
// predecessor allocated (checking their contents) and leaves its own for the
// next one. Exits 0 when every check passed.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

namespace {

constexpr int total_threads = 1000;
constexpr int wave = 8;
constexpr int blocks = 200;

std::mutex handoff_lock;
std::vector<unsigned char*> handoff;  // blocks waiting for another thread to free them
int bad = 0;

void worker(int id) {
    std::vector<unsigned char*> mine;
    for (int i = 0; i < blocks; ++i) {
        const std::size_t n = 16 + static_cast<std::size_t>((id * 131 + i * 17) % 3000);
        auto* p = static_cast<unsigned char*>(std::malloc(n));
        // Two bytes of length, then the owner's id byte repeated: the next
        // thread checks every byte before it frees the block.
        p[0] = static_cast<unsigned char>(n & 0xff);
        p[1] = static_cast<unsigned char>(n >> 8);
        std::memset(p + 2, id & 0xff, n - 2);
        mine.push_back(p);
    }
    std::vector<unsigned char*> theirs;
    {
        std::lock_guard<std::mutex> g(handoff_lock);
        theirs.swap(handoff);
        handoff = mine;
    }
    for (unsigned char* p : theirs) {
        const std::size_t n = p[0] | std::size_t{p[1]} << 8;
        for (std::size_t i = 3; i < n; ++i)
            if (p[i] != p[2]) {
                std::lock_guard<std::mutex> g(handoff_lock);
                ++bad;
                break;
            }
        std::free(p);
    }
}

}  // namespace

int main() {
    if (dlsym(RTLD_DEFAULT, "spanmap_malloc") == nullptr) {
        std::fprintf(stderr, "not running on spanmap's malloc\n");
        return 2;
    }
    for (int started = 0; started < total_threads; started += wave) {
        std::vector<std::thread> threads;
        for (int i = 0; i < wave; ++i) threads.emplace_back(worker, started + i);
        for (auto& t : threads) t.join();
    }
    for (unsigned char* p : handoff) std::free(p);
    std::printf("threads: %d, bad blocks: %d\n", total_threads, bad);
    return bad == 0 ? 0 : 1;
}

// Forks, repeatedly, while other threads allocate and free; parent and child
// then allocate, fill, check and free. Exits 0 when every child did too.
#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {

std::atomic<bool> stop{false};

// Allocates blocks of mixed sizes, writes a pattern, checks it before freeing.
bool churn(unsigned seed, int rounds) {
    std::vector<unsigned char*> live;
    std::vector<std::size_t> sizes;
    for (int i = 0; i < rounds; ++i) {
        seed = seed * 1103515245u + 12345u;
        const std::size_t n = (seed >> 8) % 3 == 0 ? 40000 + (seed >> 4) % 200000 : 1 + (seed >> 4) % 2000;
        auto* p = static_cast<unsigned char*>(std::malloc(n));
        if (p == nullptr) return false;
        std::memset(p, static_cast<int>(n & 0xff), n);
        live.push_back(p);
        sizes.push_back(n);
        if (live.size() > 64 || (seed & 1)) {
            const std::size_t k = (seed >> 3) % live.size();
            const std::size_t m = sizes[k];
            if (live[k][0] != (m & 0xff) || live[k][m - 1] != (m & 0xff)) return false;
            std::free(live[k]);
            live[k] = live.back();
            sizes[k] = sizes.back();
            live.pop_back();
            sizes.pop_back();
        }
    }
    for (auto* p : live) std::free(p);
    return true;
}

}  // namespace

int main() {
    if (dlsym(RTLD_DEFAULT, "spanmap_malloc") == nullptr) {
        std::fprintf(stderr, "not running on spanmap's malloc\n");
        return 2;
    }
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (unsigned t = 0; t < 3; ++t)
        threads.emplace_back([t, &failures] {
            while (!stop.load()) if (!churn(t * 7919u + 1, 500)) ++failures;
        });
    int bad_children = 0;
    for (int i = 0; i < 40; ++i) {
        const pid_t pid = fork();
        if (pid == 0) _exit(churn(static_cast<unsigned>(i) * 31u + 7u, 3000) ? 0 : 1);
        if (pid < 0) return 3;
        if (!churn(static_cast<unsigned>(i), 200)) ++failures;
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++bad_children;
    }
    stop = true;
    for (auto& t : threads) t.join();
    std::printf("forks: 40, failed children: %d, failed checks: %d\n", bad_children, failures.load());
    return bad_children == 0 && failures == 0 ? 0 : 1;
}

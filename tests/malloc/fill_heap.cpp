// Allocates 1 MiB blocks until malloc fails, touching one byte of each, and
// prints how many it got: the heap a program can use under `ulimit -v`.
// Knows nothing of spanmap; address_space.sh runs it with and without it.
#include <cerrno>
#include <cstdio>
#include <cstdlib>

int main() {
    long blocks = 0;
    for (;;) {
        auto* p = static_cast<volatile char*>(std::malloc(1 << 20));
        if (p == nullptr) break;
        p[0] = 1;
        ++blocks;
    }
    // A failed malloc says why: ENOMEM, as the C standard's POSIX extension asks.
    if (errno != ENOMEM) return 2;
    std::printf("%ld\n", blocks);
    return 0;
}

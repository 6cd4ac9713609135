/* large_pair: N malloc/free pairs of one size through plain malloc, for
 * counting instructions under callgrind with any allocator preloaded:
 *
 *   valgrind --tool=callgrind ... large_pair SIZE N
 *
 * bench/large_compare.sh runs it at two counts and divides the difference, so
 * start-up and the first (cold) pair drop out. Each pair writes the block's
 * first and last byte, as alloc_bench's pair case does. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: large_pair SIZE N\n");
        return 2;
    }
    const size_t size = strtoull(argv[1], NULL, 0);
    const long n = strtol(argv[2], NULL, 0);
    unsigned sum = 0;
    for (long i = 0; i < n; ++i) {
        volatile unsigned char* p = malloc(size);
        if (p == NULL) return 1;
        p[0] = 1;
        p[size - 1] = 2;
        sum += p[0];
        free((void*)p);
    }
    return sum == (unsigned)n ? 0 : 1;
}

/* The ratio workload of profile_program, in C on plain malloc: run under
 * LD_PRELOAD=libspanmap_malloc.so with SPANMAP_CONF=prof:true,... it is
 * profiled without knowing anything of spanmap. */
#include <stdlib.h>

#define ROUNDS 2048
static void* kept[2 * ROUNDS];

__attribute__((noinline)) void* allocate_three_quarters(void) {
    void* p = malloc(12288);
    __asm__ volatile("" ::"r"(p) : "memory");
    return p;
}

__attribute__((noinline)) void* allocate_one_quarter(void) {
    void* p = malloc(4096);
    __asm__ volatile("" ::"r"(p) : "memory");
    return p;
}

__attribute__((noinline)) void allocate_and_free(void) {
    void* p = malloc(8192);
    __asm__ volatile("" ::"r"(p) : "memory");
    free(p);
}

int main(void) {
    for (int i = 0; i < ROUNDS; ++i) {
        kept[2 * i] = allocate_three_quarters();
        kept[2 * i + 1] = allocate_one_quarter();
        allocate_and_free();
        allocate_and_free();
    }
    return 0;
}

/* A plain C program, not linked with spanmap: run under
 * LD_PRELOAD=libspanmap_malloc.so with SPANMAP_CONF=stats_print:true, its
 * malloc is spanmap's and the report at exit describes it — statistics
 * gathered and printed while spanmap is malloc. */
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    void* blocks[100];
    for (int i = 0; i < 100; ++i) blocks[i] = malloc((size_t)(16 + i * 40));
    for (int i = 0; i < 100; i += 2) free(blocks[i]);
    printf("preload probe: done (%p)\n", blocks[1]);
    return 0;
}

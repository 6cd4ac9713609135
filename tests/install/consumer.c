/* A C program using an installed spanmap through <spanmap/spanmap.h>. */
#include <spanmap/spanmap.h>

#include <stdio.h>
#include <string.h>

int main(void) {
    char* p = spanmap_malloc(20);
    if (p == NULL) return 1;
    memcpy(p, "spanmap", 8);
    /* 17..24-byte requests come from the 32-byte class (16-byte alignment). */
    size_t usable = spanmap_usable_size(p);
    if (usable != 32) {
        fprintf(stderr, "usable size of malloc(20) is %zu, want 32\n", usable);
        return 1;
    }
    p = spanmap_realloc(p, 100000);
    if (p == NULL || strcmp(p, "spanmap") != 0) return 1;
    spanmap_free(p);
    printf("spanmap consumer ok (C)\n");
    return 0;
}

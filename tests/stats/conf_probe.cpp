// A program for the end-to-end SPANMAP_CONF tests: it allocates a little and
// exits; ctest runs it with the variable set and matches what it prints.
#include <spanmap/spanmap.h>

#include <cstdio>

int main() {
    void* keep = spanmap_malloc(100);
    void* gone = spanmap_malloc(100000);
    spanmap_free(gone);
    std::printf("conf probe: done (%p still allocated)\n", keep);
    return 0;
}

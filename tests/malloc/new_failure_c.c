/* operator new's failure in a process with no C++ runtime: a C program under
 * LD_PRELOAD calls the preload library's operator new(size_t) by its symbol.
 * With no libstdc++ to throw std::bad_alloc, the process must stop with
 * spanmap's message rather than return NULL or crash. */
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

int main(void) {
    void* sym = dlsym(RTLD_DEFAULT, "_Znwm");
    void* (*new_fn)(size_t) = NULL;
    memcpy(&new_fn, &sym, sizeof new_fn); /* ISO C has no object-to-function pointer cast */
    if (new_fn == NULL || dlsym(RTLD_DEFAULT, "_ZSt17__throw_bad_allocv") != NULL) {
        puts("not a C program on libspanmap_malloc.so");
        return 1;
    }
    void* p = new_fn((size_t)1 << 62);
    printf("operator new returned %p\n", p);
    return 1;
}

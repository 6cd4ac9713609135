// operator new's failures under LD_PRELOAD, in a program that knows nothing of
// spanmap. The preload library has no C++ runtime of its own, so the
// new_handler it calls and the std::bad_alloc it throws are this program's:
// they must be the very handler set here and an exception caught here.
// Exits 0 and prints "ok" when every check held.
#include <dlfcn.h>

#include <cstddef>
#include <cstdio>
#include <new>

namespace {

int failures = 0;

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "FAILED: %s\n", what);
        ++failures;
    }
}

constexpr std::size_t huge = std::size_t{1} << 62;  // no machine backs it
void* volatile sink;

int calls = 0;
void give_up_on_third_call() {
    if (++calls == 3) std::set_new_handler(nullptr);
}
void throw_from_handler() {
    ++calls;
    throw std::bad_alloc();
}

template <class F>
bool throws_bad_alloc(F f) {
    try {
        f();
    } catch (const std::bad_alloc&) {
        return true;
    }
    return false;
}

}  // namespace

int main() {
    check(::dlsym(RTLD_DEFAULT, "spanmap_malloc") != nullptr, "the program runs on libspanmap_malloc.so");

    check(throws_bad_alloc([] { sink = ::operator new(huge); }), "new(huge) throws std::bad_alloc");
    check(throws_bad_alloc([] { sink = new char[huge]; }), "new char[huge] throws std::bad_alloc");
    check(throws_bad_alloc([] { sink = ::operator new(huge, std::align_val_t{4096}); }),
          "aligned new(huge) throws std::bad_alloc");

    calls = 0;
    std::set_new_handler(give_up_on_third_call);
    check(throws_bad_alloc([] { sink = ::operator new(huge); }), "new(huge) with a handler throws at last");
    check(calls == 3, "the new_handler is called until it removes itself");

    // The nothrow forms: NULL, with or without a handler, even one that throws.
    calls = 0;
    std::set_new_handler(nullptr);
    check(::operator new(huge, std::nothrow) == nullptr, "nothrow new(huge) is NULL");
    std::set_new_handler(throw_from_handler);
    check(::operator new(huge, std::nothrow) == nullptr, "nothrow new(huge), throwing handler: NULL");
    check(::operator new[](huge, std::align_val_t{64}, std::nothrow) == nullptr,
          "aligned nothrow new[](huge), throwing handler: NULL");
    check(calls == 2, "the throwing handler ran once per nothrow call");
    std::set_new_handler(nullptr);

    // And the heap still serves.
    auto* p = new int[1000]();
    check(p[999] == 0, "a new[] after the failures");
    delete[] p;

    if (failures == 0) std::puts("ok");
    return failures == 0 ? 0 : 1;
}

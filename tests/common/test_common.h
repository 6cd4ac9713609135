// What every test helper header needs alike: whether this build runs under a
// sanitizer, and the heap's page size as the tests spell it.
#pragma once

#include <cstddef>

namespace spanmap::test {

#if defined(SPANMAP_SANITIZER) && SPANMAP_SANITIZER
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

// Sanitizers make every access several times slower; the tests keep their
// shape and shrink their counts.
constexpr std::size_t scaled(std::size_t normal, std::size_t sanitized) { return kSanitized ? sanitized : normal; }

// 8 KiB, Go's page; size_classes_test checks it against the generated table.
inline constexpr std::size_t kPage = 8192;

}  // namespace spanmap::test

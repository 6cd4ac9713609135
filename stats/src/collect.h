// How the statistics are gathered; <spanmap/stats.h> says what they mean.
//
// Two sources feed one builder. `counters` are the allocator's running
// counts: cumulative ones (mallocs, frees, bytes of large objects) that only
// counting can know, and the heap's running totals. A `heap_shape` says where
// the objects and pages are now; it comes either from the counters (cheap:
// read_mem_stats) or from walking every arena, span and thread cache under
// every lock (recompute_mem_stats, the class table, the report). Building
// mem_stats from either shape with the same code is what makes the test that
// compares the two meaningful: they differ only where the shape came from.
#pragma once

#include "introspect.h"

#include <spanmap/stats.h>

namespace spanmap::detail {

using introspect::counters;
using introspect::heap_shape;
using introspect::page_size;
inline constexpr unsigned num_classes = introspect::num_classes;

static_assert(num_size_classes == num_classes, "the public class count is the allocator's");

// Objects per span and the bytes of a span of class c (c >= 1).
inline std::uint64_t class_objects_per_span(unsigned c) {
    return std::uint64_t{introspect::class_pages(c)} * page_size / introspect::class_size(c);
}
inline std::uint64_t class_span_bytes(unsigned c) { return std::uint64_t{introspect::class_pages(c)} * page_size; }

void build_mem_stats(const counters& k, const heap_shape& h, mem_stats& m) noexcept;
void build_class_stats(const counters& k, const heap_shape& h, class_stats (&out)[num_classes]) noexcept;

}  // namespace spanmap::detail

// locate(): what the heap knows about one address — arena, span, object, and
// whether the object is out with the program, cached or free.
#include "collect.h"

namespace spanmap {

location locate(const void* ptr) noexcept {
    using introspect::place;
    const introspect::address_facts f = introspect::look_up(ptr);
    location r{};
    switch (f.where) {
        case place::not_in_heap: r.state = object_state::not_in_heap; break;
        case place::idle_page: r.state = object_state::idle_page; break;
        case place::span_tail: r.state = object_state::span_tail; break;
        case place::allocated: r.state = object_state::allocated; break;
        case place::cached: r.state = object_state::cached; break;
        case place::free: r.state = object_state::free; break;
    }
    r.arena = f.arena;
    r.span_start = f.span_start;
    r.span_end = f.span_end;
    r.pages = f.pages;
    r.size_class = f.size_class;
    r.object_start = f.object_start;
    r.object_size = f.object_size;
    r.object_index = f.object_index;
    r.interior = f.interior;
    return r;
}

const char* to_string(object_state s) noexcept {
    switch (s) {
        case object_state::not_in_heap: return "not in the heap";
        case object_state::idle_page: return "idle page (no span)";
        case object_state::span_tail: return "span tail (no object)";
        case object_state::allocated: return "allocated";
        case object_state::cached: return "free (in a thread cache)";
        case object_state::free: return "free (in its span)";
    }
    return "?";
}

}  // namespace spanmap

// mcentral: one per size class. See DESIGN.md for the overview.
//
// Owns the spans of its class: `partial` holds spans with at least one free
// object. Those with none are on no list, only counted (tagged `full`):
// nothing takes from them, and a free finds its span through the page map, so
// a list of them would only be kept up — for the classes of one object a span,
// on every fill and release of every object, with writes to the neighbours'
// records (357 -> 343 instructions a pair of 32 KiB objects in a batch,
// without the list). The checker finds them through the page map too. Thread
// caches come here in batches — fill() hands out up to n objects, release()
// takes objects back — so the lock is paid once per batch, not per object.
// Which objects of a span are free is a bitmap in the span, never a list
// threaded through the objects: a freed object's first word keeps the mark the
// free path wrote (see cache.h), so a double free is caught here too, and a
// fresh span's memory is not touched until an object is handed out.
//
// A span whose objects are all free goes back to mheap, except one per class
// kept as a spare so that a cache that drains and refills around a batch
// boundary does not make the heap carve the same span again and again; the
// heap keeps the others whole in its empty-span cache (heap.h) for the
// class's next fill, until something else needs their pages.
// Spans come from the heap, and go back to it, as many at a time as one
// fill or release needs (up to max_fresh_spans under one hold of the heap's
// lock): for the classes of one to a few objects a span, a refill is
// several spans.
//
// Callers: thread caches (and threads whose cache is gone). Lock order:
// mcentral -> mheap.
#pragma once

#include "heap.h"

namespace spanmap::detail {

class span_list {
public:
    mspan* head() const noexcept { return head_; }
    std::size_t size() const noexcept { return size_; }
    void push_front(mspan* s, span_list_id id) noexcept;
    void remove(mspan* s) noexcept;

private:
    mspan* head_ = nullptr;
    std::size_t size_ = 0;
};

// The most spans fill takes from the heap, or release gives back, under one
// hold of its lock.
inline constexpr std::size_t max_fresh_spans = 16;

class mcentral {
public:
    constexpr mcentral() noexcept = default;
    mcentral(const mcentral&) = delete;
    mcentral& operator=(const mcentral&) = delete;

    void init(unsigned size_class, mheap* heap) noexcept {
        size_class_ = size_class;
        heap_ = heap;
    }
    // Moves up to n free objects into out[0..n); returns how many (0 only when
    // the heap could not get memory from the OS).
    std::size_t fill(void** out, std::size_t n) noexcept;
    // Takes back n objects of this class (their starts, checked by the caller).
    void release(void* const* objs, std::size_t n) noexcept;
    // Returns the spare empty span (and any other wholly free one) to mheap.
    void release_empty_spans() noexcept;

    // For walkers: hold lock() while reading.
    mutex& lock() noexcept { return lock_; }
    const span_list& partial() const noexcept { return partial_; }
    std::size_t full_spans() const noexcept { return nfull_; }
    const mheap* heap() const noexcept { return heap_; }
    std::size_t empty_spans() const noexcept { return nempty_; }

private:
    mutex lock_;
    unsigned size_class_ = 0;
    mheap* heap_ = nullptr;
    span_list partial_;
    std::size_t nfull_ = 0;  // spans with no free object (on no list)
    std::size_t nempty_ = 0;  // spans on partial_ with every object free
};

// m's own invariants (debug.cpp): every span on its lists is a small span of
// size_class that the page map points back to, its bitmap agrees with nfree
// and handed, it sits on the list its nfree says, and at most one is wholly
// free. Hold m.lock(), or be m's only user. false, with the violation in
// why, when one does not hold.
bool check_central(const mcentral& m, unsigned size_class, char* why, std::size_t why_len) noexcept;

}  // namespace spanmap::detail

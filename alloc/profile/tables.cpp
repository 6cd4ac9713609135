// The recorder: the table of stacks and the table of sampled live objects.
// See profile.h.
#include "profile.h"
#include "writer.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace spanmap::detail {

constinit profile_tables tables;
std::atomic<void (*)()> profile_test_hook{nullptr};

namespace {

// Stack records are carved from chunks of this size; tables start at these
// sizes (in slots) and double at half full.
constexpr std::size_t record_chunk_bytes = 1 << 20;
constexpr std::size_t initial_stack_slots = 4096;
constexpr std::size_t initial_live_slots = 4096;
constexpr char profile_vma_name[] = "spanmap: profile";

// --- the stack table (under the lock) -------------------------------------------

std::uint64_t mix(std::uint64_t z) noexcept {  // splitmix64's finaliser
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

std::uint64_t hash_frames(const std::uintptr_t* f, std::size_t n) noexcept {
    std::uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
    for (std::size_t i = 0; i < n; ++i) h = mix(h ^ f[i]);
    return h;
}

bool grow_stacks() noexcept {
    const std::size_t slots = tables.stack_slots == 0 ? initial_stack_slots : tables.stack_slots * 2;
    auto* t = static_cast<stack_record**>(sampler::map_metadata(slots * sizeof(stack_record*), profile_vma_name));
    if (t == nullptr) return false;
    for (std::size_t i = 0; i < tables.stack_slots; ++i) {
        stack_record* r = tables.stacks[i];
        if (r == nullptr) continue;
        std::size_t j = r->hash & (slots - 1);
        while (t[j] != nullptr) j = (j + 1) & (slots - 1);
        t[j] = r;
    }
    if (tables.stacks != nullptr) sampler::unmap_metadata(tables.stacks, tables.stack_slots * sizeof(stack_record*));
    tables.stacks = t;
    tables.stack_slots = slots;
    return true;
}

// The record of this stack, added if new; nullptr when no memory could be had.
stack_record* find_or_add_stack(const std::uintptr_t* frames, std::size_t depth) noexcept {
    if ((tables.nstacks + 1) * 2 > tables.stack_slots && !grow_stacks() && tables.nstacks + 1 >= tables.stack_slots)
        return nullptr;
    const std::uint64_t h = hash_frames(frames, depth);
    const std::size_t mask = tables.stack_slots - 1;
    std::size_t i = h & mask;
    for (; tables.stacks[i] != nullptr; i = (i + 1) & mask) {
        stack_record* r = tables.stacks[i];
        if (r->hash == h && r->depth == depth && std::memcmp(r->frames(), frames, depth * sizeof *frames) == 0)
            return r;
    }
    const std::size_t bytes = sizeof(stack_record) + depth * sizeof(std::uintptr_t);
    if (tables.chunk_left < bytes) {
        auto* c = static_cast<char*>(sampler::map_metadata(record_chunk_bytes, profile_vma_name));
        if (c == nullptr) return nullptr;
        tables.chunk = c;
        tables.chunk_left = record_chunk_bytes;
    }
    auto* r = reinterpret_cast<stack_record*>(tables.chunk);
    tables.chunk += bytes;
    tables.chunk_left -= bytes;
    r->hash = h;
    r->depth = static_cast<std::uint32_t>(depth);
    std::memcpy(r->frames(), frames, depth * sizeof *frames);
    tables.stacks[i] = r;
    ++tables.nstacks;
    return r;
}

// --- the table of sampled live objects (under the lock) ----------------------------

std::size_t live_home(std::uintptr_t addr, std::size_t slots) noexcept {
    return static_cast<std::size_t>(mix(addr)) & (slots - 1);
}

bool grow_live() noexcept {
    const std::size_t slots = tables.live_slots == 0 ? initial_live_slots : tables.live_slots * 2;
    auto* t = static_cast<live_sample*>(sampler::map_metadata(slots * sizeof(live_sample), profile_vma_name));
    if (t == nullptr) return false;
    for (std::size_t i = 0; i < tables.live_slots; ++i) {
        const live_sample& e = tables.live[i];
        if (e.addr == 0) continue;
        std::size_t j = live_home(e.addr, slots);
        while (t[j].addr != 0) j = (j + 1) & (slots - 1);
        t[j] = e;
    }
    if (tables.live != nullptr) sampler::unmap_metadata(tables.live, tables.live_slots * sizeof(live_sample));
    tables.live = t;
    tables.live_slots = slots;
    return true;
}

bool live_insert(const live_sample& e) noexcept {
    if ((tables.nlive + 1) * 2 > tables.live_slots && !grow_live() && tables.nlive + 1 >= tables.live_slots) return false;
    const std::size_t mask = tables.live_slots - 1;
    std::size_t i = live_home(e.addr, tables.live_slots);
    while (tables.live[i].addr != 0) {
        // The object is allocated, so no entry can hold its address.
        if (tables.live[i].addr == e.addr) {
            text_writer w(STDERR_FILENO);
            w << "spanmap: heap profile: an object sampled twice (the profiler's table is corrupted)\n";
            w.finish();
            std::abort();
        }
        i = (i + 1) & mask;
    }
    tables.live[i] = e;
    ++tables.nlive;
    return true;
}

// Removes addr's entry into *out; false when addr was not sampled.
bool live_remove(std::uintptr_t addr, live_sample* out) noexcept {
    if (tables.nlive == 0) return false;
    const std::size_t mask = tables.live_slots - 1;
    std::size_t i = live_home(addr, tables.live_slots);
    while (tables.live[i].addr != addr) {
        if (tables.live[i].addr == 0) return false;
        i = (i + 1) & mask;
    }
    *out = tables.live[i];
    // Backward-shift deletion: pull later entries of the probe run into the
    // hole unless their home lies cyclically in (hole, their slot].
    for (std::size_t j = i;;) {
        j = (j + 1) & mask;
        const std::uintptr_t a = tables.live[j].addr;
        if (a == 0) break;
        const std::size_t k = live_home(a, tables.live_slots);
        const bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (stays) continue;
        tables.live[i] = tables.live[j];
        i = j;
    }
    tables.live[i].addr = 0;
    --tables.nlive;
    return true;
}

// --- the recorder's entry points ---------------------------------------------------

// Called by the allocator at a sample point. Out of line and in
// spanmap_alloc_text, so its frame is dropped from the stack it captures.
SPANMAP_ALLOC_TEXT __attribute__((noinline)) bool record(void* p, std::size_t bytes) noexcept {
    std::uintptr_t frames[max_profile_depth];
    const std::size_t depth = capture_program_stack(frames, max_profile_depth);
    if (void (*hook)() = profile_test_hook.load(std::memory_order_relaxed)) hook();
    tables_lock lk;
    stack_record* r = find_or_add_stack(frames, depth);
    if (r == nullptr || !live_insert({reinterpret_cast<std::uintptr_t>(p), r, bytes})) return false;
    ++r->alloc_objects;
    r->alloc_bytes += bytes;
    sampler::mark(p);
    return true;
}

bool forget(void* p) noexcept {
    tables_lock lk;
    live_sample e{};
    if (!live_remove(reinterpret_cast<std::uintptr_t>(p), &e)) return false;
    ++e.stack->free_objects;
    e.stack->free_bytes += e.bytes;
    sampler::unmark(p);
    return true;
}

void fork_prepare() noexcept {
    capture_fork_prepare();
    pthread_mutex_lock(&tables.lock);
}

void fork_parent() noexcept {
    pthread_mutex_unlock(&tables.lock);
    capture_fork_done();
}

void fork_child() noexcept { capture_fork_child(); }

}  // namespace

const sampler::recorder profile_recorder = {record, forget, fork_prepare, fork_parent, fork_child};

profile_totals totals_locked() noexcept {
    profile_totals t{};
    t.stacks = tables.nstacks;
    t.live_samples = tables.nlive;
    for (std::size_t i = 0; i < tables.stack_slots; ++i) {
        const stack_record* r = tables.stacks[i];
        if (r == nullptr) continue;
        t.inuse_objects += r->alloc_objects - r->free_objects;
        t.inuse_bytes += r->alloc_bytes - r->free_bytes;
        t.alloc_objects += r->alloc_objects;
        t.alloc_bytes += r->alloc_bytes;
    }
    return t;
}

profile_totals read_profile_totals() noexcept {
    tables_lock lk;
    return totals_locked();
}

[[gnu::cold]] bool profile_check_invariants(char* why, std::size_t why_len) noexcept {
    const auto fail = [&](const char* msg, std::uintptr_t addr) {
        std::snprintf(why, why_len, "%s (object %#lx)", msg, static_cast<unsigned long>(addr));
        return false;
    };
    tables_lock lk;
    const profile_totals t = totals_locked();
    if (t.inuse_objects != tables.nlive) return fail("the stacks' in-use objects differ from the live table", 0);
    std::uint64_t bytes = 0;
    std::size_t seen = 0;
    for (std::size_t i = 0; i < tables.live_slots; ++i) {
        const live_sample& e = tables.live[i];
        if (e.addr == 0) continue;
        ++seen;
        bytes += e.bytes;
        const sampler::object_facts f = sampler::facts(e.addr);
        if (!f.in_span) return fail("a sampled live object is in no span", e.addr);
        if (f.small && e.bytes != f.usable) return fail("a sample's size is not its class size", e.addr);
        if (f.free_in_span) return fail("a sampled live object is free in its span", e.addr);
        if (!f.sampled_bit) return fail("a sampled live object's bit is clear in its span", e.addr);
        // The span's count is the number of live entries in it (quadratic;
        // tests keep the table small).
        if (tables.nlive <= 20000) {
            std::size_t in_span = 0;
            for (std::size_t j = 0; j < tables.live_slots; ++j)
                if (tables.live[j].addr != 0 && sampler::facts(tables.live[j].addr).span == f.span) ++in_span;
            if (in_span != f.span_live_samples)
                return fail("a span's live_samples is not the number of its sampled live objects", e.addr);
            if (f.span_sampled_bits != in_span) return fail("a span's sampled bits are not its sampled live objects", e.addr);
        }
    }
    if (seen != tables.nlive) return fail("the live table's count is off", 0);
    if (bytes != t.inuse_bytes) return fail("the stacks' in-use bytes differ from the live table", 0);
    return true;
}

}  // namespace spanmap::detail

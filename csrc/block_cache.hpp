// A cache of large memory blocks for arrays that a loop allocates and frees
// again and again with the same sizes: a network's activations, one inference
// call after another.
//
// Why: this VM hands freed pages back to the host, and the kernel maps every
// block above glibc's mmap threshold (at most 32 MiB) afresh, so each touch of
// a new page faults (MobileNet v2 at batch 8: 12,800 faults and 50 ms of
// system time in a 150 ms call; two threads faulting at once made calls swing
// between 125 and 816 ms). A block kept here stays mapped: the next call that
// asks for about the same size gets it back with its pages in place.
//
// Blocks of at least kMinCachedBytes are kept when freed, up to a budget of
// idle bytes; a request takes the smallest idle block that holds it and is at
// most a quarter larger (else a new one). Smaller requests go straight to the
// C allocator. Every block starts 64-byte aligned, after a 64-byte header
// recording its capacity, so release() needs no size. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cnnkit {

struct BlockCacheStats {
  int64_t idle_bytes = 0, idle_blocks = 0, budget = 0;
  int64_t reused = 0, created = 0;  // large requests served from the cache, and not
};

namespace block_cache {

constexpr size_t kMinCachedBytes = size_t(1) << 18;

// Null when the memory cannot be had (as malloc).
void* allocate(size_t bytes) noexcept;
// allocate() then zeros; null also when count * size overflows.
void* allocate_zeroed(size_t count, size_t size) noexcept;
// The block of p (from allocate) with at least `bytes`, its contents kept up
// to the smaller size; p itself when it is large enough. Null on failure,
// p then still valid (as realloc).
void* reallocate(void* p, size_t bytes) noexcept;
// p from allocate(), or null.
void release(void* p) noexcept;

// The most idle bytes kept (0: none; the idle blocks beyond it are freed).
void set_budget(int64_t bytes) noexcept;
// Frees every idle block.
void trim() noexcept;
BlockCacheStats stats() noexcept;

}  // namespace block_cache

}  // namespace cnnkit

// Packed weights kept across calls: the store behind the Winograd filter
// cache (csrc/winograd.cpp) and the conv weight cache
// (csrc/conv_weight_cache.cpp).
//
// Why a cache at all: inference and style loops call every layer with the
// same weights again and again, and at batch 1 re-packing them costs as much
// as the product. Why this shape: an entry is found by a key holding the
// weights' address and whatever decides the packed layout, and used only if
// the weights still hold, bit for bit, the values it was packed from (it
// keeps a copy). Weights changed in place -- an optimizer step -- are
// repacked, never served stale, and since packing is deterministic a cached
// result has the bits of an uncached one. The least recently used entries go
// first when the total passes the budget.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "gemm.hpp"
#include "parallel.hpp"

namespace cnnkit {

// The budget in bytes from the environment variable `name`, in MiB:
// default_mb when it is unset, empty or not a non-negative integer; 0
// disables the cache.
inline size_t cache_budget_from_env(const char* name, size_t default_mb) {
  const char* env = std::getenv(name);
  if (!env || !*env) return default_mb << 20;
  char* end = nullptr;
  const long long mb = std::strtoll(env, &end, 10);
  return (end && *end == 0 && mb >= 0) ? size_t(mb) << 20 : default_mb << 20;
}

// The memory a packed operand takes: n rounded up to the widest register
// tile of any path (32 columns).
template <class T>
size_t packed_bytes(const PackedB<T>& mat) {
  return size_t(mat.k()) * size_t((mat.n() + 31) / 32 * 32) * sizeof(T);
}

// Whether a and b hold the same bits (count values each), split over threads
// from 64 KiB each: a hit on a 512-channel layer compares several MiB, and
// even ResNet-18's 64- and 128-channel layers at batch 1 (147 and 590 KB of
// weights, neither they nor the copy in cache by the time they come round)
// spent about 0.15 ms of a call comparing on one thread, where two threads
// each stream half.
template <class T>
bool same_bits(const T* a, const T* b, int64_t count) {
  constexpr int64_t kChunkBytes = int64_t(64) << 10;
  const int64_t chunk = kChunkBytes / int64_t(sizeof(T));
  const int64_t chunks = (count + chunk - 1) / chunk;
  const int nt = static_cast<int>(std::min<int64_t>(chunks, threads_for(count, chunk)));
  std::atomic<bool> same{true};
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    if (!same.load(std::memory_order_relaxed)) continue;
    const int64_t lo = c * chunk, len = std::min(chunk, count - lo);
    if (std::memcmp(a + lo, b + lo, size_t(len) * sizeof(T)) != 0)
      same.store(false, std::memory_order_relaxed);
  }
  return same.load();
}

// Key: equality-comparable, identifies the weights and the packed layout.
// T: the weights' element type. Packed: what pack() makes from them.
template <class Key, class T, class Packed>
class WeightCache {
 public:
  // The packed form of the `count` weights at w: the cached one when an entry
  // for key still matches them, else pack() -- kept when its size (the copy
  // plus the packed operands in `packed`, a range of PackedB) fits the budget.
  template <class Pack, class Operands>
  std::shared_ptr<const Packed> get(const Key& key, const T* w, int64_t count, size_t budget,
                                    Pack&& pack, Operands&& operands) {
    std::shared_ptr<Entry> found;
    {
      const std::lock_guard<std::mutex> lock(mu_);
      for (auto& entry : entries_)
        if (entry->key == key) found = entry;
      if (found) found->used = ++clock_;
    }
    // An entry's copy and packing are immutable once published: the
    // comparison needs no lock.
    if (found && same_bits(w, found->weights.data(), count)) {
      hits_.fetch_add(1, std::memory_order_relaxed);
      return found->packed;
    }
    misses_.fetch_add(1, std::memory_order_relaxed);
    auto packed = std::make_shared<const Packed>(pack());
    size_t bytes = size_t(count) * sizeof(T);
    for (const PackedB<T>& mat : operands(*packed)) bytes += packed_bytes(mat);
    if (bytes > budget) return packed;
    auto entry = std::make_shared<Entry>();
    entry->key = key;
    entry->weights.assign(w, w + count);
    entry->packed = packed;
    entry->bytes = bytes;
    const std::lock_guard<std::mutex> lock(mu_);
    entries_.erase(std::remove_if(entries_.begin(), entries_.end(),
                                  [&](const auto& e) { return e->key == key; }),
                   entries_.end());
    size_t total = bytes;
    for (const auto& e : entries_) total += e->bytes;
    while (total > budget && !entries_.empty()) {
      auto oldest = std::min_element(entries_.begin(), entries_.end(),
                                     [](const auto& a, const auto& b) { return a->used < b->used; });
      total -= (*oldest)->bytes;
      entries_.erase(oldest);
    }
    entry->used = ++clock_;
    entries_.push_back(std::move(entry));
    bytes_ = total;
    return packed;
  }

  int64_t hits() const { return hits_.load(); }
  int64_t misses() const { return misses_.load(); }
  size_t bytes() {
    const std::lock_guard<std::mutex> lock(mu_);
    return bytes_;
  }
  size_t size() {
    const std::lock_guard<std::mutex> lock(mu_);
    return entries_.size();
  }
  void clear() {
    const std::lock_guard<std::mutex> lock(mu_);
    entries_.clear();
    bytes_ = 0;
  }

 private:
  struct Entry {
    Key key;
    std::vector<T> weights;
    std::shared_ptr<const Packed> packed;
    size_t bytes = 0;
    uint64_t used = 0;
  };
  std::mutex mu_;
  std::vector<std::shared_ptr<Entry>> entries_;
  uint64_t clock_ = 0;
  size_t bytes_ = 0;
  std::atomic<int64_t> hits_{0}, misses_{0};
};

}  // namespace cnnkit

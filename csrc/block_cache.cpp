// The block cache: a multimap of idle blocks by capacity under one mutex.
// Requests for large blocks come a few hundred times per inference call, so
// a lock is cheap beside the pages it saves.
#include "block_cache.hpp"

#include <pthread.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

namespace cnnkit::block_cache {

namespace {

constexpr size_t kHeader = 64;  // keeps the data 64-byte aligned
constexpr size_t kPage = 4096;
constexpr uint64_t kMagic = 0x636e6e6b6974626bULL;  // guards release() of foreign pointers

struct Header {
  size_t capacity;  // bytes usable after the header
  uint64_t magic;
};

struct Cache {
  std::mutex mutex;
  std::multimap<size_t, char*> idle;  // capacity -> block base
  int64_t idle_bytes = 0, budget = int64_t(1) << 30, reused = 0, created = 0;
};

// Never destroyed: arrays may be freed after static destructors have run.
Cache& cache() {
  static Cache* c = [] {
    // A fork() while another thread holds the mutex would leave the child's copy
    // locked for good: the forking thread takes it first and both sides let go.
    pthread_atfork([] { cache().mutex.lock(); }, [] { cache().mutex.unlock(); },
                   [] { cache().mutex.unlock(); });
    return new Cache;
  }();
  return *c;
}

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

Header* header_of(void* p) { return reinterpret_cast<Header*>(static_cast<char*>(p) - kHeader); }

void* make_block(size_t capacity) {
  void* base = std::aligned_alloc(kHeader, kHeader + capacity);
  if (!base) return nullptr;
  auto* h = static_cast<Header*>(base);
  h->capacity = capacity;
  h->magic = kMagic;
  return static_cast<char*>(base) + kHeader;
}

// Frees idle blocks, largest first, until at most `keep` idle bytes remain.
// Called with the mutex held.
void shrink_to(Cache& c, int64_t keep) {
  while (c.idle_bytes > keep && !c.idle.empty()) {
    auto it = std::prev(c.idle.end());
    c.idle_bytes -= int64_t(it->first);
    std::free(it->second);
    c.idle.erase(it);
  }
}

}  // namespace

void* allocate(size_t bytes) noexcept {
  if (bytes > (size_t(1) << 62)) return nullptr;
  const size_t need = round_up(bytes == 0 ? 1 : bytes, kHeader);
  if (need < kMinCachedBytes) return make_block(need);
  Cache& c = cache();
  {
    const std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.idle.lower_bound(need);
    if (it != c.idle.end() && it->first <= need + need / 4) {
      char* base = it->second;
      c.idle_bytes -= int64_t(it->first);
      c.idle.erase(it);
      ++c.reused;
      return base + kHeader;
    }
    ++c.created;
  }
  return make_block(round_up(need, kPage));
}

void* allocate_zeroed(size_t count, size_t size) noexcept {
  if (size != 0 && count > (size_t(1) << 62) / size) return nullptr;
  void* p = allocate(count * size);
  if (p) std::memset(p, 0, count * size);
  return p;
}

void* reallocate(void* p, size_t bytes) noexcept {
  if (!p) return allocate(bytes);
  const size_t old = header_of(p)->capacity;
  if (bytes <= old && (old < kMinCachedBytes || bytes >= old / 2)) return p;
  void* q = allocate(bytes);
  if (!q) return nullptr;
  std::memcpy(q, p, old < bytes ? old : bytes);
  release(p);
  return q;
}

void release(void* p) noexcept {
  if (!p) return;
  Header* h = header_of(p);
  if (h->magic != kMagic) std::abort();  // not ours: freeing it would corrupt the heap
  const size_t capacity = h->capacity;
  char* base = reinterpret_cast<char*>(h);
  if (capacity >= kMinCachedBytes) {
    Cache& c = cache();
    const std::lock_guard<std::mutex> lock(c.mutex);
    if (c.idle_bytes + int64_t(capacity) <= c.budget) {
      c.idle.emplace(capacity, base);
      c.idle_bytes += int64_t(capacity);
      return;
    }
  }
  std::free(base);
}

void set_budget(int64_t bytes) noexcept {
  Cache& c = cache();
  const std::lock_guard<std::mutex> lock(c.mutex);
  c.budget = bytes < 0 ? 0 : bytes;
  shrink_to(c, c.budget);
}

void trim() noexcept {
  Cache& c = cache();
  const std::lock_guard<std::mutex> lock(c.mutex);
  shrink_to(c, 0);
}

BlockCacheStats stats() noexcept {
  Cache& c = cache();
  const std::lock_guard<std::mutex> lock(c.mutex);
  return {c.idle_bytes, int64_t(c.idle.size()), c.budget, c.reused, c.created};
}

}  // namespace cnnkit::block_cache

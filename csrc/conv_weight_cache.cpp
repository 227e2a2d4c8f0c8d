#include "conv_weight_cache.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "parallel.hpp"

namespace cnnkit {

template <class T>
PackedConvWeights<T> pack_conv_weights(const ConvProblem& p, const T* w) {
  const int64_t kd = p.patch_size(), cog = p.out_per_group(), cout = p.out_channels;
  constexpr int64_t width = PackedConvWeights<T>::kSliceColumns;
  PackedConvWeights<T> packed;
  packed.slices = (cog + width - 1) / width;
  packed.mats.reserve(size_t(p.groups * packed.slices));
  for (int64_t group = 0; group < p.groups; ++group)
    for (int64_t j = 0; j < cog; j += width)
      packed.mats.push_back(pack_b(false, kd, std::min(width, cog - j), w + group * cog + j, cout));
  return packed;
}

namespace {

struct Key {
  const void* w = nullptr;
  int64_t patch = 0, cout = 0, groups = 0;
  Isa isa = Isa::baseline;
  bool operator==(const Key& o) const {
    return w == o.w && patch == o.patch && cout == o.cout && groups == o.groups && isa == o.isa;
  }
};

template <class T>
struct Entry {
  Key key;
  std::vector<T> weights;
  std::shared_ptr<const PackedConvWeights<T>> packed;
  size_t bytes = 0;
  uint64_t used = 0;
};

size_t budget() {
  static const size_t bytes = [] {
    constexpr size_t kDefault = size_t(512) << 20;
    const char* env = std::getenv("CNNKIT_CONV_CACHE_MB");
    if (!env || !*env) return kDefault;
    char* end = nullptr;
    const long long mb = std::strtoll(env, &end, 10);
    return (end && *end == 0 && mb >= 0) ? size_t(mb) << 20 : kDefault;
  }();
  return bytes;
}

std::atomic<int64_t> g_hits{0}, g_misses{0};

// Whether a and b hold the same bits, split over threads when large.
template <class T>
bool same_bits(const T* a, const T* b, int64_t count) {
  const int64_t chunk = int64_t(1) << 16;
  const int64_t chunks = (count + chunk - 1) / chunk;
  const int nt = static_cast<int>(std::min<int64_t>(chunks, threads_for(count, 1 << 20)));
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

template <class T>
class Cache {
 public:
  std::shared_ptr<const PackedConvWeights<T>> get(const ConvProblem& p, const T* w) {
    const Key key{w, p.patch_size(), p.out_channels, p.groups, active_isa()};
    const int64_t count = key.patch * key.cout;
    std::shared_ptr<Entry<T>> found;
    {
      const std::lock_guard<std::mutex> lock(mu_);
      for (auto& entry : entries_)
        if (entry->key == key) found = entry;
      if (found) found->used = ++clock_;
    }
    // An entry's copy and packing are immutable once published: no lock needed.
    if (found && same_bits(w, found->weights.data(), count)) {
      g_hits.fetch_add(1, std::memory_order_relaxed);
      return found->packed;
    }
    g_misses.fetch_add(1, std::memory_order_relaxed);
    auto packed = std::make_shared<const PackedConvWeights<T>>(pack_conv_weights(p, w));
    size_t bytes = size_t(count) * sizeof(T);
    for (const PackedB<T>& mat : packed->mats)
      bytes += size_t(mat.k()) * size_t((mat.n() + 31) / 32 * 32) * sizeof(T);  // NR <= 32
    if (bytes > budget()) return packed;
    auto entry = std::make_shared<Entry<T>>();
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
    while (total > budget() && !entries_.empty()) {
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
  std::mutex mu_;
  std::vector<std::shared_ptr<Entry<T>>> entries_;
  uint64_t clock_ = 0;
  size_t bytes_ = 0;
};

template <class T>
Cache<T>& cache() {
  static Cache<T>* instance = new Cache<T>();  // never destroyed: no exit-order issues
  return *instance;
}

}  // namespace

template <class T>
std::shared_ptr<const PackedConvWeights<T>> cached_conv_weights(const ConvProblem& p, const T* w) {
  if (budget() == 0) return std::make_shared<const PackedConvWeights<T>>(pack_conv_weights(p, w));
  return cache<T>().get(p, w);
}

ConvWeightCacheStats conv_weight_cache_stats() {
  ConvWeightCacheStats st;
  st.hits = g_hits.load(), st.misses = g_misses.load();
  st.entries = int64_t(cache<float>().size() + cache<double>().size());
  st.bytes = int64_t(cache<float>().bytes() + cache<double>().bytes());
  return st;
}

void clear_conv_weight_cache() {
  cache<float>().clear();
  cache<double>().clear();
}

#define CNNKIT_INSTANTIATE(T)                                                                \
  template PackedConvWeights<T> pack_conv_weights<T>(const ConvProblem&, const T*);          \
  template std::shared_ptr<const PackedConvWeights<T>> cached_conv_weights<T>(const ConvProblem&, \
                                                                              const T*);
CNNKIT_INSTANTIATE(float)
CNNKIT_INSTANTIATE(double)
#undef CNNKIT_INSTANTIATE

}  // namespace cnnkit

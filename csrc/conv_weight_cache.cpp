#include "conv_weight_cache.hpp"

#include <algorithm>

#include "weight_cache.hpp"

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
using Cache = WeightCache<Key, T, PackedConvWeights<T>>;

template <class T>
Cache<T>& cache() {
  static Cache<T>* instance = new Cache<T>();  // never destroyed: no exit-order issues
  return *instance;
}

// Off unless CNNKIT_CONV_CACHE_MB asks for it: see the header.
size_t budget() {
  static const size_t bytes = cache_budget_from_env("CNNKIT_CONV_CACHE_MB", 0);
  return bytes;
}

}  // namespace

template <class T>
std::shared_ptr<const PackedConvWeights<T>> cached_conv_weights(const ConvProblem& p, const T* w) {
  if (budget() == 0) return std::make_shared<const PackedConvWeights<T>>(pack_conv_weights(p, w));
  const Key key{w, p.patch_size(), p.out_channels, p.groups, active_isa()};
  return cache<T>().get(
      key, w, key.patch * key.cout, budget(), [&] { return pack_conv_weights(p, w); },
      [](const auto& packed) -> const auto& { return packed.mats; });
}

ConvWeightCacheStats conv_weight_cache_stats() {
  ConvWeightCacheStats st;
  st.hits = cache<float>().hits() + cache<double>().hits();
  st.misses = cache<float>().misses() + cache<double>().misses();
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

// The portable Winograd transforms, the dispatch to the running CPU's path,
// and the choice between Winograd and im2col (see winograd.hpp).
#define CNNKIT_ISA_NS baseline
#include "winograd_impl.hpp"
#undef CNNKIT_ISA_NS

#include "winograd.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <vector>

#include "cpu.hpp"
#include "parallel.hpp"
#include "weight_cache.hpp"

namespace cnnkit {

namespace {

bool initial_enabled() noexcept {
  const char* env = std::getenv("CNNKIT_WINOGRAD");
  return !(env && std::strcmp(env, "0") == 0);
}
std::atomic<bool> g_enabled{initial_enabled()};

template <class T>
void filter(const T* w, int64_t rows, int64_t cols, bool flip, T* u) {
#ifdef CNNKIT_HAVE_AVX512
  if (active_isa() == Isa::avx512)
    return detail::avx512::winograd_filter(w, rows, cols, flip, u);
#endif
#ifdef CNNKIT_HAVE_AVX2
  if (active_isa() == Isa::avx2) return detail::avx2::winograd_filter(w, rows, cols, flip, u);
#endif
  detail::baseline::winograd_filter(w, rows, cols, flip, u);
}

template <class T>
void run(const detail::WinogradPass& s, const T* x, const PackedB<T>* u, const T* b, T* y) {
#ifdef CNNKIT_HAVE_AVX512
  if (active_isa() == Isa::avx512) return detail::avx512::winograd_run(s, x, u, b, y);
#endif
#ifdef CNNKIT_HAVE_AVX2
  if (active_isa() == Isa::avx2) return detail::avx2::winograd_run(s, x, u, b, y);
#endif
  detail::baseline::winograd_run(s, x, u, b, y);
}

// The transformed filters of one pass, packed as winograd_run reads them
// (see WinogradPlan): 36 * parts matrices.
template <class T>
using PackedFilters = std::vector<PackedB<T>>;

// What identifies a pass's packed filters besides the weights' values.
struct FilterKey {
  const void* w = nullptr;
  int64_t k = 0, n = 0, parts = 0;  // the pass's in_c, out_c and plan.parts
  bool backward = false;            // flipped and transposed, for dx
  Isa isa = Isa::baseline;          // the layout PackedB gave them
  bool operator==(const FilterKey& o) const {
    return w == o.w && k == o.k && n == o.n && parts == o.parts && backward == o.backward &&
           isa == o.isa;
  }
};

// Transforms w (3, 3, C_in, C_out) once and packs each U[e]'s part columns:
// forward, U[e] is k x n (C_in x C_out); backward, it is n x k and the GEMM
// reads its transpose. The packing threads split the 36 * parts matrices.
template <class T>
PackedFilters<T> pack_filters(const T* w, const FilterKey& key) {
  const int64_t k = key.k, n = key.n, parts = key.parts, mats = 36 * parts;
  std::vector<T> u(size_t(36 * k * n));
  if (key.backward)
    filter(w, n, k, true, u.data());
  else
    filter(w, k, n, false, u.data());
  PackedFilters<T> packed(static_cast<size_t>(mats));
  std::exception_ptr error;
  const int nt = static_cast<int>(std::min<int64_t>(mats, threads_for(36 * k * n, 1 << 16)));
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
  for (int64_t i = 0; i < mats; ++i) {
    try {
      const int64_t e = i / parts, part = i % parts;
      const int64_t c0 = n * part / parts, nc = n * (part + 1) / parts - c0;
      const T* ue = u.data() + e * k * n;
      packed[size_t(i)] =
          key.backward ? pack_b(true, k, nc, ue + c0 * k, k) : pack_b(false, k, nc, ue + c0, n);
    } catch (...) {
#pragma omp critical(cnnkit_winograd_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  return packed;
}

// Transformed and packed filters kept across calls (csrc/weight_cache.hpp
// says how entries are found, checked and evicted): at batch 1 the deep
// layers' transform and packing (36 C_in x C_out values written, read and
// written again: 37 MB each at 512 channels) cost as much as their products.
// An entry is keyed by the weights' address and the pass. The budget is
// CNNKIT_WINOGRAD_CACHE_MB per dtype, 1024 by default: the 13 layers of
// VGG-16, forward and dx, take 590 MB of float, and a budget smaller than a
// loop's working set is of no use, as each entry is evicted before its next
// use.
template <class T>
using FilterCache = WeightCache<FilterKey, T, PackedFilters<T>>;

template <class T>
FilterCache<T>& filter_cache() {
  static FilterCache<T>* cache = new FilterCache<T>();  // never destroyed: no exit-order issues
  return *cache;
}

size_t cache_budget() {
  static const size_t budget = cache_budget_from_env("CNNKIT_WINOGRAD_CACHE_MB", 1024);
  return budget;
}

template <class T>
std::shared_ptr<const PackedFilters<T>> packed_filters(const T* w, FilterKey key) {
  key.w = w;
  key.isa = active_isa();
  if (cache_budget() == 0) return std::make_shared<const PackedFilters<T>>(pack_filters(w, key));
  return filter_cache<T>().get(
      key, w, 9 * key.k * key.n, cache_budget(), [&] { return pack_filters(w, key); },
      [](const auto& packed) -> const auto& { return packed; });
}

}  // namespace

bool winograd_enabled() noexcept { return g_enabled.load(std::memory_order_relaxed); }
void set_winograd_enabled(bool on) noexcept { g_enabled.store(on, std::memory_order_relaxed); }

bool winograd_applies(const ConvProblem& p) {
  const Geometry& g = p.g;
  return g.rank == 2 && g.kernel[0] == 3 && g.kernel[1] == 3 && g.stride[0] == 1 &&
         g.stride[1] == 1 && g.dilation[0] == 1 && g.dilation[1] == 1 && p.groups == 1 &&
         p.in_channels > 0 && p.out_channels > 0 && p.batch > 0 && g.out[0] > 0 && g.out[1] > 0;
}

bool winograd_preferred(const ConvProblem& p) {
  if (!winograd_enabled() || !winograd_applies(p)) return false;
  // Measured crossover (one thread, AVX2 path; bench/winograd.py, its table
  // in bench/RESULTS.md): with 8 or more channels on each side Winograd was 1.2-5x faster
  // than im2col from 16 tiles of 4x4 outputs on (e.g. one 16x16 image at 64
  // or 256 channels, four 8x8 images at 64); with fewer tiles the filter
  // transform, done once per call, dominates (two 8x8 images at 256 channels:
  // 0.87x; one 8x8: 0.45x). With 5 channels it still won forward but not
  // always for dx, and 1-4 channels take the direct loops.
  const int64_t tiles = p.batch * ((p.g.out[0] + 3) / 4) * ((p.g.out[1] + 3) / 4);
  return p.in_channels >= 8 && p.out_channels >= 8 && tiles >= 16;
}

WinogradCacheStats winograd_cache_stats() {
  WinogradCacheStats st;
  st.hits = filter_cache<float>().hits() + filter_cache<double>().hits();
  st.misses = filter_cache<float>().misses() + filter_cache<double>().misses();
  st.entries = int64_t(filter_cache<float>().size() + filter_cache<double>().size());
  st.bytes = int64_t(filter_cache<float>().bytes() + filter_cache<double>().bytes());
  return st;
}

void clear_winograd_cache() {
  filter_cache<float>().clear();
  filter_cache<double>().clear();
}

namespace detail {

template <class T>
void winograd_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y,
                      Activation activation, T negative_slope, const T* residual, bool relu,
                      int64_t ldy) {
  const Geometry& g = p.g;
  WinogradPass s;
  s.activation = activation, s.negative_slope = double(negative_slope);
  s.residual = residual, s.residual_relu = relu;
  s.batch = p.batch, s.in_h = g.in[0], s.in_w = g.in[1], s.in_c = p.in_channels;
  s.out_h = g.out[0], s.out_w = g.out[1], s.out_c = p.out_channels;
  s.ldy = ldy > 0 ? ldy : p.out_channels;
  s.off_h = -g.pad_before[0], s.off_w = -g.pad_before[1];
  FilterKey key;
  key.k = s.in_c, key.n = s.out_c, key.parts = winograd_plan(s, int64_t(sizeof(T))).parts;
  const auto u = packed_filters(w, key);
  run(s, x, u->data(), b, y);
}

template <class T>
void winograd_backward_input(const ConvProblem& p, const T* w, const T* dy, T* dx) {
  const Geometry& g = p.g;
  // dx is the forward pass of dy with the filter flipped in space and its
  // channel axes swapped, padded by 2 - pad_before (a negative padding crops).
  WinogradPass s;
  s.batch = p.batch, s.in_h = g.out[0], s.in_w = g.out[1], s.in_c = p.out_channels;
  s.out_h = g.in[0], s.out_w = g.in[1], s.out_c = p.in_channels;
  s.off_h = g.pad_before[0] - 2, s.off_w = g.pad_before[1] - 2;
  FilterKey key;
  key.k = s.in_c, key.n = s.out_c, key.parts = winograd_plan(s, int64_t(sizeof(T))).parts;
  key.backward = true;
  const auto u = packed_filters(w, key);
  run(s, dy, u->data(), static_cast<const T*>(nullptr), dx);
}

template void winograd_forward<float>(const ConvProblem&, const float*, const float*, const float*,
                                      float*, Activation, float, const float*, bool, int64_t);
template void winograd_forward<double>(const ConvProblem&, const double*, const double*,
                                       const double*, double*, Activation, double, const double*,
                                       bool, int64_t);
template void winograd_backward_input<float>(const ConvProblem&, const float*, const float*, float*);
template void winograd_backward_input<double>(const ConvProblem&, const double*, const double*,
                                              double*);

}  // namespace detail

}  // namespace cnnkit

// The portable Winograd transforms, the dispatch to the running CPU's path,
// and the choice between Winograd and im2col (see winograd.hpp).
#define CNNKIT_ISA_NS baseline
#include "winograd_impl.hpp"
#undef CNNKIT_ISA_NS

#include "winograd.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cpu.hpp"

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
void run(const detail::WinogradPass& s, const T* x, const T* u, const T* b, T* y) {
#ifdef CNNKIT_HAVE_AVX512
  if (active_isa() == Isa::avx512) return detail::avx512::winograd_run(s, x, u, b, y);
#endif
#ifdef CNNKIT_HAVE_AVX2
  if (active_isa() == Isa::avx2) return detail::avx2::winograd_run(s, x, u, b, y);
#endif
  detail::baseline::winograd_run(s, x, u, b, y);
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

namespace detail {

template <class T>
void winograd_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y) {
  const Geometry& g = p.g;
  std::vector<T> u(size_t(36 * p.in_channels * p.out_channels));
  filter(w, p.in_channels, p.out_channels, false, u.data());
  WinogradPass s;
  s.batch = p.batch, s.in_h = g.in[0], s.in_w = g.in[1], s.in_c = p.in_channels;
  s.out_h = g.out[0], s.out_w = g.out[1], s.out_c = p.out_channels;
  s.off_h = -g.pad_before[0], s.off_w = -g.pad_before[1];
  run(s, x, u.data(), b, y);
}

template <class T>
void winograd_backward_input(const ConvProblem& p, const T* w, const T* dy, T* dx) {
  const Geometry& g = p.g;
  // dx is the forward pass of dy with the filter flipped in space and its
  // channel axes swapped, padded by 2 - pad_before (a negative padding crops).
  std::vector<T> u(size_t(36 * p.in_channels * p.out_channels));
  filter(w, p.in_channels, p.out_channels, true, u.data());
  WinogradPass s;
  s.batch = p.batch, s.in_h = g.out[0], s.in_w = g.out[1], s.in_c = p.out_channels;
  s.out_h = g.in[0], s.out_w = g.in[1], s.out_c = p.in_channels;
  s.off_h = g.pad_before[0] - 2, s.off_w = g.pad_before[1] - 2;
  s.transposed = true;
  run(s, dy, u.data(), static_cast<const T*>(nullptr), dx);
}

template void winograd_forward<float>(const ConvProblem&, const float*, const float*, const float*,
                                      float*);
template void winograd_forward<double>(const ConvProblem&, const double*, const double*,
                                       const double*, double*);
template void winograd_backward_input<float>(const ConvProblem&, const float*, const float*, float*);
template void winograd_backward_input<double>(const ConvProblem&, const double*, const double*,
                                              double*);

}  // namespace detail

}  // namespace cnnkit

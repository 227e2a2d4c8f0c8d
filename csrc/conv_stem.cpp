#include "conv_stem.hpp"

#include <omp.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "gemm_few_rows.hpp"
#include "interrupt.hpp"
#include "parallel.hpp"

namespace cnnkit {

namespace {

// Output positions per task: a multiple of the few-row kernel's 12-row tile;
// 192 x 363 floats of patches (AlexNet) is 279 KiB, well inside L2.
constexpr int64_t kTileRows = 192;

// The shortest patch row taken here. AlexNet's 11x11 stride 4 (363 values)
// measured 1.16 ms against the few-channel loops' 1.44 at batch 1 and 11.6-11.9
// against 12.3-12.6 ms at batch 8; ResNet's 7x7 stride 2 (147 values) 2.2-2.3
// against 2.35-2.47 at batch 1 but 20.5-21.9 against 18.8-19.3 at batch 8 (one
// thread, CPU time, load ~8, Sapphire Rapids). So only the longer windows.
constexpr int64_t kMinPatch = 256;

// buf (rows x patch_size) = the patches of output positions [row0, row0 +
// rows): for each kernel row, one run of kernel[1] x C_in values of x, zero
// where the window leaves the image.
template <class T>
void gather_stem(const ConvProblem& p, const T* x, int64_t row0, int64_t rows, T* buf) {
  const Geometry& g = p.g;
  const int64_t cin = p.in_channels, kw = g.kernel[1], run = kw * cin, kd = p.patch_size();
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t flat = row0 + r, ow = flat % g.out[1], line = flat / g.out[1];
    const int64_t oh = line % g.out[0], n = line / g.out[0];
    const int64_t iw0 = ow * g.stride[1] - g.pad_before[1];
    const int64_t lo = std::clamp<int64_t>(-iw0, 0, kw) * cin;
    const int64_t hi = std::clamp<int64_t>(g.in[1] - iw0, 0, kw) * cin;
    T* dst = buf + r * kd;
    for (int64_t kh = 0; kh < g.kernel[0]; ++kh, dst += run) {
      const int64_t ih = oh * g.stride[0] - g.pad_before[0] + kh;
      if (ih < 0 || ih >= g.in[0] || hi <= lo) {
        std::fill_n(dst, run, T(0));
        continue;
      }
      const T* src = x + ((n * g.in[0] + ih) * g.in[1] + iw0) * cin;
      for (int64_t q = 0; q < lo; ++q) dst[q] = T(0);
      for (int64_t q = lo; q < hi; ++q) dst[q] = src[q];
      for (int64_t q = std::max(lo, hi); q < run; ++q) dst[q] = T(0);
    }
  }
}

}  // namespace

template <class T>
bool conv_stem_applies(const ConvProblem& p) {
  const Geometry& g = p.g;
  return std::is_same_v<T, float> && g.rank == 2 && p.groups == 1 && p.in_channels >= 1 &&
         p.in_channels <= 4 && g.kernel[0] >= 5 && g.kernel[1] >= 5 && g.stride[0] >= 2 &&
         g.stride[1] >= 2 && g.dilation[0] == 1 && g.dilation[1] == 1 && g.in[2] == 1 &&
         g.kernel[2] == 1 && p.patch_size() >= kMinPatch && p.rows() > 0 && p.out_channels > 0 &&
         gemm_few_rows_applies<T>(1, p.out_channels, p.patch_size());
}

template <class T>
void conv_stem_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y,
                       Activation activation, T negative_slope) {
  const int64_t rows = p.rows(), kd = p.patch_size(), cout = p.out_channels;
  const int64_t tiles = (rows + kTileRows - 1) / kTileRows;
  const int nt = static_cast<int>(std::min<int64_t>(tiles, threads_for(rows * kd * cout, 1 << 16)));
  const Epilogue<T> ep{b, activation, negative_slope};
  const StopToken stop;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    std::vector<T> buf(size_t(kTileRows * kd));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tiles; ++t) {
      if (stop) continue;
      const int64_t row0 = t * kTileRows, m = std::min(kTileRows, rows - row0);
      gather_stem(p, x, row0, m, buf.data());
      gemm_few_rows_serial(m, cout, kd, buf.data(), kd, w, cout, y + row0 * cout, cout, &ep);
    }
  }
}

#define CNNKIT_INSTANTIATE(T)                                                            \
  template bool conv_stem_applies<T>(const ConvProblem&);                                \
  template void conv_stem_forward<T>(const ConvProblem&, const T*, const T*, const T*, T*, \
                                     Activation, T);
CNNKIT_INSTANTIATE(float)
CNNKIT_INSTANTIATE(double)
#undef CNNKIT_INSTANTIATE

}  // namespace cnnkit

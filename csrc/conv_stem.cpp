#include "conv_stem.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "conv_direct.hpp"
#include "conv_stem_impl.hpp"
#include "cpu.hpp"
#include "gemm_few_rows_impl.hpp"
#include "interrupt.hpp"
#include "parallel.hpp"

namespace cnnkit {

namespace {

// Output rows per band: the slab of ResNet's 7x7 stride 2 over 224 x 224 x 3
// (13 padded rows of 690 floats) is 36 KiB, and a 224-row image gives 28
// bands, enough to balance two or three threads. The bits do not depend on it.
constexpr int64_t kBandRows = 4;
constexpr int64_t kMaxBandFloats = int64_t(1) << 22;

// slab (rows x ext1 x cin) = input rows [i0, i0 + rows) of image x, column j
// of the slab reading input column j - pad1, zero outside the image.
template <class T>
void fill_band(const ConvProblem& p, const T* x, int64_t i0, int64_t rows, int64_t ext1, T* slab) {
  const Geometry& g = p.g;
  const int64_t cin = p.in_channels, width = ext1 * cin;
  const int64_t before = g.pad_before[1] * cin, inside = g.in[1] * cin;
  for (int64_t r = 0; r < rows; ++r) {
    T* dst = slab + r * width;
    const int64_t i = i0 + r;
    if (i < 0 || i >= g.in[0]) {
      std::fill_n(dst, width, T(0));
      continue;
    }
    std::fill_n(dst, before, T(0));
    std::memcpy(dst + before, x + i * inside, size_t(inside) * sizeof(T));
    std::fill_n(dst + before + inside, width - before - inside, T(0));
  }
}

}  // namespace

template <class T>
bool conv_stem_applies(const ConvProblem& p) {
  const Geometry& g = p.g;
#ifdef CNNKIT_HAVE_AVX512
  return std::is_same_v<T, float> && active_isa() == Isa::avx512 && g.rank == 2 &&
         p.groups == 1 && p.in_channels >= 1 && p.in_channels <= 4 && g.kernel[0] >= 3 &&
         g.kernel[1] >= 3 && g.stride[0] >= 2 && g.stride[1] >= 2 && g.dilation[0] == 1 &&
         g.dilation[1] == 1 && g.in[2] == 1 && g.kernel[2] == 1 && p.rows() > 0 &&
         p.out_channels > 0 && detail::slab_fits(p);
#else
  (void)g;
  return false;
#endif
}

template <class T>
void conv_stem_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y,
                       Activation activation, T negative_slope) {
#ifdef CNNKIT_HAVE_AVX512
  if constexpr (std::is_same_v<T, float>) {
    const Geometry& g = p.g;
    const int64_t cin = p.in_channels, cout = p.out_channels, kd = p.patch_size();
    const int64_t ld = (cout + 15) / 16 * 16;
    const int64_t ext1 = g.in[1] + g.pad_before[1] + g.pad_after[1], width = ext1 * cin;
    using Buffer = std::vector<float, few_rows::AlignedAllocator<float>>;
    Buffer wp(static_cast<size_t>(kd * ld)), bp(static_cast<size_t>(ld));
    for (int64_t q = 0; q < kd; ++q) std::copy_n(w + q * cout, cout, wp.data() + q * ld);
    if (b) std::copy_n(b, cout, bp.data());
    // Sigmoid, rare in a first layer, in a pass after.
    const bool fused = activation != Activation::sigmoid;
    const stem::avx512::Store store{fused ? activation : Activation::none, negative_slope};
    // Fewer rows per band where a band would be large (long strides over
    // wide images): one row's slab is what detail::slab_fits bounds.
    int64_t band = std::min(kBandRows, g.out[0]);
    while (band > 1 && ((band - 1) * g.stride[0] + g.kernel[0]) * width > kMaxBandFloats) --band;
    const int64_t bands = (g.out[0] + band - 1) / band;
    const int64_t tasks = p.batch * bands, image = g.in[0] * g.in[1] * cin;
    const int nt =
        static_cast<int>(std::min<int64_t>(tasks, threads_for(p.rows() * kd * cout, 1 << 16)));
    const StopToken stop;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      Buffer slab(size_t(((band - 1) * g.stride[0] + g.kernel[0]) * width));
#pragma omp for schedule(static)
      for (int64_t task = 0; task < tasks; ++task) {
        if (stop) continue;
        const int64_t n = task / bands, o0 = task % bands * band;
        const int64_t o1 = std::min(g.out[0], o0 + band);
        const int64_t first = o0 * g.stride[0] - g.pad_before[0];
        const int64_t rows = (o1 - 1 - o0) * g.stride[0] + g.kernel[0];
        // A band inside the image with no column padding (SqueezeNet's) is
        // x's own rows: the copy would cost 7% of the convolution.
        const float* xs = slab.data();
        if (g.pad_before[1] == 0 && g.pad_after[1] == 0 && first >= 0 && first + rows <= g.in[0])
          xs = x + n * image + first * width;
        else
          fill_band(p, x + n * image, first, rows, ext1, slab.data());
        for (int64_t o = o0; o < o1; ++o)
          stem::avx512::line(g.out[1], xs + (o - o0) * g.stride[0] * width,
                             g.stride[1] * cin, g.kernel[0], width, g.kernel[1] * cin, wp.data(),
                             ld, bp.data(), y + (n * g.out[0] + o) * g.out[1] * cout, cout, store);
      }
    }
    if (!fused) {
      const Epilogue<T> act{nullptr, activation, negative_slope};
      apply_epilogue(act, y, cout, p.rows(), cout);
    }
    return;
  }
#endif
  (void)p, (void)x, (void)w, (void)b, (void)y, (void)activation, (void)negative_slope;
}

#define CNNKIT_INSTANTIATE(T)                                                            \
  template bool conv_stem_applies<T>(const ConvProblem&);                                \
  template void conv_stem_forward<T>(const ConvProblem&, const T*, const T*, const T*, T*, \
                                     Activation, T);
CNNKIT_INSTANTIATE(float)
CNNKIT_INSTANTIATE(double)
#undef CNNKIT_INSTANTIATE

}  // namespace cnnkit

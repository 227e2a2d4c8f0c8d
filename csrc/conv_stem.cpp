#include "conv_stem.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "conv_direct.hpp"
#include "conv_stem_impl.hpp"
#include "cpu.hpp"
#include "gemm_few_rows_impl.hpp"
#include "interrupt.hpp"
#include "layout.hpp"
#include "parallel.hpp"
#include "pool.hpp"
#include "pool_impl.hpp"

namespace cnnkit {

namespace {

// Output rows per band: the slab of ResNet's 7x7 stride 2 over 224 x 224 x 3
// (13 padded rows of 690 floats) is 36 KiB, and a 224-row image gives 28
// bands, enough to balance two or three threads. The bits do not depend on it.
constexpr int64_t kBandRows = 4;
constexpr int64_t kMaxBandFloats = int64_t(1) << 22;

// slab (rows x ext1 x cin) = input rows [i0, i0 + rows) of image x, column j
// of the slab reading input column j - pad1, zero outside the image. With
// channels_first, x is the image's cin planes and each row's channels are
// interleaved as they are copied.
template <int C>
void interleave(const float* __restrict x, int64_t plane, int64_t count, float* __restrict dst) {
  for (int64_t j = 0; j < count; ++j)
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) dst[j * C + c] = x[c * plane + j];
}

template <class T>
void fill_band(const ConvProblem& p, const T* x, bool channels_first, int64_t i0, int64_t rows,
               int64_t ext1, T* slab) {
  const Geometry& g = p.g;
  const int64_t cin = p.in_channels, width = ext1 * cin;
  const int64_t before = g.pad_before[1] * cin, inside = g.in[1] * cin;
  const int64_t plane = g.in[0] * g.in[1];
  for (int64_t r = 0; r < rows; ++r) {
    T* dst = slab + r * width;
    const int64_t i = i0 + r;
    if (i < 0 || i >= g.in[0]) {
      std::fill_n(dst, width, T(0));
      continue;
    }
    std::fill_n(dst, before, T(0));
    if (!channels_first) {
      std::memcpy(dst + before, x + i * inside, size_t(inside) * sizeof(T));
    } else if constexpr (std::is_same_v<T, float>) {
      const T* from = x + i * g.in[1];
      auto* f = cin == 1 ? &interleave<1> : cin == 2 ? &interleave<2>
              : cin == 3 ? &interleave<3> : &interleave<4>;
      f(from, plane, g.in[1], dst + before);
    }
    std::fill_n(dst + before + inside, width - before - inside, T(0));
  }
}

#ifdef CNNKIT_HAVE_AVX512
using Buffer = std::vector<float, few_rows::AlignedAllocator<float>>;

// The weights and bias as stem::avx512::line reads them, and the band copy.
struct Stem {
  const ConvProblem& p;
  const float* x;
  bool channels_first;
  int64_t cout, ld, ext1, width, band, image;
  Buffer wp, bp;
  stem::avx512::Store store;
  // Sigmoid, rare in a first layer, in a pass after the rows are made.
  Epilogue<float> after{nullptr, Activation::none, 0.0f};

  Stem(const ConvProblem& problem, const float* x_, bool first, const float* w, const float* b,
       Activation activation, float negative_slope)
      : p(problem), x(x_), channels_first(first) {
    const Geometry& g = p.g;
    const int64_t cin = p.in_channels, kd = p.patch_size();
    cout = p.out_channels;
    ld = (cout + 15) / 16 * 16;
    ext1 = g.in[1] + g.pad_before[1] + g.pad_after[1], width = ext1 * cin;
    image = g.in[0] * g.in[1] * cin;
    wp.resize(size_t(kd * ld)), bp.resize(size_t(ld));
    for (int64_t q = 0; q < kd; ++q) std::copy_n(w + q * cout, cout, wp.data() + q * ld);
    if (b) std::copy_n(b, cout, bp.data());
    const bool fused = activation != Activation::sigmoid;
    store = {fused ? activation : Activation::none, negative_slope};
    if (!fused) after = {nullptr, activation, negative_slope};
    // Fewer rows per band where a band would be large (long strides over
    // wide images): one row's slab is what detail::slab_fits bounds.
    band = std::min(kBandRows, g.out[0]);
    while (band > 1 && slab_rows(band) * width > kMaxBandFloats) --band;
  }

  int64_t slab_rows(int64_t rows) const { return (rows - 1) * p.g.stride[0] + p.g.kernel[0]; }

  // Output rows [o0, o1) of image n, row o at out(o), positions ldy apart.
  template <class Out>
  void rows(int64_t n, int64_t o0, int64_t o1, float* slab, Out out, int64_t ldy) const {
    const Geometry& g = p.g;
    const int64_t first = o0 * g.stride[0] - g.pad_before[0], rows = slab_rows(o1 - o0);
    // A band inside the image with no column padding (SqueezeNet's) is
    // x's own rows: the copy would cost 7% of the convolution.
    const float* xs = slab;
    if (!channels_first && g.pad_before[1] == 0 && g.pad_after[1] == 0 && first >= 0 &&
        first + rows <= g.in[0])
      xs = x + n * image + first * width;
    else
      fill_band(p, x + n * image, channels_first, first, rows, ext1, slab);
    for (int64_t o = o0; o < o1; ++o)
      stem::avx512::line(g.out[1], xs + (o - o0) * g.stride[0] * width,
                         g.stride[1] * p.in_channels, g.kernel[0], width,
                         g.kernel[1] * p.in_channels, wp.data(), ld, bp.data(), out(o), cout,
                         ldy, store);
  }
};

// Each thread takes a run of the pooled output rows over the batch, the same
// share whatever the shape, and keeps the convolution's rows in a ring of
// `ring` rows: pooled row q needs the rows of its window, computed a band at
// a time once the ring holds the rows before. A row under windows of two
// threads is computed by both (once per thread boundary).
void stem_pooled(const Stem& s, const Geometry& pool, float* y, int64_t ldy) {
  const ConvProblem& p = s.p;
  const Geometry& g = p.g;
  const int64_t wc = g.out[1], cout = s.cout, pooled_row = pool.out[1] * ldy;
  const int64_t ring = s.band + pool.kernel[0], items = p.batch * pool.out[0];
  const int nt = static_cast<int>(
      std::min<int64_t>(items, threads_for(p.rows() * p.patch_size() * cout, 1 << 16)));
  const StopToken stop;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num(), threads = omp_get_num_threads();
    const int64_t i0 = items * t / threads, i1 = items * (t + 1) / threads;
    // Left uninitialised: every value is written before it is read, and
    // zeroing ResNet-18's 200 KB ring and 36 KB slab is a pass over them per
    // call (a few microseconds: not measurable against the 1.2 ms call here).
    const std::unique_ptr<float[]> slab(new float[size_t(s.slab_rows(s.band) * s.width)]);
    const std::unique_ptr<float[]> rows(new float[size_t(ring * wc * cout)]);
    const auto slot = [&](int64_t o) { return rows.get() + o % ring * wc * cout; };
    std::vector<const float*> window(size_t(pool.kernel[0]));
    int64_t image = -1, c1 = 0;  // the ring holds rows [.., c1) of image
    for (int64_t i = i0; i < i1 && !stop; ++i) {
      const int64_t n = i / pool.out[0], q = i % pool.out[0];
      const pool_impl::Span span = pool_impl::window_span(pool, 0, q);
      if (n != image || span.begin >= c1) image = n, c1 = span.begin;
      // The rows no later window of this thread needs are left out.
      const int64_t last = n == (i1 - 1) / pool.out[0]
                               ? pool_impl::window_span(pool, 0, (i1 - 1) % pool.out[0]).end
                               : g.out[0];
      while (c1 < span.end) {
        const int64_t c2 = std::min(c1 + s.band, last);
        s.rows(n, c1, c2, slab.get(), slot, cout);
        if (s.after.activation != Activation::none)
          for (int64_t o = c1; o < c2; ++o) apply_epilogue(s.after, slot(o), cout, wc, cout);
        c1 = c2;
      }
      for (int64_t r = span.begin; r < span.end; ++r) window[size_t(r - span.begin)] = slot(r);
      pool_impl::avx512::max_pool_line(window.data(), span.end - span.begin, wc, cout, cout,
                                       pool.kernel[1], pool.stride[1], pool.pad_before[1],
                                       pool.out[1], y + i * pooled_row, ldy);
    }
  }
}

void stem_plain(const Stem& s, float* y, int64_t ldy) {
  const ConvProblem& p = s.p;
  const Geometry& g = p.g;
  const int64_t bands = (g.out[0] + s.band - 1) / s.band;
  const int64_t tasks = p.batch * bands, row = g.out[1] * ldy;
  const int nt = static_cast<int>(
      std::min<int64_t>(tasks, threads_for(p.rows() * p.patch_size() * s.cout, 1 << 16)));
  const StopToken stop;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    Buffer slab(size_t(s.slab_rows(s.band) * s.width));
#pragma omp for schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      if (stop) continue;
      const int64_t n = task / bands, o0 = task % bands * s.band;
      float* image = y + n * g.out[0] * row;
      s.rows(n, o0, std::min(g.out[0], o0 + s.band), slab.data(),
             [&](int64_t o) { return image + o * row; }, ldy);
    }
  }
  if (s.after.activation != Activation::none) apply_epilogue(s.after, y, ldy, p.rows(), s.cout);
}
#endif

// The three calls conv_stem stands for, through buffers left uninitialised
// (the separate calls' arrays cost no more).
template <class T>
void stem_unfused(const ConvProblem& p, const T* x, bool channels_first, const T* w, const T* b,
                  Activation activation, T negative_slope, const Geometry* pool, T* y,
                  int64_t ldy) {
  const int64_t cout = p.out_channels;
  std::unique_ptr<T[]> xl, conv_out, pooled;
  if (channels_first) {
    xl.reset(new T[size_t(p.batch * p.g.in_size() * p.in_channels)]);
    channels_last(x, p.batch, p.in_channels, p.g.in_size(), xl.get());
    x = xl.get();
  }
  const bool strided = ldy != cout;
  T* to = y;
  if (pool || strided) {
    conv_out.reset(new T[size_t(p.rows() * cout)]);
    to = conv_out.get();
  }
  conv_forward(p, x, w, b, to, activation, negative_slope);
  int64_t positions = p.rows();
  if (pool) {
    positions = p.batch * pool->out_size();
    T* into = y;
    if (strided) {
      pooled.reset(new T[size_t(positions * cout)]);
      into = pooled.get();
    }
    max_pool(*pool, p.batch, cout, static_cast<const T*>(to), into);
    to = into;
  }
  if (strided)
    for (int64_t i = 0; i < positions; ++i) std::copy_n(to + i * cout, cout, y + i * ldy);
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
void conv_stem(const ConvProblem& p, const T* x, bool channels_first, const T* w, const T* b,
               Activation activation, T negative_slope, const Geometry* pool, T* y,
               int64_t ldy) {
  if (p.rows() == 0 || p.out_channels == 0 || (pool && pool->out_size() == 0)) return;
#ifdef CNNKIT_HAVE_AVX512
  if constexpr (std::is_same_v<T, float>) {
    if (conv_stem_applies<T>(p)) {
      const Stem s(p, x, channels_first, w, b, activation, negative_slope);
      if (pool)
        stem_pooled(s, *pool, y, ldy);
      else
        stem_plain(s, y, ldy);
      return;
    }
  }
#endif
  stem_unfused(p, x, channels_first, w, b, activation, negative_slope, pool, y, ldy);
}

template <class T>
void conv_stem_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y,
                       Activation activation, T negative_slope) {
#ifdef CNNKIT_HAVE_AVX512
  if constexpr (std::is_same_v<T, float>) {
    stem_plain(Stem(p, x, false, w, b, activation, negative_slope), y, p.out_channels);
    return;
  }
#endif
  (void)p, (void)x, (void)w, (void)b, (void)y, (void)activation, (void)negative_slope;
}

#define CNNKIT_INSTANTIATE(T)                                                              \
  template bool conv_stem_applies<T>(const ConvProblem&);                                  \
  template void conv_stem_forward<T>(const ConvProblem&, const T*, const T*, const T*, T*,   \
                                     Activation, T);                                       \
  template void conv_stem<T>(const ConvProblem&, const T*, bool, const T*, const T*,         \
                             Activation, T, const Geometry*, T*, int64_t);
CNNKIT_INSTANTIATE(float)
CNNKIT_INSTANTIATE(double)
#undef CNNKIT_INSTANTIATE

}  // namespace cnnkit

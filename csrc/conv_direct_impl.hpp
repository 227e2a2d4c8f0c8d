// The direct convolution loops (see conv_direct.hpp), compiled once per
// instruction set: conv_direct.cpp includes this with CNNKIT_ISA_NS=baseline,
// conv_direct_avx2.cpp with CNNKIT_ISA_NS=avx2 and -mavx2 -mfma. Everything
// here lives in the ISA's namespace (the lambdas handed to conv_taps.hpp's
// templates too), so no function is emitted twice under one name with
// different instruction sets.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#if defined(__FMA__)
#include <immintrin.h>
#endif

#include "conv_direct.hpp"
#include "conv_taps.hpp"
#include "parallel.hpp"

namespace cnnkit::detail::CNNKIT_ISA_NS {


namespace {

// One register's worth (GCC/Clang vector extension): 32 bytes with AVX, 16
// on the baseline path, where GCC would keep wider vectors' accumulators in
// memory. A dependent type cannot carry vector_size, hence the traits.
#if defined(__AVX__)
constexpr int kVectorBytes = 32;
#else
constexpr int kVectorBytes = 16;
#endif
template <class T>
struct Vector;
template <>
struct Vector<float> {
  typedef float type __attribute__((vector_size(kVectorBytes)));
};
template <>
struct Vector<double> {
  typedef double type __attribute__((vector_size(kVectorBytes)));
};


// out[c * mult + j] += a[c] * b[c * mult + j]; the common multiplier 1 gets
// its own loop, which the compiler vectorises.
template <class T>
inline void multiply_add(const T* __restrict a, const T* __restrict b, T* __restrict out,
                         int64_t channels, int64_t mult) {
  if (mult == 1) {
    for (int64_t c = 0; c < channels; ++c) out[c] += a[c] * b[c];
    return;
  }
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t j = 0; j < mult; ++j) out[c * mult + j] += a[c] * b[c * mult + j];
}

}  // namespace

template <class T>
void depthwise_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y) {
  const int64_t cin = p.in_channels, cout = p.out_channels, mult = cout / cin;
  const int64_t positions = p.g.out_size(), rows = p.rows();
  const int nt = threads_for(rows * p.g.kernel_size() * cout);
  const Taps taps(p.g);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t r = 0; r < rows; ++r) {
    T* out = y + r * cout;
    std::fill_n(out, cout, T(0));
    taps.for_each(r / positions, r % positions, [&](int64_t k, int64_t i) {
      multiply_add(x + i * cin, w + k * cout, out, cin, mult);
    });
    if (b)
      for (int64_t c = 0; c < cout; ++c) out[c] += b[c];
  }
}

template <class T>
void depthwise_backward_input(const ConvProblem& p, const T* w, const T* dy, T* dx) {
  const int64_t cin = p.in_channels, cout = p.out_channels, mult = cout / cin;
  const int64_t positions = p.g.in_size(), rows = p.batch * positions;
  const int nt = threads_for(rows * p.g.kernel_size() * cout);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t r = 0; r < rows; ++r) {
    T* out = dx + r * cin;
    std::fill_n(out, cin, T(0));
    for_each_reader(p.g, r / positions, r % positions, [&](int64_t k, int64_t o) {
      const T* grad = dy + o * cout;
      const T* wk = w + k * cout;
      if (mult == 1) {
        for (int64_t c = 0; c < cin; ++c) out[c] += grad[c] * wk[c];
        return;
      }
      for (int64_t c = 0; c < cin; ++c)
        for (int64_t j = 0; j < mult; ++j) out[c] += grad[c * mult + j] * wk[c * mult + j];
    });
  }
}

template <class T>
void depthwise_backward_weight(const ConvProblem& p, const T* x, const T* dy, T* dw) {
  const int64_t cin = p.in_channels, cout = p.out_channels, mult = cout / cin;
  const int64_t positions = p.g.out_size(), rows = p.rows();
  std::fill_n(dw, p.g.kernel_size() * cout, T(0));
  // Threads split the channels; each dw element sums the rows in order.
  const int nt = int(std::min<int64_t>(threads_for(rows * p.g.kernel_size() * cout), cin));
  const Taps taps(p.g);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int64_t parts = omp_get_num_threads(), part = omp_get_thread_num();
    const int64_t c0 = cin * part / parts, c1 = cin * (part + 1) / parts;
    for (int64_t r = 0; r < rows; ++r) {
      const T* grad = dy + r * cout;
      taps.for_each(r / positions, r % positions, [&](int64_t k, int64_t i) {
          multiply_add(x + i * cin + c0, grad + c0 * mult, dw + k * cout + c0 * mult, c1 - c0, mult);
      });
    }
  }
}

// The geometry with its rank's dimensions moved to the end (Geometry pads
// the trailing ones), so that dimension 2 is the innermost one in use; the
// flat positions do not change, since the moved-in dimensions have size 1.
inline Geometry innermost_last(const Geometry& g) {
  Geometry out = g;
  const int shift = g.rank >= 1 && g.rank <= kMaxSpatialDims ? kMaxSpatialDims - g.rank : 0;
  for (int d = kMaxSpatialDims - 1; d >= 0; --d) {
    const int from = d - shift;
    const bool used = from >= 0;
    out.in[d] = used ? g.in[from] : 1;
    out.kernel[d] = used ? g.kernel[from] : 1;
    out.stride[d] = used ? g.stride[from] : 1;
    out.dilation[d] = used ? g.dilation[from] : 1;
    out.pad_before[d] = used ? g.pad_before[from] : 0;
    out.pad_after[d] = used ? g.pad_after[from] : 0;
    out.out[d] = used ? g.out[from] : 1;
  }
  return out;
}

// The few-channel loops work on lines: the out[2] output positions (of
// innermost_last's geometry) that share n and the outer output coordinates.
// A line reads one input line per kernel row (k0, k1) inside the input; each
// such line is copied once, with its padding along the innermost dimension
// as zeros, so that every tap along that dimension is a plain offset (no
// per-tap bounds checks). Kernel rows in the padding of the outer
// dimensions are skipped.
template <class T>
class Lines {
 public:
  explicit Lines(const ConvProblem& p) : p_(p), g_(innermost_last(p.g)) {
    const Geometry& g = g_;
    cin_ = p.in_channels;
    in_place_ = g.pad_before[2] == 0 && g.pad_after[2] == 0;
    length_ = (g.in[2] + g.pad_before[2] + g.pad_after[2]) * cin_;
    rows_ = g.kernel[0] * g.kernel[1];
  }
  const Geometry& geometry() const { return g_; }
  int64_t count() const { return p_.batch * g_.out[0] * g_.out[1]; }
  int64_t kernel_rows() const { return rows_; }
  // Scratch for kernel_rows() padded lines.
  size_t scratch_size() const { return in_place_ ? 0 : size_t(rows_ * length_); }

  // For output line `line`: row[j] is the padded input line (element 0 is
  // the first padding position) read by kernel row kr[j], for the rows
  // listed in `wanted` (all when null) that lie inside the input. Returns
  // how many.
  int64_t gather(const T* x, int64_t line, T* scratch, const T** row, int64_t* kr,
                 const bool* wanted = nullptr) const {
    const int64_t before = g_.pad_before[2] * cin_, inside = g_.in[2] * cin_;
    int64_t count = 0;
    for_each_row(line, [&](int64_t r, int64_t start) {
      if (wanted && !wanted[r]) return;
      const T* src = x + start;
      if (in_place_) {
        row[count] = src;
      } else {
        T* dst = scratch + count * length_;
        std::fill_n(dst, before, T(0));
        std::memcpy(dst + before, src, size_t(inside) * sizeof(T));
        std::fill_n(dst + before + inside, length_ - before - inside, T(0));
        row[count] = dst;
      }
      kr[count++] = r;
    });
    return count;
  }

  // Calls fn(kr, start) for each kernel row kr of output line `line` that
  // lies inside the input, in order, with `start` the offset in x (or dx)
  // of the input line it reads (unpadded).
  template <class Fn>
  void for_each_row(int64_t line, Fn&& fn) const {
    const Geometry& g = g_;
    const int64_t n = line / (g.out[0] * g.out[1]), outer = line % (g.out[0] * g.out[1]);
    const int64_t base0 = (outer / g.out[1]) * g.stride[0] - g.pad_before[0];
    const int64_t base1 = (outer % g.out[1]) * g.stride[1] - g.pad_before[1];
    for (int64_t k0 = 0; k0 < g.kernel[0]; ++k0) {
      const int64_t i0 = base0 + k0 * g.dilation[0];
      if (i0 < 0 || i0 >= g.in[0]) continue;
      for (int64_t k1 = 0; k1 < g.kernel[1]; ++k1) {
        const int64_t i1 = base1 + k1 * g.dilation[1];
        if (i1 < 0 || i1 >= g.in[1]) continue;
        fn(k0 * g.kernel[1] + k1, ((n * g.in[0] + i0) * g.in[1] + i1) * g.in[2] * cin_);
      }
    }
  }

 private:
  const ConvProblem& p_;
  const Geometry g_;
  int64_t cin_, length_, rows_;
  bool in_place_;
};

// v * w + acc, fused where the path has FMA (the vector extension alone
// would not contract it: the build passes -ffp-contract=off).
template <class V>
inline V mul_add(V v, V w, V acc) {
#if defined(__FMA__)
  if constexpr (sizeof(V) == 32 && sizeof(v[0]) == 4)
    return _mm256_fmadd_ps(v, w, acc);
  else if constexpr (sizeof(V) == 32 && sizeof(v[0]) == 8)
    return _mm256_fmadd_pd(v, w, acc);
  else
    return v * w + acc;
#else
  return v * w + acc;
#endif
}

// An initializer list rather than a loop over lanes, which GCC would build
// lane by lane instead of broadcasting.
template <class V, class T>
inline V splat(T s) {
  constexpr size_t lanes = sizeof(V) / sizeof(T);
  static_assert(lanes == 2 || lanes == 4 || lanes == 8 || lanes == 16, "unexpected width");
  if constexpr (lanes == 2)
    return V{s, s};
  else if constexpr (lanes == 4)
    return V{s, s, s, s};
  else if constexpr (lanes == 8)
    return V{s, s, s, s, s, s, s, s};
  else
    return V{s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s};
}

template <class V, class T>
inline V load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

// Weights (or bias) regrouped by blocks of `lanes` output channels, the
// last block padded with zeros: block cb holds rows x lanes values.
template <class T>
std::vector<T> pack_channels(const T* w, int64_t rows, int64_t cout, int64_t lanes) {
  const int64_t blocks = (cout + lanes - 1) / lanes;
  std::vector<T> out(size_t(blocks * rows * lanes), T(0));
  for (int64_t cb = 0; cb < blocks; ++cb)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < lanes && cb * lanes + j < cout; ++j)
        out[size_t((cb * rows + r) * lanes + j)] = w[r * cout + cb * lanes + j];
  return out;
}

// Outputs [o2, o2 + count) of one line for one block of 2 vectors of output
// channels. Tap t of kernel row kr[j] of output q reads
// row[j][first + q * step + offset[t]] with weights wb + (kr[j] * taps + t) * lanes.
// The sum runs over the kernel rows, then the taps, in order, from zero;
// the bias is added last.
template <class T, int count>
inline void few_channels_outputs(const T* const* row, const int64_t* kr, int64_t rows,
                                 int64_t first, const int64_t* offset, int64_t taps, int64_t step,
                                 const T* wb, const T* bias, T* out, int64_t cout,
                                 int64_t channels) {
  using V = typename Vector<T>::type;
  constexpr int64_t half = int64_t(sizeof(V) / sizeof(T)), lanes = 2 * half;
  V acc[count][2];
  for (int q = 0; q < count; ++q) acc[q][0] = acc[q][1] = V{};
  for (int64_t j = 0; j < rows; ++j) {
    const T* line = row[j] + first;
    const T* wk = wb + kr[j] * taps * lanes;
    for (int64_t t = 0; t < taps; ++t, wk += lanes) {
      const V w0 = load<V>(wk), w1 = load<V>(wk + half);
      const T* at = line + offset[t];
      for (int q = 0; q < count; ++q) {
        const V v = splat<V>(at[q * step]);
        acc[q][0] = mul_add(v, w0, acc[q][0]);
        acc[q][1] = mul_add(v, w1, acc[q][1]);
      }
    }
  }
  const V b0 = load<V>(bias), b1 = load<V>(bias + half);
  for (int q = 0; q < count; ++q) {
    acc[q][0] += b0;
    acc[q][1] += b1;
    T* dst = out + q * cout;
    if (channels == lanes) {
      std::memcpy(dst, &acc[q][0], sizeof(V));
      std::memcpy(dst + half, &acc[q][1], sizeof(V));
    } else {
      T tmp[lanes];
      std::memcpy(tmp, &acc[q][0], sizeof(V));
      std::memcpy(tmp + half, &acc[q][1], sizeof(V));
      std::memcpy(dst, tmp, size_t(channels) * sizeof(T));
    }
  }
}

template <class T>
void few_channels_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y) {
  using V = typename Vector<T>::type;
  constexpr int64_t lanes = 2 * int64_t(sizeof(V) / sizeof(T));
  constexpr int kRows = 6;  // 12 accumulators, 2 weight vectors, 1 broadcast
  const Lines<T> lines(p);
  const Geometry& g = lines.geometry();
  const int64_t cin = p.in_channels, cout = p.out_channels, out2 = g.out[2];
  const int64_t taps = g.kernel[2] * cin, blocks = (cout + lanes - 1) / lanes;
  const std::vector<T> wp = pack_channels(w, lines.kernel_rows() * taps, cout, lanes);
  std::vector<T> zero(size_t(cout), T(0));
  const std::vector<T> bp = pack_channels(b ? b : zero.data(), 1, cout, lanes);
  std::vector<int64_t> offset(static_cast<size_t>(taps));
  for (int64_t k2 = 0; k2 < g.kernel[2]; ++k2)
    for (int64_t ci = 0; ci < cin; ++ci)
      offset[size_t(k2 * cin + ci)] = k2 * g.dilation[2] * cin + ci;
  const int64_t step = g.stride[2] * cin;
  const int nt = threads_for(p.rows() * p.patch_size() * cout);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    std::vector<T> scratch(lines.scratch_size());
    std::vector<const T*> row(size_t(lines.kernel_rows()));
    std::vector<int64_t> kr(size_t(lines.kernel_rows()));
#pragma omp for schedule(static)
    for (int64_t line = 0; line < lines.count(); ++line) {
      const int64_t rows = lines.gather(x, line, scratch.data(), row.data(), kr.data());
      T* out_line = y + line * out2 * cout;
      for (int64_t cb = 0; cb < blocks; ++cb) {
        const T* wb = wp.data() + cb * lines.kernel_rows() * taps * lanes;
        const T* bb = bp.data() + cb * lanes;
        const int64_t channels = std::min(lanes, cout - cb * lanes);
        for (int64_t o2 = 0; o2 < out2; o2 += kRows) {
          T* out = out_line + o2 * cout + cb * lanes;
          // Padded lines start at position -pad_before, where output 0's first tap reads.
          const int64_t first = o2 * step;
          switch (std::min<int64_t>(kRows, out2 - o2)) {
#define CNNKIT_FEW_CASE(n)                                                                   \
  case n:                                                                                    \
    few_channels_outputs<T, n>(row.data(), kr.data(), rows, first, offset.data(), taps, step, \
                               wb, bb, out, cout, channels);                                 \
    break;
            CNNKIT_FEW_CASE(1)
            CNNKIT_FEW_CASE(2)
            CNNKIT_FEW_CASE(3)
            CNNKIT_FEW_CASE(4)
            CNNKIT_FEW_CASE(5)
            CNNKIT_FEW_CASE(6)
#undef CNNKIT_FEW_CASE
          }
        }
      }
    }
  }
}

// Rows [o2, o2 + count) of a line's patch gradient dP = dy W^T, for one
// chunk of 4 vectors of patch columns: dP[q][c] = sum over co, in order,
// of dy[q][co] * wt[co][c], where wt is W^T with rows of `width` columns.
template <class T, int count>
inline void few_channels_patch_grads(const T* grad, int64_t cout, const T* wt, int64_t width,
                                     T* dp) {
  using V = typename Vector<T>::type;
  constexpr int64_t half = int64_t(sizeof(V) / sizeof(T));
  V acc[count][4];
  for (int q = 0; q < count; ++q)
    for (int v = 0; v < 4; ++v) acc[q][v] = V{};
  for (int64_t co = 0; co < cout; ++co, wt += width) {
    V wv[4];
    for (int v = 0; v < 4; ++v) wv[v] = load<V>(wt + v * half);
    for (int q = 0; q < count; ++q) {
      const V d = splat<V>(grad[q * cout + co]);
      for (int v = 0; v < 4; ++v) acc[q][v] = mul_add(d, wv[v], acc[q][v]);
    }
  }
  for (int q = 0; q < count; ++q)
    for (int v = 0; v < 4; ++v) std::memcpy(dp + q * width + v * half, &acc[q][v], sizeof(V));
}

template <class T>
void few_channels_backward_input(const ConvProblem& p, const T* w, const T* dy, T* dx) {
  using V = typename Vector<T>::type;
  constexpr int64_t chunk = 4 * int64_t(sizeof(V) / sizeof(T));  // patch columns per block
  constexpr int kRows = 3;  // 12 accumulators, 4 weight vectors, 1 broadcast
  const Lines<T> lines(p);
  const Geometry& g = lines.geometry();
  const int64_t cin = p.in_channels, cout = p.out_channels, out2 = g.out[2];
  const int64_t taps = g.kernel[2] * cin, kd = p.patch_size();
  const int64_t width = (kd + chunk - 1) / chunk * chunk;
  std::fill_n(dx, p.batch * g.in_size() * cin, T(0));
  if (p.rows() == 0 || cout == 0) return;
  // W^T, its rows padded with zeros to whole chunks.
  std::vector<T> wt(size_t(cout * width), T(0));
  for (int64_t c = 0; c < kd; ++c)
    for (int64_t co = 0; co < cout; ++co) wt[size_t(co * width + c)] = w[c * cout + co];
  std::vector<int64_t> offset(static_cast<size_t>(taps));
  for (int64_t k2 = 0; k2 < g.kernel[2]; ++k2)
    for (int64_t ci = 0; ci < cin; ++ci)
      offset[size_t(k2 * cin + ci)] = (k2 * g.dilation[2] - g.pad_before[2]) * cin + ci;
  const int64_t step = g.stride[2] * cin, inside = g.in[2] * cin;
  // Each line's dP is added into dx (col2im). Tasks are bands of lines
  // along the outer dimension in use, `band` >= the kernel's reach, so that
  // bands two apart write disjoint dx lines: the even bands run in
  // parallel, then the odd ones, and each dx element receives its
  // contributions in an order fixed by the problem.
  const int d = g.out[0] > 1 || g.kernel[0] > 1 ? 0 : 1;
  const int64_t inner = d == 0 ? g.out[1] : 1, extent = g.out[d];
  const int64_t reach = g.dilation[d] * (g.kernel[d] - 1) / g.stride[d];
  const int64_t band = std::min(extent, std::max<int64_t>(1, reach));
  const int64_t bands = (extent + band - 1) / band, per_image = g.out[0] * g.out[1];
  const int nt = threads_for(p.rows() * kd * cout);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    std::vector<T> dp(size_t(out2 * width));
    for (int phase = 0; phase < 2; ++phase) {
      const int64_t tasks_per_image = (bands - phase + 1) / 2;
#pragma omp for schedule(dynamic, 1)
      for (int64_t task = 0; task < p.batch * tasks_per_image; ++task) {
        const int64_t n = task / tasks_per_image, b = 2 * (task % tasks_per_image) + phase;
        const int64_t first = n * per_image + b * band * inner;
        const int64_t last = n * per_image + std::min(extent, (b + 1) * band) * inner;
        for (int64_t line = first; line < last; ++line) {
          const T* grad = dy + line * out2 * cout;
          for (int64_t c0 = 0; c0 < width; c0 += chunk)
            for (int64_t o2 = 0; o2 < out2; o2 += kRows) {
              const T* gq = grad + o2 * cout;
              const T* wc = wt.data() + c0;
              T* dq = dp.data() + o2 * width + c0;
              switch (std::min<int64_t>(kRows, out2 - o2)) {
                case 1:
                  few_channels_patch_grads<T, 1>(gq, cout, wc, width, dq);
                  break;
                case 2:
                  few_channels_patch_grads<T, 2>(gq, cout, wc, width, dq);
                  break;
                case 3:
                  few_channels_patch_grads<T, 3>(gq, cout, wc, width, dq);
                  break;
              }
            }
          lines.for_each_row(line, [&](int64_t r, int64_t start) {
            T* out = dx + start;
            const T* src = dp.data() + r * taps;
            for (int64_t o2 = 0; o2 < out2; ++o2, src += width) {
              const int64_t at = o2 * step;
              for (int64_t t = 0; t < taps; ++t) {
                const int64_t i = at + offset[size_t(t)];
                if (i >= 0 && i < inside) out[i] += src[t];
              }
            }
          });
        }
      }
    }
  }
}

// dw rows [t0, t0 + count) of one kernel row, for one block of output
// channels, from one output line: the sums over the line's positions, in
// order, from zero, added to dw (which thus sums the lines in order).
// `partial` blocks (channels < lanes) read dy through a copy, since a full
// load would run past the row.
template <class T, int count, bool partial>
inline void few_channels_weight_sums(const T* line, const int64_t* offset, int64_t step,
                                     const T* grad, int64_t cout, int64_t out2,
                                     int64_t channels, T* dw) {
  using V = typename Vector<T>::type;
  constexpr int64_t half = int64_t(sizeof(V) / sizeof(T)), lanes = 2 * half;
  V acc[count][2];
  for (int t = 0; t < count; ++t) acc[t][0] = acc[t][1] = V{};
  int64_t at[count];
  for (int t = 0; t < count; ++t) at[t] = offset[t];
  for (int64_t o2 = 0; o2 < out2; ++o2, line += step) {
    V g0, g1;
    if constexpr (partial) {
      T tmp[lanes] = {};
      std::memcpy(tmp, grad + o2 * cout, size_t(channels) * sizeof(T));
      g0 = load<V>(tmp), g1 = load<V>(tmp + half);
    } else {
      g0 = load<V>(grad + o2 * cout), g1 = load<V>(grad + o2 * cout + half);
    }
    for (int t = 0; t < count; ++t) {
      const V v = splat<V>(line[at[t]]);
      acc[t][0] = mul_add(v, g0, acc[t][0]);
      acc[t][1] = mul_add(v, g1, acc[t][1]);
    }
  }
  for (int t = 0; t < count; ++t) {
    T* dst = dw + t * cout;
    for (int64_t j = 0; j < channels; ++j) dst[j] += j < half ? acc[t][0][j] : acc[t][1][j - half];
  }
}

template <class T>
void few_channels_backward_weight(const ConvProblem& p, const T* x, const T* dy, T* dw) {
  using V = typename Vector<T>::type;
  constexpr int64_t lanes = 2 * int64_t(sizeof(V) / sizeof(T));
  constexpr int64_t kTaps = 6;  // 12 accumulators, 2 gradient vectors, 1 broadcast
  std::fill_n(dw, p.patch_size() * p.out_channels, T(0));
  if (p.rows() == 0 || p.out_channels == 0) return;
  const Lines<T> lines(p);
  const Geometry& g = lines.geometry();
  const int64_t cin = p.in_channels, cout = p.out_channels, out2 = g.out[2];
  const int64_t taps = g.kernel[2] * cin, blocks = (cout + lanes - 1) / lanes;
  std::vector<int64_t> offset(static_cast<size_t>(taps));
  for (int64_t k2 = 0; k2 < g.kernel[2]; ++k2)
    for (int64_t ci = 0; ci < cin; ++ci)
      offset[size_t(k2 * cin + ci)] = k2 * g.dilation[2] * cin + ci;
  const int64_t step = g.stride[2] * cin, tap_blocks = (taps + kTaps - 1) / kTaps;
  // A unit is (kernel row, block of taps, block of channels): a set of dw
  // elements. Threads split the units; each element sums the lines in order
  // whatever the number of threads.
  const int64_t units = lines.kernel_rows() * tap_blocks * blocks;
  const int nt = int(std::min<int64_t>(threads_for(p.rows() * p.patch_size() * cout), units));
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int64_t parts = omp_get_num_threads(), part = omp_get_thread_num();
    const int64_t u0 = units * part / parts, u1 = units * (part + 1) / parts;
    const int64_t per_row = tap_blocks * blocks;
    std::vector<char> wanted(size_t(lines.kernel_rows()), 0);
    for (int64_t u = u0; u < u1; ++u) wanted[size_t(u / per_row)] = 1;
    std::vector<T> scratch(lines.scratch_size());
    std::vector<const T*> row(size_t(lines.kernel_rows()));
    std::vector<int64_t> kr(size_t(lines.kernel_rows())), slot(size_t(lines.kernel_rows()));
    for (int64_t line = 0; line < lines.count() && u0 < u1; ++line) {
      const int64_t rows = lines.gather(x, line, scratch.data(), row.data(), kr.data(),
                                        reinterpret_cast<const bool*>(wanted.data()));
      std::fill(slot.begin(), slot.end(), int64_t(-1));
      for (int64_t j = 0; j < rows; ++j) slot[size_t(kr[size_t(j)])] = j;
      const T* grad_line = dy + line * out2 * cout;
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t r = u / per_row, tb = (u % per_row) / blocks, cb = u % blocks;
        if (slot[size_t(r)] < 0) continue;  // this kernel row reads padding only
        const int64_t t0 = tb * kTaps, count = std::min(kTaps, taps - t0);
        const int64_t channels = std::min(lanes, cout - cb * lanes);
        const T* line_in = row[size_t(slot[size_t(r)])];
        T* dst = dw + (r * taps + t0) * cout + cb * lanes;
        const T* grad = grad_line + cb * lanes;
        switch (count) {
#define CNNKIT_FEW_CASE(n)                                                                    \
  case n:                                                                                     \
    if (channels == lanes)                                                                    \
      few_channels_weight_sums<T, n, false>(line_in, offset.data() + t0, step, grad, cout,   \
                                            out2, channels, dst);                             \
    else                                                                                      \
      few_channels_weight_sums<T, n, true>(line_in, offset.data() + t0, step, grad, cout,    \
                                           out2, channels, dst);                              \
    break;
          CNNKIT_FEW_CASE(1)
          CNNKIT_FEW_CASE(2)
          CNNKIT_FEW_CASE(3)
          CNNKIT_FEW_CASE(4)
          CNNKIT_FEW_CASE(5)
          CNNKIT_FEW_CASE(6)
#undef CNNKIT_FEW_CASE
        }
      }
    }
  }
}

CNNKIT_INSTANTIATE_DIRECT(float)
CNNKIT_INSTANTIATE_DIRECT(double)

}  // namespace cnnkit::detail::CNNKIT_ISA_NS

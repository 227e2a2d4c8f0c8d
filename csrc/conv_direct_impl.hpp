// The direct convolution loops (see conv_direct.hpp), compiled once per
// instruction set: conv_direct.cpp includes this with CNNKIT_ISA_NS=baseline,
// conv_direct_avx2.cpp with CNNKIT_ISA_NS=avx2 and -mavx2 -mfma. Everything
// here lives in the ISA's namespace (the lambdas handed to conv_taps.hpp's
// templates too), so no function is emitted twice under one name with
// different instruction sets.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

#include "conv_direct.hpp"
#include "conv_few_impl.hpp"
#include "conv_taps.hpp"
#include "interrupt.hpp"
#include "parallel.hpp"

namespace cnnkit::detail::CNNKIT_ISA_NS {


namespace {

// 0 <= v < bound, for bound >= 0.
inline bool unsigned_lt(int64_t v, int64_t bound) { return uint64_t(v) < uint64_t(bound); }

// 32-byte vectors (GCC/Clang vector extension; two SSE registers on the
// baseline path). A dependent type cannot carry vector_size, hence the traits.
template <class T>
struct Vector;
template <>
struct Vector<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct Vector<double> {
  typedef double type __attribute__((vector_size(32)));
};
// 64-byte vectors: one AVX-512 register, two AVX2 or four SSE registers.
template <class T>
struct WideVector;
template <>
struct WideVector<float> {
  typedef float type __attribute__((vector_size(64)));
};
template <>
struct WideVector<double> {
  typedef double type __attribute__((vector_size(64)));
};

#ifdef __FMA__
// The vectors of the m1 loops on the FMA paths, one register each (64 bytes
// with AVX-512, 32 with AVX2), and how many windows go together in the
// general loop (kWindowGroup: the group's sums, a weight vector per vector
// of channels and an input fit 32 zmm or 16 ymm registers) and in a 3x3 row
// at stride S along it (kRowGroup<S>: the sums, a kernel row's three weight
// vectors and an input).
#ifdef __AVX512F__
template <class T>
using RowVector = typename WideVector<T>::type;
constexpr int kWindowGroup = 8;
template <int S>
constexpr int kRowGroup = S == 2 ? 4 : 8;
#else
template <class T>
using RowVector = typename Vector<T>::type;
constexpr int kWindowGroup = 4;
template <int S>
constexpr int kRowGroup = S == 1 ? 8 : 4;
#endif
#endif

// a * b + acc for a T, a 32-byte or a 64-byte vector of T: rounded once
// where the path has FMA, as a product and then a sum on the baseline
// (-ffp-contract=off keeps the compiler from fusing on its own). Every form
// rounds alike, so a channel's bits do not depend on whether it falls in a
// full vector or in the remainder.
template <class T, class V>
[[gnu::always_inline]] inline V madd(V a, V b, V acc) {
  if constexpr (std::is_same_v<V, T>) {
#ifdef __FMA__
    return std::fma(a, b, acc);
#else
    return acc + a * b;
#endif
  } else if constexpr (sizeof(V) == 32) {
    return few::fmadd(a, b, acc);
  } else {
#ifdef __AVX512F__
    if constexpr (std::is_same_v<T, float>)
      return V(_mm512_fmadd_ps(__m512(a), __m512(b), __m512(acc)));
    else
      return V(_mm512_fmadd_pd(__m512d(a), __m512d(b), __m512d(acc)));
#else
#ifdef __FMA__
    static_assert(sizeof(V) != 64, "the AVX2 path fuses 32-byte vectors only");
#endif
    return acc + a * b;
#endif
  }
}

// f(std::integral_constant<int, q>{}) for q = 1, ..., N.
template <int N, class F>
inline void for_each_count(F&& f) {
  if constexpr (N > 0) {
    for_each_count<N - 1>(f);
    f(std::integral_constant<int, N>{});
  }
}

// v + bias, then the activation, with the arithmetic of gemm_impl.hpp's
// finish_tile (the pass apply_epilogue makes over y), on a T or a vector of
// T: the fused store keeps the separate pass's bits. relu, relu6,
// leaky_relu and hard_swish only (depthwise_forward leaves sigmoid to the pass); NaN stays
// NaN and -0 stays -0, as there.
template <class T, class V>
[[gnu::always_inline]] inline V activated(V v, Activation activation, T slope) {
  const V zero = V{}, six = zero + T(6);
  switch (activation) {
    case Activation::relu:
      return v < zero ? zero : v;
    case Activation::relu6:
      return v < zero ? zero : v > six ? six : v;
    case Activation::leaky_relu:
      return v > zero ? v : slope * v;
    case Activation::hard_swish: {
      V t = v / (zero + T(6)) + T(0.5);
      t = t < zero ? zero : t > zero + T(1) ? zero + T(1) : t;
      return v * t;
    }
    default:
      return v;
  }
}
template <class T, class V>
[[gnu::always_inline]] inline V finished(V v, const T* bias, Activation activation, T slope) {
  if (bias) {
    V b;
    std::memcpy(&b, bias, sizeof(V));
    v = v + b;
  }
  return activated(v, activation, slope);
}

// How the vector loops below read and write a vector of channels: all its
// lanes (AllLanes), or on the AVX-512 path the first few (FirstLanes, a
// channel remainder), by masked loads, which read the other lanes as zeros,
// and masked stores, so that nothing past a row's last channel is touched.
// Each lane's arithmetic is the same either way, and the same as the scalar
// loop's, so a channel's bits do not depend on where its vector ends; a
// remainder of 8 channels with AVX-512 took as long as 8 vectors one lane
// at a time (56 x 56 x 72 at stride 2: 0.082 ms, 144 channels 0.059).
struct AllLanes {
  template <class V, class T>
  [[gnu::always_inline]] V load(const T* from) const {
    V v;
    std::memcpy(&v, from, sizeof(V));
    return v;
  }
  template <class T, class V>
  [[gnu::always_inline]] void store(T* to, const V& v) const {
    std::memcpy(to, &v, sizeof(V));
  }
};
#ifdef __AVX512F__
template <class T>
struct FirstLanes {
  using Mask = std::conditional_t<sizeof(T) == 4, __mmask16, __mmask8>;
  Mask mask;
  explicit FirstLanes(int64_t lanes) : mask(Mask((1u << lanes) - 1)) {}
  template <class V>
  [[gnu::always_inline]] V load(const T* from) const {
    static_assert(sizeof(V) == 64, "one AVX-512 register");
    if constexpr (std::is_same_v<T, float>)
      return V(_mm512_maskz_loadu_ps(mask, from));
    else
      return V(_mm512_maskz_loadu_pd(mask, from));
  }
  template <class V>
  [[gnu::always_inline]] void store(T* to, const V& v) const {
    if constexpr (std::is_same_v<T, float>)
      _mm512_mask_storeu_ps(to, mask, __m512(v));
    else
      _mm512_mask_storeu_pd(to, mask, __m512d(v));
  }
};
#endif

// out[i] += 0 * w[i]: a tap's products with the padding's zeros, which the
// loops skip, except that a NaN or infinite factor makes them NaN, as they
// are in the reference and torch (which multiply materialised zeros).
template <class T>
inline void add_padding_products(T* __restrict out, const T* __restrict w, int64_t count) {
  for (int64_t i = 0; i < count; ++i) out[i] += T(0) * w[i];
}

// No value is NaN or infinite (all exponent bits set). On the bits, so that
// the loop vectorises: std::isfinite one value at a time took 3 of the 17
// us of a 7 x 7 x 960 depthwise layer, for its 8,640 weights.
template <class T>
inline bool all_finite(const T* v, int64_t count) {
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  constexpr Bits exponent = sizeof(T) == 4 ? Bits(0x7f800000u) : Bits(0x7ff0000000000000ull);
  Bits bad = 0;
  for (int64_t i = 0; i < count; ++i) {
    Bits bits;
    std::memcpy(&bits, v + i, sizeof(T));
    bad |= Bits((bits & exponent) == exponent);
  }
  return bad == 0;
}

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

// Stores Q finished sums (bias, then the activation), `step` elements apart:
// Q windows of the same channels (bias_step 0) or Q vectors of channels of
// one window (bias_step = step). The activation is switched on once for the
// Q of them, not per vector.
template <class T, int Q, class V, class L = AllLanes>
[[gnu::always_inline]] inline void store_finished(V* acc, const Epilogue<T>& ep, int64_t c0,
                                                  T* out, int64_t step, int64_t bias_step = 0,
                                                  const L& lanes = {}) {
  const T* const bias = ep.bias ? ep.bias + c0 : nullptr;
  const auto store = [&](auto activation) {
    for (int u = 0; u < Q; ++u) {
      V v = acc[u];
      if (bias) v = v + lanes.template load<V>(bias + u * bias_step);
      lanes.store(out + u * step, activated(v, decltype(activation)::value, ep.negative_slope));
    }
  };
  with_activation(ep.activation, store);
}

#ifdef __FMA__
// The kernel rows [r0, r1) of a 3x3 window whose row 0 reads input row
// `top`: those inside the input (of `extent` rows, kernel rows `step` apart).
inline void rows_inside(int64_t top, int64_t step, int64_t extent, int& r0, int& r1) {
  r0 = 0, r1 = 3;
  while (r0 < 3 && top + r0 * step < 0) ++r0;
  while (r1 > r0 && top + (r1 - 1) * step >= extent) --r1;
}

// Q adjacent windows of a 3x3 depthwise row, one RowVector of channels from
// c0: x + first is the first window's first tap of channel 0 (above the
// input when the row is at the top), `at` the nine tap offsets, kernel rows
// [r0, r1) inside the input. With a stride S of 1 or 2 along the row (and no
// dilation there) the windows share input columns: each column of a kernel
// row is loaded once for the (up to three) windows that read it, 30 loads
// for 72 multiply-adds at S = 1 and Q = 8 instead of 72. S = 0: any stride,
// `step` elements between windows. Each window sums its taps in kernel
// order, as `sum` in depthwise_forward_m1 does, so the bits are the same.
// All: the three kernel rows are inside (r0 = 0, r1 = 3), known at compile
// time, so that the loop over them unrolls. Edge (S = 1 or 2): the columns
// `skip` names are padding, their taps left out (the first window's first
// column, the last window's last).
struct SkipColumns {
  bool first = false, last = false;
};
template <class T, int Q, int S, bool All, bool Edge, class L, class V = RowVector<T>>
[[gnu::always_inline]] inline void depthwise_3x3_windows(const T* x, int64_t first, int64_t step,
                                                         int64_t c, int64_t c0, const int64_t* at,
                                                         int r0, int r1, const T* w,
                                                         const Epilogue<T>& ep, T* out,
                                                         SkipColumns skip, const L& lanes) {
  const auto load = [&](const T* from) { return lanes.template load<V>(from); };
  V acc[Q];
  for (int u = 0; u < Q; ++u) acc[u] = V{};
  if constexpr (All) r0 = 0, r1 = 3;
  for (int r = r0; r < r1; ++r) {
    // One kernel row's weights at a time: with the group's sums and an
    // input they fit AVX2's 16 registers too.
    const V wt[3] = {load(w + (3 * r) * c + c0), load(w + (3 * r + 1) * c + c0),
                     load(w + (3 * r + 2) * c + c0)};
    const int64_t row = first + at[3 * r] + c0;
    if constexpr (S == 0) {
      for (int kc = 0; kc < 3; ++kc) {
        const int64_t a = row + at[3 * r + kc] - at[3 * r];
        for (int u = 0; u < Q; ++u) acc[u] = madd<T>(load(x + (a + u * step)), wt[kc], acc[u]);
      }
    } else {
      constexpr int kColumns = (Q - 1) * S + 3;
      for (int j = 0; j < kColumns; ++j) {
        if constexpr (Edge)
          if ((j == 0 && skip.first) || (j == kColumns - 1 && skip.last)) continue;
        V v = load(x + (row + j * c));
        // GCC folded the load into each multiply-add that uses the column
        // (three loads of it at S = 1): the empty asm makes v opaque, so it
        // is loaded once into a register. 112 x 112 x 32: 0.122 -> 0.104 ms.
        asm("" : "+v"(v));
        for (int kc = 0; kc < 3; ++kc) {
          const int u = (j - kc) / S;
          if (j >= kc && (j - kc) % S == 0 && u < Q) acc[u] = madd<T>(v, wt[kc], acc[u]);
        }
      }
    }
  }
  store_finished<T, Q>(acc, ep, c0, out + c0, c, 0, lanes);
}

#ifdef __AVX512F__
// depthwise_3x3_windows on the channels [c0, c) past the last whole vector.
// Not inlined: in the row loop beside the whole vectors' copy it took
// 112 x 112 x 32 from 0.130 to 0.165 ms.
template <class T, int Q, int S, bool All, bool Edge>
[[gnu::noinline]] void depthwise_3x3_remainder(const T* x, int64_t first, int64_t step, int64_t c,
                                               int64_t c0, const int64_t* at, int r0, int r1,
                                               const T* w, const Epilogue<T>& ep, T* out,
                                               SkipColumns skip) {
  depthwise_3x3_windows<T, Q, S, All, Edge>(x, first, step, c, c0, at, r0, r1, w, ep, out, skip,
                                            FirstLanes<T>(c - c0));
}
#endif

// The windows [0, count) of a 3x3 depthwise row that lie inside the input,
// kRowGroup<S> at a time, each group over all its channels before the next:
// the loop walks the rows' memory once, in order, where taking the channels
// outer (the weights held in registers for the whole row) walked it once
// per vector of channels, from L2 once the three input rows outgrew L1
// (112 x 112 x 32: 0.13 ms against 0.10, 56 x 56 x 144: 0.12 against 0.11,
// 112 x 112 x 96 at stride 2: 0.23 against 0.19). The weights are reloaded
// per group, from L1. Each value is stored with its bias and activation.
// `skip`: the first window's first column and the last window's last are
// padding (depthwise_3x3_windows).
template <class T, int S, bool All>
void depthwise_3x3_row(const T* x, int64_t first, int64_t step, const int64_t* at, int r0, int r1,
                       const T* w, const Epilogue<T>& ep, T* out, int64_t count, int64_t c,
                       SkipColumns skip) {
  using V = RowVector<T>;
  constexpr int64_t kLanes = int64_t(sizeof(V) / sizeof(T));
  const int64_t vectors_end = c - c % kLanes;
  const auto group = [&](auto windows, int64_t o, SkipColumns edges) {
    constexpr int Q = decltype(windows)::value;
    const int64_t from = first + o * step;
    T* const to = out + o * c;
    const auto vectors = [&](auto edge) {
      for (int64_t c0 = 0; c0 < vectors_end; c0 += kLanes)
        depthwise_3x3_windows<T, Q, S, All, decltype(edge)::value>(x, from, step, c, c0, at, r0,
                                                                    r1, w, ep, to, edges,
                                                                    AllLanes{});
#ifdef __AVX512F__
      if (vectors_end < c)
        depthwise_3x3_remainder<T, Q, S, All, decltype(edge)::value>(
            x, from, step, c, vectors_end, at, r0, r1, w, ep, to, edges);
#endif
    };
    if (S != 0 && (edges.first || edges.last))
      vectors(std::true_type{});
    else
      vectors(std::false_type{});
#ifndef __AVX512F__
    for (int64_t c0 = vectors_end; c0 < c; ++c0)
      for (int u = 0; u < Q; ++u) {
        const int k0 = u == 0 && edges.first ? 1 : 0, k1 = u == Q - 1 && edges.last ? 2 : 3;
        T acc = T(0);
        for (int r = r0; r < r1; ++r)
          for (int kc = k0; kc < k1; ++kc)
            acc = madd<T>(x[from + u * step + at[3 * r + kc] + c0], w[(3 * r + kc) * c + c0], acc);
        store_finished<T, 1>(&acc, ep, c0, to + u * c + c0, 0);
      }
#endif
  };
  constexpr int Q = kRowGroup<S>;
  const int64_t full = count - count % Q;
  for (int64_t o = 0; o < full; o += Q)
    group(std::integral_constant<int, Q>{}, o, {skip.first && o == 0, skip.last && o + Q == count});
  for_each_count<Q - 1>([&](auto q) {
    if (count - full == decltype(q)::value) group(q, full, {skip.first && full == 0, skip.last});
  });
}

// One window of a 3x3 depthwise row that reaches into the padding along
// the row: its taps inside, kernel rows [r0, r1) and columns [k0, k1), in
// kernel order (as `sum` in depthwise_forward_m1 takes them: the same
// bits). x + first is its tap (0, 0), in the padding or not. With no
// neighbouring windows to overlap with, up to four vectors of channels go
// together instead.
template <class T>
void depthwise_3x3_edge(const T* x, int64_t first, const int64_t* at, int r0, int r1, int k0,
                        int k1, const T* w, const Epilogue<T>& ep, T* out, int64_t c) {
  using V = RowVector<T>;
  constexpr int64_t kLanes = int64_t(sizeof(V) / sizeof(T));
  int64_t c0 = 0;
  // U vectors of channels from c0.
  const auto block = [&](auto unroll, const auto& lanes) {
    constexpr int U = decltype(unroll)::value;
    const auto load = [&](const T* from) { return lanes.template load<V>(from); };
    V acc[U];
    for (int j = 0; j < U; ++j) acc[j] = V{};
    for (int r = r0; r < r1; ++r)
      for (int kc = k0; kc < k1; ++kc) {
        const int t = 3 * r + kc;
        for (int j = 0; j < U; ++j)
          acc[j] = madd<T>(load(x + (first + at[t] + c0 + j * kLanes)),
                           load(w + (t * c + c0 + j * kLanes)), acc[j]);
      }
    store_finished<T, U>(acc, ep, c0, out + c0, kLanes, kLanes, lanes);
  };
  for (; c0 + 4 * kLanes <= c; c0 += 4 * kLanes) block(std::integral_constant<int, 4>{}, AllLanes{});
  for (; c0 + kLanes <= c; c0 += kLanes) block(std::integral_constant<int, 1>{}, AllLanes{});
#ifdef __AVX512F__
  if (c0 < c) block(std::integral_constant<int, 1>{}, FirstLanes<T>(c - c0));
#else
  for (; c0 < c; ++c0) {
    T acc = T(0);
    for (int r = r0; r < r1; ++r)
      for (int kc = k0; kc < k1; ++kc)
        acc = madd<T>(x[first + at[3 * r + kc] + c0], w[(3 * r + kc) * c + c0], acc);
    store_finished<T, 1>(&acc, ep, c0, out + c0, 0);
  }
#endif
}

// Output row o0 of image n of a 2-D 3x3 depthwise convolution: the windows
// [lo, hi), inside the input along the row, by the stride and dilation
// along it, and the others one at a time, in order (the last window after
// the others have brought the input rows' ends into cache).
template <class T>
void depthwise_3x3_row(const Geometry& g, int64_t n, int64_t o0, int64_t lo, int64_t hi,
                       const T* x, const int64_t* at, const T* w, const Epilogue<T>& ep, T* y,
                       int64_t c) {
  const int64_t top = o0 * g.stride[0] - g.pad_before[0];  // kernel row 0's input row
  int r0, r1;
  rows_inside(top, g.dilation[0], g.in[0], r0, r1);
  const auto edge = [&](int64_t o1) {
    const int64_t left = o1 * g.stride[1] - g.pad_before[1];
    int k0, k1;
    rows_inside(left, g.dilation[1], g.in[1], k0, k1);
    depthwise_3x3_edge(x, ((n * g.in[0] + top) * g.in[1] + left) * c, at, r0, r1, k0, k1, w, ep,
                       y + (n * g.out_size() + o0 * g.out[1] + o1) * c, c);
  };
  // The windows just outside [lo, hi) whose only column in the padding is
  // their first (on the left) or their last (on the right), the usual
  // padding of 1, join the row's groups with that column skipped: alone
  // they loaded a weight vector for every product (a third of the time of
  // a 7 x 7 x 960 layer, two windows in seven).
  // The loops' stride along the row: 1 or 2 (columns shared), 0 (any other).
  const int shared =
      g.dilation[1] == 1 && (g.stride[1] == 1 || g.stride[1] == 2) ? int(g.stride[1]) : 0;
  SkipColumns skip;
  int64_t from = lo, to = hi;
  if (shared != 0 && lo < hi) {
    skip.first = lo > 0 && (lo - 1) * shared - g.pad_before[1] == -1;
    skip.last = hi < g.out[1] && hi * shared - g.pad_before[1] + 2 == g.in[1];
    from -= skip.first, to += skip.last;
  }
  for (int64_t o1 = 0; o1 < from; ++o1) edge(o1);
  const int64_t first = ((n * g.in[0] + top) * g.in[1] + from * g.stride[1] - g.pad_before[1]) * c;
  const int64_t step = g.stride[1] * c;
  T* const out = y + (n * g.out_size() + o0 * g.out[1] + from) * c;
  const int64_t count = to - from;
  const auto row = [&](auto stride) {
    constexpr int S = decltype(stride)::value;
    if (r0 == 0 && r1 == 3)
      depthwise_3x3_row<T, S, true>(x, first, step, at, r0, r1, w, ep, out, count, c, skip);
    else
      depthwise_3x3_row<T, S, false>(x, first, step, at, r0, r1, w, ep, out, count, c, skip);
  };
  if (shared == 1)
    row(std::integral_constant<int, 1>{});
  else if (shared == 2)
    row(std::integral_constant<int, 2>{});
  else
    row(std::integral_constant<int, 0>{});
  for (int64_t o1 = to; o1 < g.out[1]; ++o1) edge(o1);
}
#endif

// Multiplier 1, the usual depthwise layer (MobileNet's): each output value
// sums its own channel's taps in registers, a vector of channels at a time
// (one register on the FMA paths), and is stored once with its bias and
// activation (ep: relu, relu6 or leaky_relu, the store's arithmetic that of
// apply_epilogue's pass, which the loop saves: 0.10 of 0.32 ms on MobileNet
// v2's 112 x 112 x 32 layer). Output
// positions are walked in order (no flat index to divide), and windows inside
// the input go several at a time (eight with AVX-512's 32 registers, four
// otherwise): independent sums hide the latency of the multiply-adds, and
// each weight vector is loaded once for the group. Each value is a zero
// start, the valid taps in kernel order (fused multiply-adds where the path
// has FMA: as separate products and sums the loop was bound by the two
// instructions per tap, at a third of the fused rate), then the bias; the
// same for every window and channel whatever its group, so the bits do not
// depend on the thread count.
// With padding_products, windows reaching into the padding also add the
// padding's products (add_padding_products) when a weight is not finite; the
// input gradient, which runs this loop on dy, has no such products. Those
// come after the store, so with them the activation is not applied (the
// return value says whether it was).
template <class T>
bool depthwise_forward_m1(const ConvProblem& p, const T* x, const T* w, Epilogue<T> ep, T* y,
                          bool padding_products = true) {
#ifdef __FMA__
  using V = RowVector<T>;
  constexpr int kGroup = kWindowGroup;
#else
  using V = typename WideVector<T>::type;
  constexpr int kGroup = 4;
#endif
  constexpr int64_t kLanes = int64_t(sizeof(V) / sizeof(T));
  const Geometry& g = p.g;
  const int64_t c = p.in_channels, kernel = g.kernel_size();
  const int nt = threads_for(p.rows() * kernel * c);
  const Taps taps(g);
  const bool pad_nonfinite = padding_products && !all_finite(w, kernel * c);
  const bool fused = !pad_nonfinite && ep.activation != Activation::sigmoid;
  if (!fused) ep.activation = Activation::none;
  const auto add_padding = [&](int64_t pos, T* o) {
    taps.for_each_padded(pos, [&](int64_t k) { add_padding_products(o, w + k * c, c); });
  };
  // Input offsets of the taps from a window's first, in elements.
  std::vector<int64_t> offsets(taps.offsets());
  for (int64_t& o : offsets) o *= c;
  const auto same = [](int64_t t) { return t; };
  const auto offset = [&](int64_t t) { return offsets[size_t(t)]; };
  [[maybe_unused]] const bool rows_3x3 = g.rank == 2 && g.kernel[0] == 3 && g.kernel[1] == 3;
  // Q windows: tap t of window u reads from[u] + at(t), with weights w + k(t) * c.
  // Fewer windows than a full group take several vectors of channels at once
  // (U of them, halving as the channels run out), so that a lone padded window
  // still has as many independent sums as a group.
  const auto sum = [&](auto windows, int64_t count, auto k, auto at, const T* const* from,
                       T* const* out) {
    constexpr int Q = decltype(windows)::value;
    int64_t c0 = 0;
    // U vectors of channels from c0.
    const auto block = [&](auto unroll, const auto& lanes) {
      constexpr int U = decltype(unroll)::value;
      const auto load = [&](const T* from) { return lanes.template load<V>(from); };
      V acc[Q][U] = {};
      for (int64_t t = 0; t < count; ++t) {
        const T* const wk = w + k(t) * c + c0;
        V wt[U];
        for (int j = 0; j < U; ++j) wt[j] = load(wk + j * kLanes);
        const int64_t a = at(t) + c0;
        for (int u = 0; u < Q; ++u)
          for (int j = 0; j < U; ++j)
            acc[u][j] = madd<T>(load(from[u] + a + j * kLanes), wt[j], acc[u][j]);
      }
      for (int u = 0; u < Q; ++u)
        store_finished<T, U>(acc[u], ep, c0, out[u] + c0, kLanes, kLanes, lanes);
    };
    const auto vectors = [&](auto unroll) {
      for (; c0 + decltype(unroll)::value * kLanes <= c; c0 += decltype(unroll)::value * kLanes)
        block(unroll, AllLanes{});
    };
    constexpr int kUnroll = Q >= kGroup ? 1 : kGroup / Q;
    if constexpr (kUnroll >= 8) vectors(std::integral_constant<int, 8>{});
    if constexpr (kUnroll >= 4) vectors(std::integral_constant<int, 4>{});
    if constexpr (kUnroll >= 2) vectors(std::integral_constant<int, 2>{});
    vectors(std::integral_constant<int, 1>{});
#ifdef __AVX512F__
    if (c0 < c) block(std::integral_constant<int, 1>{}, FirstLanes<T>(c - c0));
#else
    for (; c0 < c; ++c0)
      for (int u = 0; u < Q; ++u) {
        T acc = T(0);
        for (int64_t t = 0; t < count; ++t)
          acc = madd<T>(from[u][at(t) + c0], w[k(t) * c + c0], acc);
        out[u][c0] =
            finished(acc, ep.bias ? ep.bias + c0 : nullptr, ep.activation, ep.negative_slope);
      }
#endif
  };
  // The last windows of a row, fewer than a group, as one smaller group.
  const auto sum_partial = [&](int queued, const T* const* from, T* const* out) {
    for_each_count<kGroup - 1>([&](auto q) {
      if (queued == decltype(q)::value) sum(q, kernel, same, offset, from, out);
    });
  };
  // The window of output coordinate o along d lies inside the input.
  const auto inside = [&](int d, int64_t o) {
    const int64_t first = o * g.stride[d] - g.pad_before[d];
    return first >= 0 && first + g.dilation[d] * (g.kernel[d] - 1) < g.in[d];
  };
  // A 2-D 3x3 row goes to depthwise_3x3_row with the span of its windows
  // inside the input along it, [lo, hi), the same for every row; other
  // kernels take the loop below.
  int64_t lo = 0, hi = 0;
#ifdef __FMA__
  if (rows_3x3) {
    while (lo < g.out[1] && !inside(1, lo)) ++lo;
    hi = lo;
    while (hi < g.out[1] && inside(1, hi)) ++hi;
  }
#endif
  // Each thread's list of a padded window's taps, allocated here: an
  // allocation failing inside the parallel region would end the process.
  std::vector<int64_t> tap_lists(2 * static_cast<size_t>(nt * kernel));
  const StopToken stop;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    int64_t* tap_k = tap_lists.data() + 2 * omp_get_thread_num() * kernel;
    int64_t* tap_at = tap_k + kernel;
#pragma omp for schedule(static)
    for (int64_t plane = 0; plane < p.batch * g.out[0]; ++plane) {
      if (stop) continue;
      const int64_t n = plane / g.out[0], o0 = plane % g.out[0];
      int queued = 0;
      const T* from[kGroup];
      T* out[kGroup];
#ifdef __FMA__
      if (rows_3x3) {
        depthwise_3x3_row(g, n, o0, lo, hi, x, offsets.data(), w, ep, y, c);
        for (int64_t o1 = 0; pad_nonfinite && o1 < g.out[1]; ++o1)
          add_padding(o0 * g.out[1] + o1, y + (n * g.out_size() + o0 * g.out[1] + o1) * c);
        continue;
      }
#endif
      const auto column = [&](int64_t o1) {
        for (int64_t o2 = 0; o2 < g.out[2]; ++o2) {
          const int64_t pos = (o0 * g.out[1] + o1) * g.out[2] + o2;
          T* const o = y + (n * g.out_size() + pos) * c;
          if (inside(0, o0) && inside(1, o1) && inside(2, o2)) {
            const int64_t i0 = n * g.in[0] + o0 * g.stride[0] - g.pad_before[0];
            const int64_t i1 = o1 * g.stride[1] - g.pad_before[1];
            const int64_t i2 = o2 * g.stride[2] - g.pad_before[2];
            from[queued] = x + ((i0 * g.in[1] + i1) * g.in[2] + i2) * c;
            out[queued] = o;
            if (++queued == kGroup) {
              sum(std::integral_constant<int, kGroup>{}, kernel, same, offset, from, out);
              queued = 0;
            }
            continue;
          }
          // A window reaching into the padding: its valid taps only.
          int64_t count = 0;
          taps.for_each(n, pos, [&](int64_t k, int64_t i) {
            tap_k[count] = k, tap_at[count] = i * c, ++count;
          });
          const T* const start = x;
          sum(std::integral_constant<int, 1>{}, count, [&](int64_t t) { return tap_k[t]; },
              [&](int64_t t) { return tap_at[t]; }, &start, &o);
          if (pad_nonfinite) add_padding(pos, o);
        }
      };
      for (int64_t o1 = 0; o1 < lo; ++o1) column(o1);
      for (int64_t o1 = hi; o1 < g.out[1]; ++o1) column(o1);
      sum_partial(queued, from, out);
    }
  }
  return fused;
}

template <class T>
bool depthwise_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y,
                       Activation activation, T negative_slope) {
  const int64_t cin = p.in_channels, cout = p.out_channels, mult = cout / cin;
  if (mult == 1) return depthwise_forward_m1(p, x, w, Epilogue<T>{b, activation, negative_slope}, y);
  // Each row finished while in cache; sigmoid is left to the caller's pass.
  const bool fused = activation != Activation::sigmoid;
  const int64_t positions = p.g.out_size(), rows = p.rows();
  const int nt = threads_for(rows * p.g.kernel_size() * cout);
  const Taps taps(p.g);
  const bool pad_nonfinite = !all_finite(w, p.g.kernel_size() * cout);
  const StopToken stop;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t r = 0; r < rows; ++r) {
    if (stop) continue;
    T* out = y + r * cout;
    std::fill_n(out, cout, T(0));
    taps.for_each(r / positions, r % positions, [&](int64_t k, int64_t i) {
      multiply_add(x + i * cin, w + k * cout, out, cin, mult);
    });
    if (pad_nonfinite)
      taps.for_each_padded(r % positions,
                           [&](int64_t k) { add_padding_products(out, w + k * cout, cout); });
    if (b)
      for (int64_t c = 0; c < cout; ++c) out[c] += b[c];
    if (fused)
      with_activation(activation, [&](auto a) {
        for (int64_t c = 0; c < cout; ++c)
          out[c] = finished(out[c], static_cast<const T*>(nullptr), decltype(a)::value, negative_slope);
      });
  }
  return fused;
}

// The input gradient of a stride-1 depthwise convolution of multiplier 1 is
// itself one: dy convolved with the kernel flipped in every dimension, padded
// by the kernel's span less the forward's padding (dx has x's shape). It then
// runs on depthwise_forward_m1's loops instead of the general gather below.
// Each dx value sums its taps in the flipped kernel order, fused where the
// path has FMA; the same for every position, so thread counts do not change it.
template <class T>
bool depthwise_backward_input_as_forward(const ConvProblem& p, const T* w, const T* dy, T* dx) {
  const Geometry& g = p.g;
  ConvProblem q = p;
  for (int d = 0; d < kMaxSpatialDims; ++d) {
    const int64_t span = g.dilation[d] * (g.kernel[d] - 1);
    if (g.stride[d] != 1 || g.pad_before[d] > span || g.pad_after[d] > span) return false;
    q.g.in[d] = g.out[d];
    q.g.out[d] = g.in[d];
    q.g.pad_before[d] = span - g.pad_before[d];
    q.g.pad_after[d] = span - g.pad_after[d];
  }
  const int64_t c = p.in_channels, kernel = g.kernel_size();
  std::vector<T> flipped(size_t(kernel * c));
  for (int64_t k = 0; k < kernel; ++k)
    std::copy_n(w + k * c, c, flipped.data() + (kernel - 1 - k) * c);
  depthwise_forward_m1(q, dy, flipped.data(), Epilogue<T>{nullptr, Activation::none, T(0)}, dx,
                       false);
  return true;
}

template <class T>
void depthwise_backward_input(const ConvProblem& p, const T* w, const T* dy, T* dx) {
  const int64_t cin = p.in_channels, cout = p.out_channels, mult = cout / cin;
  if (mult == 1 && depthwise_backward_input_as_forward(p, w, dy, dx)) return;
  const int64_t positions = p.g.in_size(), rows = p.batch * positions;
  const int nt = threads_for(rows * p.g.kernel_size() * cout);
  const StopToken stop;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t r = 0; r < rows; ++r) {
    if (stop) continue;
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

#ifdef __FMA__
// dw of a 2-D 3x3 depthwise convolution of multiplier 1 from output row o0
// of image n, for the channels [c0, c0 + lanes of L) (L a RowVector, or
// T for one channel): the nine sums stay in registers along the row and are
// then added to dw, where the general loop below added every product into dw
// in memory. A dw value is the rows in order, each the sum of its positions
// in order (fused multiply-adds where the path has FMA), whichever thread
// makes it.
template <class T, class L>
void depthwise_3x3_weight_row(const ConvProblem& p, const T* x, const T* dy, T* dw, int64_t n,
                              int64_t o0, int64_t c0, const int64_t* at) {
  const auto load = [](const T* from) {
    L v;
    std::memcpy(&v, from, sizeof(L));
    return v;
  };
  const Geometry& g = p.g;
  const int64_t c = p.in_channels;
  const int64_t top = o0 * g.stride[0] - g.pad_before[0];
  int r0, r1;
  rows_inside(top, g.dilation[0], g.in[0], r0, r1);
  L acc[9];
  for (L& a : acc) a = L{};
  const T* grad = dy + (n * g.out[0] + o0) * g.out[1] * c + c0;
  for (int64_t o1 = 0; o1 < g.out[1]; ++o1, grad += c) {
    const int64_t left = o1 * g.stride[1] - g.pad_before[1];
    int k0, k1;
    rows_inside(left, g.dilation[1], g.in[1], k0, k1);
    const int64_t first = ((n * g.in[0] + top) * g.in[1] + left) * c + c0;
    const L d = load(grad);
    if (r0 == 0 && r1 == 3 && k0 == 0 && k1 == 3) {
      for (int t = 0; t < 9; ++t) acc[t] = madd<T>(load(x + (first + at[t])), d, acc[t]);
      continue;
    }
    // Taps in the padding multiply zeros: NaN for a NaN or infinite dy, as
    // in the reference.
    for (int kr = 0; kr < 3; ++kr)
      for (int kc = 0; kc < 3; ++kc) {
        const bool in = kr >= r0 && kr < r1 && kc >= k0 && kc < k1;
        const L v = in ? load(x + (first + at[3 * kr + kc])) : L{};
        acc[3 * kr + kc] = madd<T>(v, d, acc[3 * kr + kc]);
      }
  }
  for (int t = 0; t < 9; ++t) {
    const L sum = load(dw + t * c + c0) + acc[t];
    std::memcpy(dw + t * c + c0, &sum, sizeof(L));
  }
}

template <class T>
void depthwise_3x3_backward_weight(const ConvProblem& p, const T* x, const T* dy, T* dw) {
  using V = RowVector<T>;
  constexpr int64_t kLanes = int64_t(sizeof(V) / sizeof(T));
  const int64_t c = p.in_channels, vectors = c / kLanes, items = vectors + c % kLanes;
  std::fill_n(dw, 9 * c, T(0));
  std::vector<int64_t> at(Taps(p.g).offsets());
  for (int64_t& o : at) o *= c;
  const int nt = int(std::min<int64_t>(threads_for(p.rows() * 9 * c), items));
  const StopToken stop;
  // Threads split the items (a vector of channels or, past the last whole
  // one, one channel) and walk the rows together, so that the rows' inputs
  // are read while in cache.
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int64_t parts = omp_get_num_threads(), part = omp_get_thread_num();
    const int64_t i0 = items * part / parts, i1 = items * (part + 1) / parts;
    for (int64_t n = 0; n < p.batch && !stop; ++n)
      for (int64_t o0 = 0; o0 < p.g.out[0]; ++o0)
        for (int64_t item = i0; item < i1; ++item) {
          if (item < vectors)
            depthwise_3x3_weight_row<T, V>(p, x, dy, dw, n, o0, item * kLanes, at.data());
          else
            depthwise_3x3_weight_row<T, T>(p, x, dy, dw, n, o0, vectors * kLanes + item - vectors,
                                           at.data());
        }
  }
}
#endif

template <class T>
void depthwise_backward_weight(const ConvProblem& p, const T* x, const T* dy, T* dw) {
  const int64_t cin = p.in_channels, cout = p.out_channels, mult = cout / cin;
#ifdef __FMA__
  if (mult == 1 && p.g.rank == 2 && p.g.kernel[0] == 3 && p.g.kernel[1] == 3)
    return depthwise_3x3_backward_weight(p, x, dy, dw);
#endif
  const int64_t positions = p.g.out_size(), rows = p.rows();
  std::fill_n(dw, p.g.kernel_size() * cout, T(0));
  const bool dy_nonfinite = !all_finite(dy, rows * cout);
  // Threads split the channels; each dw element sums the rows in order.
  const int nt = int(std::min<int64_t>(threads_for(rows * p.g.kernel_size() * cout), cin));
  const Taps taps(p.g);
  const StopToken stop;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int64_t parts = omp_get_num_threads(), part = omp_get_thread_num();
    const int64_t c0 = cin * part / parts, c1 = cin * (part + 1) / parts;
    for (int64_t r = 0; r < rows && !stop; ++r) {
      const T* grad = dy + r * cout;
      taps.for_each(r / positions, r % positions, [&](int64_t k, int64_t i) {
          multiply_add(x + i * cin + c0, grad + c0 * mult, dw + k * cout + c0 * mult, c1 - c0, mult);
      });
      // dy times the padding's zeros: NaN where dy is not finite.
      if (dy_nonfinite)
        taps.for_each_padded(r % positions, [&](int64_t k) {
          add_padding_products(dw + k * cout + c0 * mult, grad + c0 * mult, (c1 - c0) * mult);
        });
    }
  }
}

// The input gradient of a strided few-channel convolution, gathered per
// input position over the outputs that read it (few::backward_input covers
// stride 1).
template <class T>
void few_channels_backward_input_strided(const ConvProblem& p, const T* w, const T* dy, T* dx) {
  using V = typename Vector<T>::type;
  constexpr int64_t width = int64_t(sizeof(V) / sizeof(T));
  const int64_t cin = p.in_channels, cout = p.out_channels;
  const int64_t blocked = cout - cout % width;
  const int64_t positions = p.g.in_size(), rows = p.batch * positions;
  const int nt = threads_for(rows * p.patch_size() * cout);
  const StopToken stop;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t r = 0; r < rows; ++r) {
    if (stop) continue;
    // dx[r, ci] is a dot product of dy rows with weight rows over the output
    // channels: four vector partial sums (independent chains, so the adds
    // overlap), reduced once at the end.
    for (int64_t ci = 0; ci < cin; ++ci) {
      V acc[4] = {};
      T tail = 0;
      for_each_reader(p.g, r / positions, r % positions, [&](int64_t k, int64_t o) {
        const T* grad = dy + o * cout;
        const T* wk = w + (k * cin + ci) * cout;
        for (int64_t co = 0; co < blocked; co += width) {
          V g, wv;
          std::memcpy(&g, grad + co, sizeof(V));
          std::memcpy(&wv, wk + co, sizeof(V));
          acc[(co / width) % 4] += g * wv;
        }
        for (int64_t co = blocked; co < cout; ++co) tail += grad[co] * wk[co];
      });
      const V total = (acc[0] + acc[1]) + (acc[2] + acc[3]);
      T sum = 0;
      for (int64_t j = 0; j < width; ++j) sum += total[j];
      dx[r * cin + ci] = sum + tail;
    }
  }
}

template <class T>
void few_channels_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y,
                          bool relu) {
  few::forward(p, x, w, b, y, relu);
}

template <class T>
void few_channels_backward_input(const ConvProblem& p, const T* w, const T* dy, T* dx) {
  const Geometry& g = p.g;
  if (g.stride[0] == 1 && g.stride[1] == 1 && g.stride[2] == 1)
    return few::backward_input(p, w, dy, dx);
  few_channels_backward_input_strided(p, w, dy, dx);
}

// dx[i] = sum over kernel offsets k of dy[i + pad_before - k * dilation] . w[k]^T
// is the forward convolution of dy (cout channels, padded by reach -
// pad_before and reach - pad_after) with w'[K - 1 - k] = w[k]^T.
template <class T>
void wide_direct_backward_input(const ConvProblem& p, const T* w, const T* dy, T* dx) {
  ConvProblem t = p;
  Geometry& g = t.g;
  for (int d = 0; d < kMaxSpatialDims; ++d) {
    const int64_t reach = g.dilation[d] * (g.kernel[d] - 1);
    g.in[d] = p.g.out[d];
    g.out[d] = p.g.in[d];
    g.pad_before[d] = reach - p.g.pad_before[d];
    g.pad_after[d] = reach - p.g.pad_after[d];
  }
  const int64_t cin = p.in_channels, cout = p.out_channels, K = g.kernel_size();
  t.in_channels = cout;
  t.out_channels = cin;
  std::vector<T> flipped(size_t(K * cin * cout));
  for (int64_t k = 0; k < K; ++k)
    for (int64_t ci = 0; ci < cin; ++ci)
      for (int64_t co = 0; co < cout; ++co)
        flipped[size_t(((K - 1 - k) * cout + co) * cin + ci)] = w[(k * cin + ci) * cout + co];
  few::forward(t, dy, flipped.data(), static_cast<const T*>(nullptr), dx, false);
}

// The caller checks wide_direct_backward_weight_applies; any other problem
// (never passed) would take the general few-channel loops.
template <class T>
void wide_direct_backward_weight(const ConvProblem& p, const T* x, const T* dy, T* dw) {
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) return few::backward_weight_wide(p, x, dy, dw);
#endif
  few::backward_weight(p, x, dy, dw, FusedWeightGradient<T>{});
}

template <class T>
void few_channels_backward_weight(const ConvProblem& p, const T* x, const T* dy, T* dw,
                                  const FusedWeightGradient<T>& fused) {
  few::backward_weight(p, x, dy, dw, fused);
}

// One piece of each of `rows` patch rows: len elements (at most a register
// tile's height, 14 on AVX-512) from from[r * from_stride] + channel to
// to + r * to_stride, or zeros where from[...] is null (padding). A call to
// memcpy would cost more than such a copy; with AVX-512 it is one masked
// load and store, the mask made once for all rows (masked-off elements are
// not touched: no read past the end of x).
template <class T>
void copy_piece_rows(const T* const* from, int64_t from_stride, int64_t channel, T* to,
                     int64_t to_stride, int64_t rows, int64_t len) {
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) {
    if (len <= 16) {
      const __mmask16 m = __mmask16((1u << len) - 1);
      for (int64_t r = 0; r < rows; ++r, from += from_stride, to += to_stride)
        _mm512_mask_storeu_ps(to, m, *from ? _mm512_maskz_loadu_ps(m, *from + channel)
                                           : _mm512_setzero_ps());
      return;
    }
  } else {
    if (len <= 16) {
      const __mmask8 m0 = __mmask8(len >= 8 ? 0xffu : (1u << len) - 1);
      const __mmask8 m1 = __mmask8(len > 8 ? (1u << (len - 8)) - 1 : 0u);
      for (int64_t r = 0; r < rows; ++r, from += from_stride, to += to_stride) {
        const T* f = *from ? *from + channel : nullptr;
        _mm512_mask_storeu_pd(to, m0, f ? _mm512_maskz_loadu_pd(m0, f) : _mm512_setzero_pd());
        _mm512_mask_storeu_pd(to + 8, m1,
                              f ? _mm512_maskz_loadu_pd(m1, f + 8) : _mm512_setzero_pd());
      }
      return;
    }
  }
#endif
  for (int64_t r = 0; r < rows; ++r, from += from_stride, to += to_stride) {
    if (*from)
      for (int64_t e = 0; e < len; ++e) to[e] = (*from)[channel + e];
    else
      for (int64_t e = 0; e < len; ++e) to[e] = T(0);
  }
}

template <class T>
void fill_patch_columns(const void* context, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
                        int64_t mr, T* dst) {
  const auto& s = *static_cast<const PatchColumns<T>*>(context);
  const ConvProblem& p = *s.p;
  const Geometry& g = p.g;
  const int64_t cg = p.in_per_group(), cin = p.in_channels;
  const int64_t first = s.col0 + i0, last = first + mc, sliver = kc * mr;
  // The kernel offsets j whose channels the columns cover, their dilated
  // coordinates and their offset in x from the window's corner; and the
  // columns cut into pieces that stay in one sliver row (at most mr
  // elements): kernel offset, first channel, place in the slivers.
  const int64_t j0 = first / cg, j1 = (last - 1) / cg + 1;
  struct Offset {
    int64_t d0, d1, d2, at;
  };
  struct Piece {
    int64_t j, channel, place, len;
  };
  std::vector<Offset> offsets;
  std::vector<Piece> pieces;
  for (int64_t j = j0; j < j1; ++j) {
    const int64_t k2 = j % g.kernel[2], k1 = j / g.kernel[2] % g.kernel[1];
    const int64_t k0 = j / (g.kernel[2] * g.kernel[1]);
    const int64_t d0 = k0 * g.dilation[0], d1 = k1 * g.dilation[1], d2 = k2 * g.dilation[2];
    offsets.push_back({d0, d1, d2, ((d0 * g.in[1] + d1) * g.in[2] + d2) * cin});
    for (int64_t c = std::max(j * cg, first); c < std::min((j + 1) * cg, last);) {
      const int64_t col = c - first, lane = col % mr;
      const int64_t len = std::min({(j + 1) * cg, last, c + mr - lane}) - c;
      pieces.push_back({j - j0, c - j * cg, col / mr * sliver + lane, len});
      c += len;
    }
  }
  const int64_t span0 = (g.kernel[0] - 1) * g.dilation[0], span1 = (g.kernel[1] - 1) * g.dilation[1];
  const int64_t span2 = (g.kernel[2] - 1) * g.dilation[2];
  // The first row's output position, then advanced one step at a time.
  const int64_t f = s.row0 + p0;
  int64_t o2 = f % g.out[2], o1 = f / g.out[2] % g.out[1];
  int64_t o0 = f / (g.out[2] * g.out[1]) % g.out[0], n = f / g.out_size();
  // Each row's window corner, then where each kernel offset reads (null in
  // the padding); then the pieces, each down all rows: one sliver's column
  // of rows written front to back, the mask made once.
  const int64_t count = int64_t(offsets.size());
  std::vector<const T*> src(size_t(kc * count));
  for (int64_t r = 0; r < kc; ++r) {
    const int64_t b0 = o0 * g.stride[0] - g.pad_before[0], b1 = o1 * g.stride[1] - g.pad_before[1];
    const int64_t b2 = o2 * g.stride[2] - g.pad_before[2];
    const int64_t corner = (((n * g.in[0] + b0) * g.in[1] + b1) * g.in[2] + b2) * cin + s.group * cg;
    const bool inside = b0 >= 0 && b0 + span0 < g.in[0] && b1 >= 0 && b1 + span1 < g.in[1] &&
                        b2 >= 0 && b2 + span2 < g.in[2];
    const T** row = src.data() + r * count;
    for (int64_t j = 0; j < count; ++j) {
      const Offset& o = offsets[size_t(j)];
      const bool in = inside || (unsigned_lt(b0 + o.d0, g.in[0]) && unsigned_lt(b1 + o.d1, g.in[1]) &&
                                 unsigned_lt(b2 + o.d2, g.in[2]));
      row[j] = in ? s.x + (corner + o.at) : nullptr;
    }
    if (++o2 == g.out[2]) {
      o2 = 0;
      if (++o1 == g.out[1]) {
        o1 = 0;
        if (++o0 == g.out[0]) o0 = 0, ++n;
      }
    }
  }
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) {
    if (mr <= 16) {
      // Each sliver row gathered from its pieces into one register (masked
      // loads into their lanes) and stored once: rows of 14 floats lie
      // across cache lines, and stores, not loads, set the pace. Lanes no
      // piece fills (rows past mc) stay zero.
      const __mmask16 row_mask = __mmask16((1u << mr) - 1);
      for (size_t i = 0, e = 0; i < pieces.size(); i = e) {
        const int64_t sliver_at = pieces[i].place / sliver * sliver;
        while (e < pieces.size() && pieces[e].place / sliver * sliver == sliver_at) ++e;
        T* out = dst + sliver_at;
        // One or two pieces (channels of one or two kernel offsets, the
        // usual case with 14 or more channels): their masks and offsets
        // held in registers, the loop over rows down to a load or two and
        // a store. Its instructions, not memory, set the pace otherwise.
        if (e - i <= 2) {
          const Piece& a = pieces[i];
          const Piece& b = pieces[e - 1];
          const int64_t lane_a = a.place - sliver_at, lane_b = b.place - sliver_at;
          const __mmask16 mask_a = __mmask16(((1u << a.len) - 1) << lane_a);
          const __mmask16 mask_b = e - i == 2 ? __mmask16(((1u << b.len) - 1) << lane_b) : 0;
          const int64_t shift_a = a.channel - lane_a, shift_b = b.channel - lane_b;
          const T* const* row = src.data();
          const int64_t ja = a.j, jb = b.j;
          for (int64_t r = 0; r < kc; ++r, out += mr, row += count) {
            const T* from_a = row[ja];
            const T* from_b = row[jb];
            __m512 v = from_a ? _mm512_maskz_loadu_ps(mask_a, from_a + shift_a) : _mm512_setzero_ps();
            if (mask_b && from_b) v = _mm512_mask_loadu_ps(v, mask_b, from_b + shift_b);
            _mm512_mask_storeu_ps(out, row_mask, v);
          }
          continue;
        }
        for (int64_t r = 0; r < kc; ++r, out += mr) {
          const T* const* row = src.data() + r * count;
          __m512 v = _mm512_setzero_ps();
          for (size_t q = i; q < e; ++q) {
            const Piece& piece = pieces[q];
            const int64_t lane = piece.place - sliver_at;
            if (const T* from = row[piece.j])
              v = _mm512_mask_loadu_ps(v, __mmask16(((1u << piece.len) - 1) << lane),
                                       from + (piece.channel - lane));
          }
          _mm512_mask_storeu_ps(out, row_mask, v);
        }
      }
      return;
    }
  }
#endif
  if (mc % mr != 0) std::fill_n(dst + mc / mr * sliver, sliver, T(0));
  for (const Piece& piece : pieces)
    copy_piece_rows(src.data() + piece.j, count, piece.channel, dst + piece.place, mr, kc,
                    piece.len);
}

CNNKIT_INSTANTIATE_DIRECT(float)
CNNKIT_INSTANTIATE_DIRECT(double)
template void fill_patch_columns<float>(const void*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                        float*);
template void fill_patch_columns<double>(const void*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                         double*);

}  // namespace cnnkit::detail::CNNKIT_ISA_NS

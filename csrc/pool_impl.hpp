// Pooling loops, compiled once per instruction set: pool.cpp includes this
// with CNNKIT_ISA_NS=baseline, pool_avx2.cpp with CNNKIT_ISA_NS=avx2 and
// -mavx2 -mfma. Every innermost loop runs over the contiguous channel axis and
// is branch-free, so the compiler vectorises it for the target of each unit.
// The window walk (which input elements a window holds, in which order) is
// shared by the forward and backward loops.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "geometry.hpp"

namespace cnnkit::pool_impl {

// A half-open index range [begin, end).
struct Span {
  int64_t begin, end;
};

// The input range that window `o` covers in dimension d, clipped to the real
// (unpadded) input.
inline Span window_span(const Geometry& g, int d, int64_t o) {
  const int64_t start = o * g.stride[d] - g.pad_before[d];
  return {std::max<int64_t>(start, 0), std::min(start + g.kernel[d], g.in[d])};
}

// Whether windows never overlap (stride >= window in every dimension, as
// in the usual 2x2/2 pooling): each input element is then in at most one.
inline bool windows_disjoint(const Geometry& g) {
  for (int d = 0; d < kMaxSpatialDims; ++d)
    if (g.stride[d] < g.kernel[d]) return false;
  return true;
}

// The real input elements of one window: a box of spans, one per dimension.
struct Window {
  Span span[kMaxSpatialDims];

  int64_t count() const {
    return (span[0].end - span[0].begin) * (span[1].end - span[1].begin) *
           (span[2].end - span[2].begin);
  }
};

inline Window window_at(const Geometry& g, int64_t o0, int64_t o1, int64_t o2) {
  return {{window_span(g, 0, o0), window_span(g, 1, o1), window_span(g, 2, o2)}};
}

// Calls f(e) for the spatial index e (into one image) of every real element
// of the window, in row-major window order: the order that decides max-pool
// ties and the order in which average pooling sums.
template <class F>
inline void for_each_element(const Geometry& g, const Window& w, F&& f) {
  for (int64_t i0 = w.span[0].begin; i0 < w.span[0].end; ++i0)
    for (int64_t i1 = w.span[1].begin; i1 < w.span[1].end; ++i1) {
      const int64_t row = (i0 * g.in[1] + i1) * g.in[2];
      for (int64_t i2 = w.span[2].begin; i2 < w.span[2].end; ++i2) f(row + i2);
    }
}

#define CNNKIT_DECLARE_POOL_LOOPS(ns)                                                         \
  namespace ns {                                                                             \
  /* Output rows [r0, r1) of (batch, out[0], out[1]), each out[2] windows long. */          \
  template <class T>                                                                         \
  void max_pool_rows(const Geometry& g, int64_t channels, const T* x, T* y, int64_t r0,      \
                     int64_t r1);                                                            \
  template <class T>                                                                         \
  void avg_pool_rows(const Geometry& g, int64_t channels, const T* x, T* y, int64_t r0,      \
                     int64_t r1);                                                            \
  /* max_pool_rows that also writes each maximum's spatial index in its image. */          \
  template <class T>                                                                         \
  void max_pool_indices_rows(const Geometry& g, int64_t channels, const T* x, T* y,          \
                             int64_t* indices, int64_t r0, int64_t r1);                      \
  /* dx of image n for the input rows [lo, hi) of the first spatial dimension; scratch    \
     holds 2 * channels values. */                                                           \
  template <class T>                                                                         \
  void max_pool_backward_rows(const Geometry& g, int64_t channels, const T* x, const T* dy,  \
                              T* dx, int64_t n, int64_t lo, int64_t hi, T* scratch);         \
  template <class T>                                                                         \
  void avg_pool_backward_rows(const Geometry& g, int64_t channels, const T* dy, T* dx,       \
                              int64_t n, int64_t lo, int64_t hi, T* scratch);                \
  /* max_pool_backward_rows from max_pool_indices_rows's indices instead of x. */           \
  template <class T>                                                                         \
  /* Returns false, leaving dx partly written, when an index is outside its window's     \
     rows (out of range included): the tasks that visit the window might not own it. */   \
  bool max_pool_backward_indices_rows(const Geometry& g, int64_t channels,                   \
                                      const int64_t* indices, const T* dy, T* dx, int64_t n, \
                                      int64_t lo, int64_t hi);                               \
  /* max_pool_backward_indices_rows for windows that never overlap, writing each dx     \
     element once; false when an index lies outside its own window. With relu_y (the      \
     forward's output), dy times relu_y > 0 as activation_backward makes it. */            \
  template <class T>                                                                         \
  bool max_pool_backward_local_rows(const Geometry& g, int64_t channels,                     \
                                    const int64_t* indices, const T* dy, const T* relu_y,    \
                                    T* dx, int64_t n, int64_t lo, int64_t hi);               \
  /* Channels [c0, c1) of one image x (positions, channels) into y (channels). */           \
  template <class T>                                                                         \
  void global_max_block(const T* x, int64_t positions, int64_t channels, int64_t c0,         \
                        int64_t c1, T* y);                                                   \
  template <class T>                                                                         \
  void global_avg_block(const T* x, int64_t positions, int64_t channels, int64_t c0,         \
                        int64_t c1, double* acc, T* y);                                      \
  }
CNNKIT_DECLARE_POOL_LOOPS(baseline)
CNNKIT_DECLARE_POOL_LOOPS(avx2)
CNNKIT_DECLARE_POOL_LOOPS(avx512)
#undef CNNKIT_DECLARE_POOL_LOOPS

// AVX-512 only (pool_avx512.cpp; callers check CNNKIT_HAVE_AVX512 and the
// active instruction set). One run of 2-D float max pooling along the second
// dimension, written out with intrinsics: output q (of `count`, `ldy` floats
// apart) is the maximum over the `nrows` rows `rows` (each `width` positions
// `ldx` floats apart) of the columns [q * sw - pad, q * sw - pad + kw) inside
// [0, width), which must not be empty, for each of `channels` channels; the
// channels in blocks of four vectors held in registers. The bits of
// max_pool_rows: the same two steps per element (max, then a NaN taking
// over) in row-major window order. max_pool takes it for overlapping 2-D
// windows (figures in pool.cpp), and the stem convolution pools its rows
// with it (csrc/conv_stem.cpp).
namespace avx512 {
void max_pool_line(const float* const* rows, int64_t nrows, int64_t width, int64_t channels,
                   int64_t ldx, int64_t kw, int64_t sw, int64_t pad, int64_t count, float* y,
                   int64_t ldy);
}  // namespace avx512

#ifdef CNNKIT_ISA_NS
namespace CNNKIT_ISA_NS {

template <class T>
constexpr T kLowest = -std::numeric_limits<T>::infinity();

// acc = max(acc, x), NaN-propagating (a NaN in x replaces acc; a NaN in acc stays).
// Written as a max, then the NaN select: `v > a ? v : a` is the processor's
// max instruction, which leaves one compare per vector instead of two, and
// AVX-512 has one port for those (55x55x128 3x3/2, in cache, one thread, CPU
// time: AVX-512 0.058 -> 0.054 ms, AVX2 0.100 -> 0.093, baseline 0.165 ->
// 0.135). The same value as (v > a || v != v) ? v : a, bit for bit.
template <class T>
inline void max_into(T* __restrict acc, const T* __restrict x, int64_t n) {
  for (int64_t c = 0; c < n; ++c) {
    const T v = x[c], a = acc[c];
    const T m = v > a ? v : a;
    acc[c] = v != v ? v : m;
  }
}

template <class T>
inline void add_into(T* __restrict acc, const T* __restrict x, int64_t n) {
  for (int64_t c = 0; c < n; ++c) acc[c] += x[c];
}

// Whether v is where the window maximum m came from: equal to it, or a NaN
// (when the window holds a NaN, m is NaN and no value equals it).
template <class T>
inline bool is_max(T v, T m) {
  return v == m || v != v;
}

// Called for the window's elements in order: the first element that is the
// window maximum takes the pending gradient g, which is then cleared so that
// later ties receive nothing.
template <class T>
inline void route_to_first_max(T* __restrict dx, const T* __restrict x, const T* __restrict m,
                               T* __restrict g, int64_t n) {
  for (int64_t c = 0; c < n; ++c) {
    const bool hit = is_max(x[c], m[c]);
    dx[c] += hit ? g[c] : T(0);
    g[c] = hit ? T(0) : g[c];
  }
}

// route_to_first_max for an element whose gradient another task writes: only
// clears what it would take.
template <class T>
inline void pass_first_max(const T* __restrict x, const T* __restrict m, T* __restrict g,
                           int64_t n) {
  for (int64_t c = 0; c < n; ++c) g[c] = is_max(x[c], m[c]) ? T(0) : g[c];
}

// Output position (n, o0, o1) of row r of (batch, out[0], out[1]).
struct RowIndex {
  int64_t n, o0, o1;
};

inline RowIndex row_index(const Geometry& g, int64_t r) {
  return {r / (g.out[0] * g.out[1]), (r / g.out[1]) % g.out[0], r % g.out[1]};
}

// The maximum of a window over channels [c0, c0 + kMaxBlock) kept in
// registers: a fixed-length local accumulator the compiler holds in vector
// registers, stored once, instead of loading and storing the output at every
// window element (ResNet-18's 3x3/2 pooling of 112x112x64, one thread, CPU
// time: 0.213 -> 0.165 ms).
// 256 bytes: four 512-bit or eight 256-bit vectors. Not on the baseline
// path, where it was slower (0.32 -> 0.37 ms with 128-byte blocks: SSE2
// has no blend for the NaN-propagating select), so 0 there: none.
#if defined(__AVX2__)
template <class T>
constexpr int64_t kMaxBlock = 256 / int64_t(sizeof(T));
#else
template <class T>
constexpr int64_t kMaxBlock = 0;
#endif

// Overlapping windows only: VGG's 2x2/2 pooling of 224x224x64, whose four
// loads per output stream the input once, took 0.63-0.69 ms with it against
// 0.56-0.59 with the plain loop (one thread, CPU time) -- also when the plain
// loop sat in the same function behind a branch, so the two are apart.
template <class T>
void max_pool_rows_blocked(const Geometry& g, int64_t channels, const T* x, T* y, int64_t r0,
                           int64_t r1) {
  constexpr int64_t kBlock = kMaxBlock<T>;
  const int64_t full = channels / kBlock * kBlock;
  for (int64_t r = r0; r < r1; ++r) {
    const RowIndex at = row_index(g, r);
    const T* image = x + at.n * g.in_size() * channels;
    for (int64_t o2 = 0; o2 < g.out[2]; ++o2) {
      T* out = y + (r * g.out[2] + o2) * channels;
      const Window window = window_at(g, at.o0, at.o1, o2);
      for (int64_t c0 = 0; c0 < full; c0 += kBlock) {
        T acc[kBlock];
        for (int64_t c = 0; c < kBlock; ++c) acc[c] = kLowest<T>;
        for_each_element(g, window,
                         [&](int64_t e) { max_into(acc, image + e * channels + c0, kBlock); });
        std::copy(acc, acc + kBlock, out + c0);
      }
      if (full == channels) continue;
      T* acc = out + full;
      std::fill(acc, acc + (channels - full), kLowest<T>);
      for_each_element(g, window, [&](int64_t e) {
        max_into(acc, image + e * channels + full, channels - full);
      });
    }
  }
}

template <class T>
void max_pool_rows(const Geometry& g, int64_t channels, const T* x, T* y, int64_t r0,
                   int64_t r1) {
  if constexpr (kMaxBlock<T> > 0) {
    if (!windows_disjoint(g)) return max_pool_rows_blocked(g, channels, x, y, r0, r1);
  }
  for (int64_t r = r0; r < r1; ++r) {
    const RowIndex at = row_index(g, r);
    const T* image = x + at.n * g.in_size() * channels;
    for (int64_t o2 = 0; o2 < g.out[2]; ++o2) {
      T* acc = y + (r * g.out[2] + o2) * channels;
      std::fill(acc, acc + channels, kLowest<T>);
      for_each_element(g, window_at(g, at.o0, at.o1, o2),
                       [&](int64_t e) { max_into(acc, image + e * channels, channels); });
    }
  }
}

// acc = max(acc, x) as max_into, and at = e where x takes over: where it is
// greater, or the first NaN. Ties keep the earlier element, so `at` ends on
// the first maximal element in window order, the one max_pool_backward_rows
// routes the gradient to.
// I is the index type while searching: int32_t when every spatial index fits,
// so that the index lanes are as wide as float's and the loop vectorises.
template <class T, class I>
inline void argmax_into(T* __restrict acc, I* __restrict at, const T* __restrict x, I e,
                        int64_t n) {
  for (int64_t c = 0; c < n; ++c) {
    const T v = x[c], a = acc[c];
    const bool take = v > a || (v != v && a == a);
    acc[c] = take ? v : a;
    at[c] = take ? e : at[c];
  }
}

template <class T, class I>
void max_pool_indices_rows_as(const Geometry& g, int64_t channels, const T* x, T* y,
                              int64_t* indices, int64_t r0, int64_t r1) {
  std::vector<I> arg(static_cast<size_t>(channels));
  for (int64_t r = r0; r < r1; ++r) {
    const RowIndex at = row_index(g, r);
    const T* image = x + at.n * g.in_size() * channels;
    for (int64_t o2 = 0; o2 < g.out[2]; ++o2) {
      T* acc = y + (r * g.out[2] + o2) * channels;
      const Window w = window_at(g, at.o0, at.o1, o2);
      // Every window holds an element; the first one is the maximum until a
      // later one beats it (also when all are -inf).
      std::fill(acc, acc + channels, kLowest<T>);
      std::fill(arg.begin(), arg.end(),
                I((w.span[0].begin * g.in[1] + w.span[1].begin) * g.in[2] + w.span[2].begin));
      for_each_element(g, w, [&](int64_t e) {
        argmax_into(acc, arg.data(), image + e * channels, I(e), channels);
      });
      std::copy(arg.begin(), arg.end(), indices + (r * g.out[2] + o2) * channels);
    }
  }
}

template <class T>
void max_pool_indices_rows(const Geometry& g, int64_t channels, const T* x, T* y,
                           int64_t* indices, int64_t r0, int64_t r1) {
  if (g.in_size() <= std::numeric_limits<int32_t>::max())
    max_pool_indices_rows_as<T, int32_t>(g, channels, x, y, indices, r0, r1);
  else
    max_pool_indices_rows_as<T, int64_t>(g, channels, x, y, indices, r0, r1);
}

template <class T>
void avg_pool_rows(const Geometry& g, int64_t channels, const T* x, T* y, int64_t r0,
                   int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const RowIndex at = row_index(g, r);
    const T* image = x + at.n * g.in_size() * channels;
    for (int64_t o2 = 0; o2 < g.out[2]; ++o2) {
      T* acc = y + (r * g.out[2] + o2) * channels;
      std::fill(acc, acc + channels, T(0));
      const Window w = window_at(g, at.o0, at.o1, o2);
      for_each_element(g, w, [&](int64_t e) { add_into(acc, image + e * channels, channels); });
      const T count = T(w.count());
      for (int64_t c = 0; c < channels; ++c) acc[c] /= count;
    }
  }
}

// The outputs along the first spatial dimension whose windows overlap the
// input rows [lo, hi), lo < hi.
inline Span outputs_over(const Geometry& g, int64_t lo, int64_t hi) {
  const int64_t s = g.stride[0], shift = g.pad_before[0];
  // Window o covers [o * s - shift, o * s - shift + kernel): the first window
  // ending after lo and the last one starting before hi.
  const int64_t first = lo + shift - g.kernel[0] + 1;  // o * s >= first
  const int64_t begin = first <= 0 ? 0 : (first + s - 1) / s;
  return {begin, std::min(g.out[0], (hi + shift + s - 1) / s)};
}

// Zeroes the dx rows [lo, hi) of one image, then calls f(o, w, own) for every
// window w that overlaps them, in output order, with o the window's output
// position (flat, within the image) and own = the rows of w in [lo, hi). Each
// dx element thus receives its contributions in output order, however the
// rows are split between tasks.
template <class T, class F>
void for_each_window_over(const Geometry& g, int64_t channels, T* dimage, int64_t lo, int64_t hi,
                          F&& f) {
  const int64_t row = g.in[1] * g.in[2] * channels;
  std::fill(dimage + lo * row, dimage + hi * row, T(0));
  if (lo >= hi) return;
  const Span outputs = outputs_over(g, lo, hi);
  for (int64_t o0 = outputs.begin; o0 < outputs.end; ++o0) {
    const Span rows = window_span(g, 0, o0);
    const Span own = {std::max(rows.begin, lo), std::min(rows.end, hi)};
    if (own.begin >= own.end) continue;
    for (int64_t o1 = 0; o1 < g.out[1]; ++o1)
      for (int64_t o2 = 0; o2 < g.out[2]; ++o2)
        f((o0 * g.out[1] + o1) * g.out[2] + o2, window_at(g, o0, o1, o2), own);
  }
}

// The window restricted to the rows [rows.begin, rows.end) of the first dimension.
inline Window with_rows(Window w, Span rows) {
  w.span[0] = rows;
  return w;
}

template <class T>
void max_pool_backward_rows(const Geometry& g, int64_t channels, const T* x, const T* dy, T* dx,
                            int64_t n, int64_t lo, int64_t hi, T* scratch) {
  T* const m = scratch;
  T* const pending = scratch + channels;
  const T* image = x + n * g.in_size() * channels;
  const T* dy_image = dy + n * g.out_size() * channels;
  T* dimage = dx + n * g.in_size() * channels;
  for_each_window_over(g, channels, dimage, lo, hi, [&](int64_t o, const Window& w, Span own) {
    // The maximum is recomputed rather than stored by the forward pass, so
    // that no argmax array of the output's size is needed.
    std::fill(m, m + channels, kLowest<T>);
    for_each_element(g, w, [&](int64_t e) { max_into(m, image + e * channels, channels); });
    const T* d = dy_image + o * channels;
    std::copy(d, d + channels, pending);
    // Rows before [lo, hi) come first in window order and may hold the first maximum.
    for_each_element(g, with_rows(w, {w.span[0].begin, own.begin}), [&](int64_t e) {
      pass_first_max(image + e * channels, m, pending, channels);
    });
    for_each_element(g, with_rows(w, own), [&](int64_t e) {
      route_to_first_max(dimage + e * channels, image + e * channels, m, pending, channels);
    });
  });
}

template <class T>
bool max_pool_backward_indices_rows(const Geometry& g, int64_t channels, const int64_t* indices,
                                    const T* dy, T* dx, int64_t n, int64_t lo, int64_t hi) {
  const int64_t* at_image = indices + n * g.out_size() * channels;
  const T* dy_image = dy + n * g.out_size() * channels;
  T* dimage = dx + n * g.in_size() * channels;
  // The task owns the spatial indices [first, last): its rows. An index in
  // its window's rows is added by exactly one of the tasks that visit the
  // window (the one owning its row); the indices are checked for that here,
  // as they are read, rather than in a serial pass of the binding.
  const uint64_t plane = uint64_t(g.in[1] * g.in[2]);
  const uint64_t first = uint64_t(lo) * plane, last = uint64_t(hi) * plane;
  bool ok = true;
  for_each_window_over(g, channels, dimage, lo, hi, [&](int64_t o, const Window& w, Span own) {
    const int64_t* __restrict at = at_image + o * channels;
    const T* __restrict d = dy_image + o * channels;
    uint64_t least = ~uint64_t(0), worst = 0;  // negative indices wrap to huge values
    for (int64_t c = 0; c < channels; ++c) {
      least = std::min(least, uint64_t(at[c]));
      worst = std::max(worst, uint64_t(at[c]));
    }
    if (least < uint64_t(w.span[0].begin) * plane || worst >= uint64_t(w.span[0].end) * plane) {
      ok = false;
      return;
    }
    if (own.begin == w.span[0].begin && own.end == w.span[0].end) {
      // The whole window is the task's, and so is every valid index.
      for (int64_t c = 0; c < channels; ++c) dimage[at[c] * channels + c] += d[c];
      return;
    }
    for (int64_t c = 0; c < channels; ++c) {
      const uint64_t i = uint64_t(at[c]);
      if (i >= first && i < last) dimage[at[c] * channels + c] += d[c];
    }
  });
  return ok;
}

// The output position along dimension d whose window holds input position
// i, or -1 when none does (disjoint windows).
inline int64_t window_of(const Geometry& g, int d, int64_t i) {
  const int64_t s = i + g.pad_before[d], o = s / g.stride[d];
  return s % g.stride[d] < g.kernel[d] && o < g.out[d] ? o : -1;
}

// With disjoint windows every dx element receives at most one gradient, so
// instead of zeroing dx and scattering into it (two passes over dx, the
// second at random), each element is written once, in memory order: the
// gradient of its window's output where the index names it, else zero. The
// value is 0 + dy, the sum the scattering loop makes (-0 becomes +0 alike).
// An index outside its own window (valid, but not one the forward gives)
// would be missed: as the window's elements are distinct, each index names
// at most one of them, so a window row whose outputs' indices matched fewer
// elements than it has outputs makes the call fail, for the caller to take
// the scattering loop. The rows [lo, hi) must hold whole windows
// (gather_rows cuts at window starts).
template <class T, bool kRelu>
bool max_pool_backward_local_rows_as(const Geometry& g, int64_t channels, const int64_t* indices,
                                     const T* dy, const T* relu_y, T* dx, int64_t n, int64_t lo,
                                     int64_t hi) {
  const int64_t* at_image = indices + n * g.out_size() * channels;
  const T* dy_image = dy + n * g.out_size() * channels;
  const T* y_image = kRelu ? relu_y + n * g.out_size() * channels : nullptr;
  T* dimage = dx + n * g.in_size() * channels;
  const int64_t plane = g.out[1] * g.out[2] * channels;
  // Window positions along the inner dimensions, looked up rather than
  // divided out per element.
  std::vector<int64_t> inner(size_t(g.in[1] + g.in[2]));
  for (int64_t i = 0; i < g.in[1]; ++i) inner[size_t(i)] = window_of(g, 1, i);
  for (int64_t i = 0; i < g.in[2]; ++i) inner[size_t(g.in[1] + i)] = window_of(g, 2, i);
  const int64_t* const of2 = inner.data() + g.in[1];
  int64_t open = -1, matched = 0;
  for (int64_t i0 = lo; i0 < hi; ++i0) {
    T* drow = dimage + i0 * g.in[1] * g.in[2] * channels;
    const int64_t o0 = window_of(g, 0, i0);
    if (o0 < 0) {
      std::fill(drow, drow + g.in[1] * g.in[2] * channels, T(0));
      continue;
    }
    if (o0 != open) {
      if (open >= 0 && matched != plane) return false;
      open = o0, matched = 0;
    }
    for (int64_t i1 = 0; i1 < g.in[1]; ++i1) {
      const int64_t o1 = inner[size_t(i1)];
      for (int64_t i2 = 0; i2 < g.in[2]; ++i2) {
        T* __restrict d = drow + (i1 * g.in[2] + i2) * channels;
        const int64_t o2 = o1 < 0 ? -1 : of2[i2];
        if (o2 < 0) {
          std::fill(d, d + channels, T(0));
          continue;
        }
        const int64_t o = (o0 * g.out[1] + o1) * g.out[2] + o2;
        const int64_t e = (i0 * g.in[1] + i1) * g.in[2] + i2;
        const int64_t* __restrict at = at_image + o * channels;
        const T* __restrict grad = dy_image + o * channels;
        const T* __restrict y = kRelu ? y_image + o * channels : nullptr;
        int64_t hits = 0;
        for (int64_t c = 0; c < channels; ++c) {
          const bool mine = at[c] == e;
          T v = grad[c];
          if constexpr (kRelu) v = v * (y[c] > T(0) ? T(1) : T(0));
          d[c] = mine ? T(0) + v : T(0);
          hits += int64_t(mine);
        }
        matched += hits;
      }
    }
  }
  return open < 0 || matched == plane;
}

template <class T>
bool max_pool_backward_local_rows(const Geometry& g, int64_t channels, const int64_t* indices,
                                  const T* dy, const T* relu_y, T* dx, int64_t n, int64_t lo,
                                  int64_t hi) {
  return relu_y ? max_pool_backward_local_rows_as<T, true>(g, channels, indices, dy, relu_y, dx,
                                                           n, lo, hi)
                : max_pool_backward_local_rows_as<T, false>(g, channels, indices, dy, nullptr,
                                                            dx, n, lo, hi);
}

template <class T>
void avg_pool_backward_rows(const Geometry& g, int64_t channels, const T* dy, T* dx, int64_t n,
                            int64_t lo, int64_t hi, T* scratch) {
  const T* dy_image = dy + n * g.out_size() * channels;
  T* dimage = dx + n * g.in_size() * channels;
  for_each_window_over(g, channels, dimage, lo, hi, [&](int64_t o, const Window& w, Span own) {
    const T count = T(w.count());
    const T* d = dy_image + o * channels;
    for (int64_t c = 0; c < channels; ++c) scratch[c] = d[c] / count;
    for_each_element(g, with_rows(w, own),
                     [&](int64_t e) { add_into(dimage + e * channels, scratch, channels); });
  });
}

template <class T>
void global_max_block(const T* x, int64_t positions, int64_t channels, int64_t c0, int64_t c1,
                      T* y) {
  std::fill(y + c0, y + c1, kLowest<T>);
  for (int64_t p = 0; p < positions; ++p) max_into(y + c0, x + p * channels + c0, c1 - c0);
}

// acc += x, widened to double. Kept out of line: inlined, GCC's unroll-and-jam
// interleaves the rows of two positions in the loop that calls it, which runs
// about 3x slower on inputs larger than the cache.
template <class T>
[[gnu::noinline]] void add_widened(double* __restrict acc, const T* __restrict x, int64_t n) {
  for (int64_t c = 0; c < n; ++c) acc[c] += double(x[c]);
}

template <class T>
void global_avg_block(const T* x, int64_t positions, int64_t channels, int64_t c0, int64_t c1,
                      double* acc, T* y) {
  const int64_t n = c1 - c0;
  std::fill(acc, acc + n, 0.0);
  for (int64_t p = 0; p < positions; ++p) add_widened(acc, x + p * channels + c0, n);
  for (int64_t c = 0; c < n; ++c) y[c0 + c] = T(acc[c] / double(positions));
}

#define CNNKIT_INSTANTIATE_POOL_LOOPS(T)                                                      \
  template void max_pool_rows<T>(const Geometry&, int64_t, const T*, T*, int64_t, int64_t);  \
  template void avg_pool_rows<T>(const Geometry&, int64_t, const T*, T*, int64_t, int64_t);  \
  template void max_pool_indices_rows<T>(const Geometry&, int64_t, const T*, T*, int64_t*,   \
                                         int64_t, int64_t);                                  \
  template void max_pool_backward_rows<T>(const Geometry&, int64_t, const T*, const T*, T*,  \
                                          int64_t, int64_t, int64_t, T*);                    \
  template void avg_pool_backward_rows<T>(const Geometry&, int64_t, const T*, T*, int64_t,   \
                                          int64_t, int64_t, T*);                             \
  template bool max_pool_backward_indices_rows<T>(const Geometry&, int64_t, const int64_t*,  \
                                                  const T*, T*, int64_t, int64_t, int64_t);  \
  template bool max_pool_backward_local_rows<T>(const Geometry&, int64_t, const int64_t*,    \
                                                const T*, const T*, T*, int64_t, int64_t,    \
                                                int64_t);                                    \
  template void global_max_block<T>(const T*, int64_t, int64_t, int64_t, int64_t, T*);       \
  template void global_avg_block<T>(const T*, int64_t, int64_t, int64_t, int64_t, double*, T*);
CNNKIT_INSTANTIATE_POOL_LOOPS(float)
CNNKIT_INSTANTIATE_POOL_LOOPS(double)
#undef CNNKIT_INSTANTIATE_POOL_LOOPS

}  // namespace CNNKIT_ISA_NS
#endif  // CNNKIT_ISA_NS

}  // namespace cnnkit::pool_impl

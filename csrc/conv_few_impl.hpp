// Few-input-channel convolution (one group, C_in <= kFewChannels: an image's
// first layer), compiled once per instruction set through
// conv_direct_impl.hpp (see there for the namespace rule).
//
// Each task copies a band of one image into a zero-padded slab (small: a
// 28 x 28 image with "same" 5 x 5 padding is 32 x 32 values), so that every
// tap of every position lies inside the slab and the loops need no bounds
// checks. Kernel offset q (kernel position and input channel) of an output
// position then reads slab[base + off[q]], with base a linear function of the
// position, and the loops are register-blocked like a GEMM micro-kernel
// reading its A operand in place ("implicit GEMM"):
// - forward: a tile of consecutive output positions x 2 vectors of output
//   channels, summing over the offsets q;
// - weight gradient: a tile of offsets q x 2 vectors of output channels,
//   summing over the positions;
// - input gradient (stride 1 only; conv_direct_impl.hpp gathers per input
//   position otherwise): the slab holds dy, padded so that every position
//   each input reads exists, and a tile of input positions sums dy times the
//   flipped weights over the output channels in vectors, each reduced to one
//   value at the end. With 3, 5 or 7 taps along the line (dilation 1), the
//   AVX2 path loads each dy vector once for all the positions of the tile
//   that read it through one kernel row (input_tile_line).
//
// Determinism: every output element is one chain of operations in an order
// fixed by the problem (offsets, then vectors, in order; the weight gradient
// sums the positions in order), whatever the thread count and the banding.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__FMA__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define CNNKIT_FEW_HAVE_FMA 1
#endif

#include "conv.hpp"
#include "interrupt.hpp"
#include "parallel.hpp"

namespace cnnkit::detail::CNNKIT_ISA_NS {

namespace few {

// Vectors cross function boundaries here only between inline functions of
// one instruction set's namespace, so the baseline's note that 32-byte
// vectors are passed differently without AVX concerns no real call. (GCC
// reports it where the templates are instantiated, at the end of the
// including unit, so the setting cannot be popped here.)
#pragma GCC diagnostic ignored "-Wpsabi"

// 32-byte vectors (two SSE registers on the baseline path).
template <class T>
struct Simd;
template <>
struct Simd<float> {
  typedef float V __attribute__((vector_size(32)));
};
template <>
struct Simd<double> {
  typedef double V __attribute__((vector_size(32)));
};
template <class T>
using Vec = typename Simd<T>::V;
template <class T>
constexpr int64_t kLanes = int64_t(sizeof(Vec<T>) / sizeof(T));

template <class T>
inline Vec<T> load(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <class T>
inline void store(T* p, const Vec<T>& v) {
  std::memcpy(p, &v, sizeof(v));
}
// Every lane x (written out: `Vec<T>{} + x` would cost an addition, since
// 0 + x is not x for x = -0).
inline Vec<float> splat(float x) { return Vec<float>{x, x, x, x, x, x, x, x}; }
inline Vec<double> splat(double x) { return Vec<double>{x, x, x, x}; }

// a * b + c, fused where the path has FMA (-ffp-contract=off keeps the
// compiler from fusing on its own).
inline Vec<float> fmadd(Vec<float> a, Vec<float> b, Vec<float> c) {
#ifdef CNNKIT_FEW_HAVE_FMA
  return Vec<float>(_mm256_fmadd_ps(__m256(a), __m256(b), __m256(c)));
#else
  return a * b + c;
#endif
}
inline Vec<double> fmadd(Vec<double> a, Vec<double> b, Vec<double> c) {
#ifdef CNNKIT_FEW_HAVE_FMA
  return Vec<double>(_mm256_fmadd_pd(__m256d(a), __m256d(b), __m256d(c)));
#else
  return a * b + c;
#endif
}

// Register tiles. With 16 ymm registers (AVX2): forward 6 positions x 2
// vectors = 12 accumulators, 2 weight vectors and a broadcast; weight
// gradient 5 offsets x 2 vectors (25 = 5 x 5 offsets of a 5 x 5 kernel, 75
// of three channels); input gradient 3 positions x 4 vectors (32 channels)
// and 4 weight vectors. The baseline's 32-byte vectors take two of its 16
// SSE registers each, hence smaller tiles.
#ifdef __AVX__
constexpr int kForwardRows = 6, kForwardTail = 4, kWeightRows = 5, kInputRows = 3;
constexpr int kLineRows = 7;  // 28 = 4 x 7 positions
constexpr bool kHasLineTiles = true;
#else
constexpr int kForwardRows = 2, kForwardTail = 1, kWeightRows = 2, kInputRows = 1;
constexpr int kLineRows = 1;
constexpr bool kHasLineTiles = false;  // the line tile needs more than 16 SSE registers
#endif
// AVX-512 has 32 ymm registers: the weight gradient may also take 9 offsets
// x 2 vectors (18 accumulators), so that 3x3 kernels of one channel (9
// offsets) or of three (27) need no spare rows and dy is read and masked by
// fewer tiles. backward_weight picks per problem (see weight_rows).
#ifdef __AVX512F__
constexpr int kWideWeightRows = 9;
#else
constexpr int kWideWeightRows = kWeightRows;
#endif

// Slabs larger than this are cut into bands along dimension 0.
constexpr int64_t kSlabBytes = int64_t(256) << 10;

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// A zero-padded copy of a block of one channels-last image. Slab coordinate
// j along dimension d reads source coordinate j + lo[d], or zero outside
// [0, src[d]); each slab position holds `ld` values, the source's `ch`
// channels then zeros.
struct Slab {
  int64_t ext[3], lo[3], src[3], ch, ld;
  int64_t size() const { return ext[0] * ext[1] * ext[2] * ld; }
};

template <class T>
void fill_slab(const T* image, const Slab& s, T* slab) {
  const int64_t inner = s.ext[2] * s.ld, row = s.ext[1] * inner;
  // Whole dimension-1 lines are one copy when dimension 2 needs no padding
  // (2-D and 1-D problems, whose dimension 2 is a dummy of size 1).
  const bool lines = s.lo[2] == 0 && s.ext[2] == s.src[2] && s.ld == s.ch;
  for (int64_t j0 = 0; j0 < s.ext[0]; ++j0) {
    T* dst = slab + j0 * row;
    const int64_t i0 = j0 + s.lo[0];
    if (i0 < 0 || i0 >= s.src[0]) {
      std::fill_n(dst, row, T(0));
      continue;
    }
    const T* src0 = image + i0 * s.src[1] * s.src[2] * s.ch;
    if (lines) {
      const int64_t a = std::clamp<int64_t>(-s.lo[1], 0, s.ext[1]);
      const int64_t b = std::clamp<int64_t>(s.src[1] - s.lo[1], a, s.ext[1]);
      std::fill_n(dst, a * inner, T(0));
      if (b > a)
        std::memcpy(dst + a * inner, src0 + (a + s.lo[1]) * inner,
                    size_t((b - a) * inner) * sizeof(T));
      std::fill_n(dst + b * inner, (s.ext[1] - b) * inner, T(0));
      continue;
    }
    for (int64_t j1 = 0; j1 < s.ext[1]; ++j1) {
      T* d1 = dst + j1 * inner;
      const int64_t i1 = j1 + s.lo[1];
      if (i1 < 0 || i1 >= s.src[1]) {
        std::fill_n(d1, inner, T(0));
        continue;
      }
      const T* src1 = src0 + i1 * s.src[2] * s.ch;
      const int64_t a = std::clamp<int64_t>(-s.lo[2], 0, s.ext[2]);
      const int64_t b = std::clamp<int64_t>(s.src[2] - s.lo[2], a, s.ext[2]);
      std::fill_n(d1, a * s.ld, T(0));
      if (s.ld == s.ch) {
        if (b > a)
          std::memcpy(d1 + a * s.ld, src1 + (a + s.lo[2]) * s.ch,
                      size_t((b - a) * s.ch) * sizeof(T));
      } else {
        for (int64_t j2 = a; j2 < b; ++j2) {
          std::copy_n(src1 + (j2 + s.lo[2]) * s.ch, s.ch, d1 + j2 * s.ld);
          std::fill_n(d1 + j2 * s.ld + s.ch, s.ld - s.ch, T(0));
        }
      }
      std::fill_n(d1 + b * s.ld, (s.ext[2] - b) * s.ld, T(0));
    }
  }
}

// A zeroed array of n values at a 64-byte boundary: rows of a multiple of
// 8 floats then start vectors on cache lines, where an unaligned base would
// split every other 32-byte load across two lines.
template <class T>
class Aligned {
 public:
  explicit Aligned(int64_t n = 0) { resize(n); }
  // data_ points into buf_: a copy would point into the original.
  Aligned(const Aligned&) = delete;
  Aligned& operator=(const Aligned&) = delete;
  void resize(int64_t n) {
    if (int64_t(buf_.size()) < n + kPad) buf_.assign(size_t(n + kPad), T(0));
    const auto addr = reinterpret_cast<std::uintptr_t>(buf_.data());
    data_ = buf_.data() + ((64 - addr % 64) % 64) / sizeof(T);
  }
  T* data() { return data_; }
  const T* data() const { return data_; }

 private:
  static constexpr int64_t kPad = int64_t(64 / sizeof(T));
  std::vector<T> buf_;
  T* data_ = nullptr;
};

template <class T>
T* thread_slab(int64_t size) {
  thread_local Aligned<T> buf;
  buf.resize(size);
  return buf.data();
}

// w (P x cout, P = kernel offsets x C_in) copied with rows of `ld` >= cout
// values, zero-padded, so that tiles never need a channel remainder.
template <class T>
void pad_columns(const T* w, int64_t rows, int64_t cols, int64_t ld, Aligned<T>& out) {
  out.resize(rows * ld);
  for (int64_t r = 0; r < rows; ++r) std::copy_n(w + r * cols, cols, out.data() + r * ld);
}

// Slab offset of kernel offset q = (k0, k1, k2, ci) from the slab position
// of its first tap, for slab extents ext and `ld` values per position; with
// `flip`, kernel position k reads what k' = kernel - 1 - k would.
inline std::vector<int64_t> tap_offsets(const Geometry& g, const int64_t* ext, int64_t cin,
                                        int64_t ld, bool flip) {
  std::vector<int64_t> off;
  off.reserve(size_t(g.kernel_size() * cin));
  for (int64_t k0 = 0; k0 < g.kernel[0]; ++k0)
    for (int64_t k1 = 0; k1 < g.kernel[1]; ++k1)
      for (int64_t k2 = 0; k2 < g.kernel[2]; ++k2) {
        const int64_t a0 = flip ? g.kernel[0] - 1 - k0 : k0;
        const int64_t a1 = flip ? g.kernel[1] - 1 - k1 : k1;
        const int64_t a2 = flip ? g.kernel[2] - 1 - k2 : k2;
        const int64_t pos =
            (a0 * g.dilation[0] * ext[1] + a1 * g.dilation[1]) * ext[2] + a2 * g.dilation[2];
        for (int64_t ci = 0; ci < cin; ++ci) off.push_back(pos * ld + ci);
      }
  return off;
}

// Rows of dimension 0 per band: the slab (span0 rows for the first, stride
// more for each further row) within kSlabBytes, and enough bands that every
// thread gets several tasks when the batch is small.
inline int64_t band_rows(int64_t out0, int64_t span0, int64_t stride0, int64_t row_bytes,
                         int64_t batch, int nt) {
  const int64_t fit = (kSlabBytes / std::max<int64_t>(row_bytes, 1) - span0) / stride0 + 1;
  const int64_t spread = (out0 * batch + 4 * nt - 1) / (4 * int64_t(nt));
  return std::clamp<int64_t>(std::min(fit, spread), 1, std::max<int64_t>(out0, 1));
}

// Calls line(f, count, c0, c1, c2) for the runs of consecutive positions
// along dimension rank - 1 among flat positions [f0, f1) of an image of
// extents e: f is the run's first position, (c0, c1, c2) its coordinates.
template <class Line>
inline void for_each_line(const Geometry& g, const int64_t* e, int64_t f0, int64_t f1,
                          Line&& line) {
  const int64_t length = e[g.rank - 1];
  for (int64_t f = f0; f < f1;) {
    const int64_t c[3] = {f / (e[1] * e[2]), (f / e[2]) % e[1], f % e[2]};
    const int64_t count = std::min(f1 - f, length - c[g.rank - 1]);
    line(f, count, c[0], c[1], c[2]);
    f += count;
  }
}

// out[i][c] for i < count (rows `cout` apart), c < cout: bias plus the sum
// over offsets q < P of at_i[off[q]] * wp[q][c], at_i = xs + i * step.
// `full` (count == MR and cout == ld) stores straight from the registers;
// GCC would otherwise keep the accumulators on the stack for the remainder
// code, at a cost comparable to the 25 steps of a 5 x 5 kernel.
// ReLU of each lane when `relu`, as apply_epilogue's scalar `v < 0 ? 0 : v`
// (NaN stays NaN).
template <class T>
inline Vec<T> rectify(Vec<T> v, bool relu) {
  return relu ? (v < Vec<T>{} ? Vec<T>{} : v) : v;
}

template <class T, int MR, bool full>
void forward_tile(const T* xs, int64_t step, int64_t count, const int64_t* off, int64_t P,
                  const T* wp, int64_t ld, const T* bp, T* out, int64_t cout, bool relu) {
  constexpr int64_t W = kLanes<T>;
  const T* at[MR];
  for (int i = 0; i < MR; ++i) at[i] = xs + (i < count ? i : 0) * step;  // spare rows: row 0
  for (int64_t c0 = 0; c0 < ld; c0 += 2 * W) {
    Vec<T> acc[MR][2] = {};
    const T* wk = wp + c0;
    for (int64_t q = 0; q < P; ++q, wk += ld) {
      const Vec<T> w0 = load(wk), w1 = load(wk + W);
      const int64_t o = off[q];
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const Vec<T> v = splat(at[i][o]);
        acc[i][0] = fmadd(v, w0, acc[i][0]);
        acc[i][1] = fmadd(v, w1, acc[i][1]);
      }
    }
    const Vec<T> b0 = load(bp + c0), b1 = load(bp + c0 + W);
    if constexpr (full) {
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        store(out + i * cout + c0, rectify<T>(acc[i][0] + b0, relu));
        store(out + i * cout + c0 + W, rectify<T>(acc[i][1] + b1, relu));
      }
    } else {
      const int64_t width = std::min(2 * W, cout - c0);
      for (int64_t i = 0; i < count; ++i) {
        T row[2 * W];
        store(row, rectify<T>(acc[i][0] + b0, relu));
        store(row + W, rectify<T>(acc[i][1] + b1, relu));
        std::copy_n(row, width, out + i * cout + c0);
      }
    }
  }
}

#ifdef __AVX512F__
// The AVX-512 float forward tile: MR consecutive positions x NV 64-byte
// vectors of output channels (14 x 2 = 28 of the 32 zmm registers, 32
// channels, twice the ymm tile's work per broadcast), the channels past
// cout masked off as the values are stored. Each lane is the ymm tile's
// chain (a zero start, one multiply-add per offset in order, then the
// bias and the rectifier), so both paths give the same bits.
constexpr int kWideRows = 14;

template <int MR, int NV, class Step>
inline void forward_block_wide(const float* xs, Step step, const int64_t* off, int64_t P,
                               const float* wk, int64_t ld, const float* bp, float* out,
                               int64_t cout, int64_t c0, bool relu) {
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t q = 0; q < P; ++q, wk += ld) {
    __m512 wv[NV];
    for (int v = 0; v < NV; ++v) wv[v] = _mm512_loadu_ps(wk + 16 * v);
    const float* src = xs + off[q];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512 s = _mm512_set1_ps(src[i * step]);
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(s, wv[v], acc[i][v]);
    }
  }
  __mmask16 mask[NV];
  __m512 bias[NV];
  for (int v = 0; v < NV; ++v) {
    const int64_t left = std::clamp<int64_t>(cout - c0 - 16 * v, 0, 16);
    mask[v] = __mmask16((uint32_t(1) << left) - 1);
    bias[v] = _mm512_loadu_ps(bp + 16 * v);
  }
  // max(0, v) returns v when v is NaN or -0, as the scalar v < 0 ? 0 : v.
  const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) {
      const __m512 r = _mm512_add_ps(acc[i][v], bias[v]);
      _mm512_mask_storeu_ps(out + i * cout + 16 * v, mask[v], relu ? _mm512_max_ps(zero, r) : r);
    }
}

// MR positions (step apart in the slab) x all `ld` (a multiple of 16)
// channels: two vectors at a time, one for an odd last 16.
template <int MR, class Step>
void forward_tile_wide(const float* xs, Step step, const int64_t* off, int64_t P,
                       const float* wp, int64_t ld, const float* bp, float* out, int64_t cout,
                       bool relu) {
  for (int64_t c0 = 0; c0 < ld;) {
    if (ld - c0 >= 32) {
      forward_block_wide<MR, 2, Step>(xs, step, off, P, wp + c0, ld, bp + c0, out + c0, cout, c0, relu);
      c0 += 32;
    } else {
      forward_block_wide<MR, 1, Step>(xs, step, off, P, wp + c0, ld, bp + c0, out + c0, cout, c0, relu);
      c0 += 16;
    }
  }
}

// A line of `count` positions in tiles of equal height (24 = 12 + 12, not
// 14 + 10: a tile's cost is its height's whatever the rows it stores).
template <class Step>
void forward_line_wide(const float* xs, Step step, int64_t count, const int64_t* off, int64_t P,
                       const float* wp, int64_t ld, const float* bp, float* out, int64_t cout,
                       bool relu) {
  const int64_t tiles = (count + kWideRows - 1) / kWideRows, rows = (count + tiles - 1) / tiles;
  for (int64_t i = 0; i < count; i += rows) {
    const float* at = xs + i * step;
    float* o = out + i * cout;
    switch (std::min(rows, count - i)) {
#define CNNKIT_WIDE_TILE(r)                                            \
  case r:                                                              \
    forward_tile_wide<r>(at, step, off, P, wp, ld, bp, o, cout, relu); \
    break;
      CNNKIT_WIDE_TILE(1) CNNKIT_WIDE_TILE(2) CNNKIT_WIDE_TILE(3) CNNKIT_WIDE_TILE(4)
      CNNKIT_WIDE_TILE(5) CNNKIT_WIDE_TILE(6) CNNKIT_WIDE_TILE(7) CNNKIT_WIDE_TILE(8)
      CNNKIT_WIDE_TILE(9) CNNKIT_WIDE_TILE(10) CNNKIT_WIDE_TILE(11) CNNKIT_WIDE_TILE(12)
      CNNKIT_WIDE_TILE(13) CNNKIT_WIDE_TILE(14)
#undef CNNKIT_WIDE_TILE
    }
  }
}

// Slab values per position on this path: 1, 4 or 16 (zeros past cin), so
// that a line's consecutive positions at stride 1 lie a compile-time
// distance apart. The tile then addresses its 14 broadcasts as fixed
// displacements from one register; with the distance in a register GCC
// chains 13 additions per offset, and the extra micro-ops cost 13% of the
// 32 x 14 x 14 x 16 -> 32 5x5 forward (1.01 ms against 0.88).
inline int64_t wide_position_values(int64_t cin) {
  return cin == 1 ? 1 : cin <= 4 ? 4 : cin <= 16 ? 16 : cin;
}

inline void forward_line_wide(const float* xs, int64_t step, int64_t count, const int64_t* off,
                              int64_t P, const float* wp, int64_t ld, const float* bp, float* out,
                              int64_t cout, bool relu) {
  using std::integral_constant;
  if (step == 1)
    forward_line_wide(xs, integral_constant<int64_t, 1>{}, count, off, P, wp, ld, bp, out, cout,
                      relu);
  else if (step == 4)
    forward_line_wide(xs, integral_constant<int64_t, 4>{}, count, off, P, wp, ld, bp, out, cout,
                      relu);
  else if (step == 16)
    forward_line_wide(xs, integral_constant<int64_t, 16>{}, count, off, P, wp, ld, bp, out, cout,
                      relu);
  else
    forward_line_wide<int64_t>(xs, step, count, off, P, wp, ld, bp, out, cout, relu);
}
static_assert(kWideRows == 14, "forward_line_wide's switch covers 1 .. kWideRows rows");
#endif

template <class T>
void forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y, bool relu) {
  const Geometry& g = p.g;
  constexpr int64_t NR = 2 * kLanes<T>;
  constexpr int MR = kForwardRows;
  const int64_t cin = p.in_channels, cout = p.out_channels, P = p.patch_size();
  const int64_t ld = round_up(cout, NR), positions = g.out_size();
  Aligned<T> wp;
  pad_columns(w, P, cout, ld, wp);
  Aligned<T> bp(ld);
  if (b) std::copy_n(b, cout, bp.data());

  Slab s{};
  for (int d = 1; d < 3; ++d) {
    s.ext[d] = g.in[d] + g.pad_before[d] + g.pad_after[d];
    s.lo[d] = -g.pad_before[d];
  }
  for (int d = 0; d < 3; ++d) s.src[d] = g.in[d];
  s.ch = s.ld = cin;
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) s.ld = wide_position_values(cin);
#endif
  const std::vector<int64_t> off = tap_offsets(g, s.ext, cin, s.ld, false);
  const int64_t step[3] = {g.stride[0] * s.ext[1] * s.ext[2] * s.ld, g.stride[1] * s.ext[2] * s.ld,
                           g.stride[2] * s.ld};
  const int64_t span0 = g.dilation[0] * (g.kernel[0] - 1) + 1;
  const int nt = threads_for(p.rows() * std::max<int64_t>(P, 1) * cout);
  const int64_t band = band_rows(g.out[0], span0, g.stride[0],
                                 s.ext[1] * s.ext[2] * s.ld * int64_t(sizeof(T)), p.batch, nt);
  const int64_t bands = (g.out[0] + band - 1) / band, inner = g.out[1] * g.out[2];
  const int64_t* offs = off.data();
  const T *wdata = wp.data(), *bdata = bp.data();
  const StopToken stop;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t task = 0; task < p.batch * bands; ++task) {
    if (stop) continue;
    const int64_t n = task / bands, a = (task % bands) * band;
    const int64_t e = std::min(g.out[0], a + band);
    Slab t = s;
    t.ext[0] = (e - 1 - a) * g.stride[0] + span0;
    t.lo[0] = a * g.stride[0] - g.pad_before[0];
    T* slab = thread_slab<T>(t.size());
    fill_slab(x + n * g.in_size() * cin, t, slab);
    for_each_line(g, g.out, a * inner, e * inner,
                  [&](int64_t f, int64_t count, int64_t o0, int64_t o1, int64_t o2) {
                    const T* xs = slab + (o0 - a) * step[0] + o1 * step[1] + o2 * step[2];
                    const int64_t run = step[g.rank - 1];
                    T* out = y + (n * positions + f) * cout;
#ifdef __AVX512F__
                    if constexpr (std::is_same_v<T, float>) {
                      forward_line_wide(xs, run, count, offs, P, wdata, ld, bdata, out, cout, relu);
                      return;
                    }
#endif
                    for (int64_t i = 0; i < count; i += MR) {
                      const int64_t rows = std::min<int64_t>(MR, count - i);
                      const T* at = xs + i * run;
                      T* o = out + i * cout;
                      // A short last tile (4 of a 28-wide line) on a smaller
                      // tile rather than as a full one with spare rows.
                      if (rows == MR && cout == ld)
                        forward_tile<T, MR, true>(at, run, rows, offs, P, wdata, ld, bdata, o,
                                                  cout, relu);
                      else if (rows == kForwardTail && cout == ld)
                        forward_tile<T, kForwardTail, true>(at, run, rows, offs, P, wdata, ld,
                                                            bdata, o, cout, relu);
                      else if (rows <= kForwardTail)
                        forward_tile<T, kForwardTail, false>(at, run, rows, offs, P, wdata, ld,
                                                             bdata, o, cout, relu);
                      else
                        forward_tile<T, MR, false>(at, run, rows, offs, P, wdata, ld, bdata, o,
                                                   cout, relu);
                    }
                  });
  }
}

#ifdef __AVX512F__
// The weight gradient on the AVX-512 float path with 5 to 16 input channels
// at stride 1, where the slab holds 16 values per position
// (wide_position_values): a tile is one kernel offset x 8 of those values
// x NV 64-byte vectors of output channels, its 8 broadcasts fixed
// displacements from one pointer that steps 16 values per position, and
// sums x times dy over the positions: 2 NV multiply-adds per 8 broadcasts
// and NV loads of dy (the ymm tiles of backward_weight_tiles take MR
// broadcasts per 2 MR half-width multiply-adds). A tile over one image:
// acc_rows (rows of the padded dw, `ldo` apart) plus the sum over the
// image's positions in order.
template <int NV>
void weight_tile_wide(const Geometry& g, const float* slab, const int64_t* step, int64_t at,
                      const float* grad, int64_t cout, int64_t c0, float* acc_rows, int64_t ldo) {
  __m512 acc[8][NV];
  __mmask16 mask[NV];
  for (int v = 0; v < NV; ++v) {
    const int64_t left = std::clamp<int64_t>(cout - c0 - 16 * v, 0, 16);
    mask[v] = __mmask16((uint32_t(1) << left) - 1);
  }
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[j][v] = _mm512_loadu_ps(acc_rows + j * ldo + 16 * v);
  // The lines counted, not divided out of a flat index as for_each_line
  // does: a line is only 14 positions of 8 cycles each at 14 x 14. The
  // loops stay in this function, so that acc stays in registers (passed
  // by reference to a line function, GCC stored it after every step).
  const int R = g.rank - 1;
  const int64_t len = g.out[R];
  int64_t o[2] = {0, 0};  // the line's coordinates along the dimensions before R
  grad += c0;
  for (int64_t f = 0; f < g.out_size(); f += len) {
    const float* xs = slab + o[0] * step[0] + o[1] * step[1] + at;
    for (int64_t i = 0; i < len; ++i, xs += 16, grad += cout) {
      __m512 gv[NV];
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) gv[v] = _mm512_maskz_loadu_ps(mask[v], grad + 16 * v);
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        const __m512 x = _mm512_set1_ps(xs[j]);
#pragma GCC unroll 2
        for (int v = 0; v < NV; ++v) acc[j][v] = _mm512_fmadd_ps(x, gv[v], acc[j][v]);
      }
    }
    if (R == 2 && ++o[1] == g.out[1])
      o[1] = 0, ++o[0];
    else if (R == 1)
      ++o[0];
  }
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(acc_rows + j * ldo + 16 * v, acc[j][v]);
}

// Threads split the tiles; each walks the whole batch, so each dw element
// sums the images, then their positions, in order whatever the split.
inline void backward_weight_wide(const ConvProblem& p, const float* x, const float* dy,
                                 float* dw) {
  const Geometry& g = p.g;
  const int64_t cin = p.in_channels, cout = p.out_channels, K = g.kernel_size();
  const int64_t ldo = round_up(cout, 16), positions = g.out_size();
  Slab s{};
  for (int d = 0; d < 3; ++d) {
    s.ext[d] = g.in[d] + g.pad_before[d] + g.pad_after[d];
    s.lo[d] = -g.pad_before[d];
    s.src[d] = g.in[d];
  }
  s.ch = cin;
  s.ld = 16;
  const std::vector<int64_t> off = tap_offsets(g, s.ext, 1, 16, false);
  const int64_t step[3] = {s.ext[1] * s.ext[2] * 16, s.ext[2] * 16, 16};
  const int64_t halves = (cin + 7) / 8, blocks = (ldo + 31) / 32, tiles = K * halves * blocks;
  Aligned<float> acc(K * 16 * ldo);
  std::fill_n(acc.data(), K * 16 * ldo, 0.0f);
  const int nt = int(std::min<int64_t>(threads_for(p.rows() * p.patch_size() * cout), tiles));
  const StopToken stop;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int64_t parts = omp_get_num_threads(), part = omp_get_thread_num();
    const int64_t t0 = tiles * part / parts, t1 = tiles * (part + 1) / parts;
    float* slab = thread_slab<float>(s.size());
    for (int64_t n = 0; n < p.batch && t0 < t1 && !stop; ++n) {
      fill_slab(x + n * g.in_size() * cin, s, slab);
      const float* grad = dy + n * positions * cout;
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t k = t / (halves * blocks), h = t / blocks % halves, c0 = t % blocks * 32;
        float* rows = acc.data() + (k * 16 + h * 8) * ldo + c0;
        const int64_t at = off[size_t(k)] + h * 8;
        if (ldo - c0 >= 32)
          weight_tile_wide<2>(g, slab, step, at, grad, cout, c0, rows, ldo);
        else
          weight_tile_wide<1>(g, slab, step, at, grad, cout, c0, rows, ldo);
      }
    }
  }
  for (int64_t k = 0; k < K; ++k)
    for (int64_t ci = 0; ci < cin; ++ci)
      std::copy_n(acc.data() + (k * 16 + ci) * ldo, cout, dw + (k * cin + ci) * cout);
}
#endif

// acc[j][c] += sum over i < count of at_i[off[j]] * g[i][c], for the MR
// offsets off[0 .. MR), at_i = xs + i * step, g rows `ldg` apart.
//
// With a fused activation A (y not null, rows `ldg` apart like grad), g is
// first masked as activation_backward does it, g * activation'(y), from the
// forward's output; with kBias the masked rows are also summed into bias, in
// order, as conv_backward_activation_bias sums them: the same bits as
// masking in a pass of its own, without writing and re-reading the mask.
template <class T, Activation A>
inline Vec<T> masked(Vec<T> g, const T* y, T slope) {
  if constexpr (A == Activation::none) {
    return g;
  } else {
    const Vec<T> v = load(y), one = splat(T(1));
    Vec<T> d;
    if constexpr (A == Activation::relu)
      d = v > splat(T(0)) ? one : splat(T(0));
    else if constexpr (A == Activation::leaky_relu)
      d = v > splat(T(0)) ? one : splat(slope);
    else if constexpr (A == Activation::relu6)
      d = (v > splat(T(0))) & (v < splat(T(6))) ? one : splat(T(0));
    else
      d = v * (one - v);
    return g * d;
  }
}

template <class T, int MR, Activation A = Activation::none, bool kBias = false>
inline void weight_line(const T* xs, int64_t step, int64_t count, const int64_t* off,
                        const T* grad, int64_t ldg, Vec<T> (&acc)[MR][2], const T* y = nullptr,
                        T slope = T(0), Vec<T>* bias = nullptr) {
  constexpr int64_t W = kLanes<T>;
  for (int64_t i = 0; i < count; ++i, xs += step, grad += ldg) {
    const Vec<T> g0 = masked<T, A>(load(grad), y, slope);
    const Vec<T> g1 = masked<T, A>(load(grad + W), y + (A == Activation::none ? 0 : W), slope);
    if constexpr (A != Activation::none) y += ldg;
    if constexpr (kBias) {
      bias[0] = bias[0] + g0;
      bias[1] = bias[1] + g1;
    }
#pragma GCC unroll 8
    for (int j = 0; j < MR; ++j) {
      const Vec<T> v = splat(xs[off[j]]);
      acc[j][0] = fmadd(v, g0, acc[j][0]);
      acc[j][1] = fmadd(v, g1, acc[j][1]);
    }
  }
}

// The scalar mask of masked(), for the rows copied with padding.
template <class T>
inline T masked_one(Activation a, T g, T y, T slope) {
  return a == Activation::none ? g : g * activation_derivative(a, y, slope);
}

// The window of a pooling along dimension d that holds position i, or -1
// when none does (disjoint windows: at most one does).
inline int64_t pooled_window(const Geometry& pg, int d, int64_t i) {
  const int64_t s = i + pg.pad_before[d], o = s / pg.stride[d];
  return s % pg.stride[d] < pg.kernel[d] && o < pg.out[d] ? o : -1;
}

// Rows [f0, f1) (positions of image n of the convolution's output) of the dy
// that max_pool_backward_indices writes for `pooled` on disjoint windows,
// `ld` apart with the channels past cout zeroed: 0 + dy (masked by relu_y >
// 0 when given) where the window's index names the position, else 0.
// Returns the (window, channel) pairs whose index was found.
template <class T>
int64_t pooled_rows(const PooledGradient<T>& pooled, int64_t n, int64_t f0, int64_t f1,
                    int64_t cout, int64_t ld, T* rows) {
  const Geometry& pg = *pooled.g;
  const int64_t per_image = pg.out_size();
  // Each dimension's window per position, looked up rather than divided out.
  thread_local std::vector<int64_t> lookup;
  lookup.resize(size_t(pg.in[0] + pg.in[1] + pg.in[2]));
  int64_t* const of0 = lookup.data();
  int64_t* const of1 = of0 + pg.in[0];
  int64_t* const of2 = of1 + pg.in[1];
  for (int d = 0, at = 0; d < kMaxSpatialDims; at += int(pg.in[d]), ++d)
    for (int64_t i = 0; i < pg.in[d]; ++i) lookup[size_t(at + i)] = pooled_window(pg, d, i);
  int64_t i2 = f0 % pg.in[2], i1 = f0 / pg.in[2] % pg.in[1], i0 = f0 / (pg.in[2] * pg.in[1]);
  int64_t hits = 0;
  for (int64_t f = f0; f < f1; ++f) {
    T* __restrict d = rows + (f - f0) * ld;
    std::fill(d + cout, d + ld, T(0));
    const int64_t o0 = of0[i0], o1 = of1[i1], o2 = of2[i2];
    if (++i2 == pg.in[2]) {
      i2 = 0;
      if (++i1 == pg.in[1]) i1 = 0, ++i0;
    }
    if (o0 < 0 || o1 < 0 || o2 < 0) {
      std::fill(d, d + cout, T(0));
      continue;
    }
    const int64_t at = (n * per_image + (o0 * pg.out[1] + o1) * pg.out[2] + o2) * cout;
    const int64_t* __restrict idx = pooled.indices + at;
    const T* __restrict grad = pooled.dy + at;
    int64_t found = 0;
    if (pooled.relu_y) {
      const T* __restrict y = pooled.relu_y + at;
      for (int64_t c = 0; c < cout; ++c) {
        const bool mine = idx[c] == f;
        const T v = grad[c] * (y[c] > T(0) ? T(1) : T(0));
        d[c] = mine ? T(0) + v : T(0);
        found += int64_t(mine);
      }
    } else {
      for (int64_t c = 0; c < cout; ++c) {
        const bool mine = idx[c] == f;
        d[c] = mine ? T(0) + grad[c] : T(0);
        found += int64_t(mine);
      }
    }
    hits += found;
  }
  return hits;
}

// dw, and with a fused activation (fused.y not null) or a bias gradient
// (fused.db not null) those too, from the unmasked dy (see weight_line), on
// tiles of MR offsets. Each dw element is its own chain of multiply-adds over
// the positions in order, so MR changes the speed, never the bits.
template <class T, int MR>
void backward_weight_tiles(const ConvProblem& p, const T* x, const T* dy, T* dw,
                           const FusedWeightGradient<T>& fused) {
  const Geometry& g = p.g;
  constexpr int64_t W = kLanes<T>, NR = 2 * W;
  const int64_t cin = p.in_channels, cout = p.out_channels, P = p.patch_size();
  const int64_t ld = round_up(cout, NR), positions = g.out_size();
  const int64_t p_blocks = (P + MR - 1) / MR, c_blocks = ld / NR, pairs = p_blocks * c_blocks;
  const Activation act = fused.y ? fused.activation : Activation::none;

  Slab s{};
  for (int d = 1; d < 3; ++d) {
    s.ext[d] = g.in[d] + g.pad_before[d] + g.pad_after[d];
    s.lo[d] = -g.pad_before[d];
  }
  for (int d = 0; d < 3; ++d) s.src[d] = g.in[d];
  s.ch = s.ld = cin;
  std::vector<int64_t> off = tap_offsets(g, s.ext, cin, cin, false);
  off.resize(size_t(p_blocks * MR), off[0]);  // spare offsets read a valid value, never stored
  const int64_t step[3] = {g.stride[0] * s.ext[1] * s.ext[2] * cin, g.stride[1] * s.ext[2] * cin,
                           g.stride[2] * cin};
  const int64_t span0 = g.dilation[0] * (g.kernel[0] - 1) + 1;
  const int64_t band = band_rows(g.out[0], span0, g.stride[0],
                                 s.ext[1] * s.ext[2] * cin * int64_t(sizeof(T)), p.batch, 1);
  const int64_t bands = (g.out[0] + band - 1) / band, inner = g.out[1] * g.out[2];
  // The batch falls into batch_chunks() runs of whole images, each summed
  // in order into its own padded copy of dw (and db: tiles then have no
  // remainders); the copies are added in run order at the end. Threads
  // split the runs when there are several, so each band's slab and masked
  // dy are made once, by one thread; with one run (a small batch) they
  // split the tiles of dw instead, each thread walking every band. Either
  // way each dw element's sum has the same order for any thread count, and
  // db has the bits of conv_backward_activation_bias.
  const int64_t chunks = batch_chunks(p);
  const int64_t tile_elems = p_blocks * MR * ld, db_elems = fused.db ? ld : 0;
  Aligned<T> acc_dw(chunks * tile_elems), acc_db(chunks * db_elems);
  const int nt = int(std::min<int64_t>(threads_for(p.rows() * P * cout), chunks > 1 ? chunks : pairs));
  const StopToken stop;
  int64_t hits = 0;  // of a pooled dy (fused.pooled), each band counted once
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(+ : hits)
  {
    const int64_t parts = omp_get_num_threads(), part = omp_get_thread_num();
    const bool by_chunk = chunks > 1;
    const int64_t q0 = by_chunk ? 0 : pairs * part / parts;
    const int64_t q1 = by_chunk ? pairs : pairs * (part + 1) / parts;
    const int64_t k0 = by_chunk ? chunks * part / parts : 0;
    const int64_t k1 = by_chunk ? chunks * (part + 1) / parts : 1;
    for (int64_t chunk = k0; chunk < k1; ++chunk) {
      T* const chunk_dw = acc_dw.data() + chunk * tile_elems;
      T* const chunk_db = acc_db.data() + chunk * db_elems;
      const int64_t task1 = p.batch * (chunk + 1) / chunks * bands;
      for (int64_t task = p.batch * chunk / chunks * bands; task < task1 && q0 < q1 && !stop;
           ++task) {
        const int64_t n = task / bands, a = (task % bands) * band;
        const int64_t e = std::min(g.out[0], a + band);
        Slab t = s;
        t.ext[0] = (e - 1 - a) * g.stride[0] + span0;
        t.lo[0] = a * g.stride[0] - g.pad_before[0];
        const int64_t f0 = a * inner, f1 = e * inner;
        // dy's rows of this band, padded to `ld` channels when cout is not a
        // multiple of the tile width.
        const int64_t slab_size = t.size();
        T* slab = thread_slab<T>(slab_size + (ld == cout && !fused.pooled ? 0 : (f1 - f0) * ld));
        fill_slab(x + n * g.in_size() * cin, t, slab);
        const T* grad = fused.pooled ? nullptr : dy + (n * positions + f0) * cout;
        const T* ys = fused.y ? fused.y + (n * positions + f0) * cout : nullptr;
        int64_t ldg = cout;
        Activation band_act = act;
        if (fused.pooled) {
          // Made while it stays in cache rather than read from a full-size dy.
          T* rows = slab + slab_size;
          const int64_t found = pooled_rows(*fused.pooled, n, f0, f1, cout, ld, rows);
          if (by_chunk || part == 0) hits += found;
          grad = rows;
          ldg = ld;
        } else if (ld != cout) {
          // Padded rows, masked as they are copied.
          T* padded = slab + slab_size;
          for (int64_t f = 0; f < f1 - f0; ++f) {
            if (ys)
              for (int64_t c = 0; c < cout; ++c)
                padded[f * ld + c] = masked_one(act, grad[f * cout + c], ys[f * cout + c],
                                                fused.negative_slope);
            else
              std::copy_n(grad + f * cout, cout, padded + f * ld);
            std::fill_n(padded + f * ld + cout, ld - cout, T(0));
          }
          grad = padded;
          ldg = ld;
          band_act = Activation::none;
        }
        for (int64_t q = q0; q < q1; ++q) {
          const int64_t pb = q / c_blocks, c0 = (q % c_blocks) * NR;
          T* tile = chunk_dw + pb * MR * ld + c0;
          Vec<T> acc[MR][2];
          for (int j = 0; j < MR; ++j) {
            acc[j][0] = load(tile + j * ld);
            acc[j][1] = load(tile + j * ld + W);
          }
          // The first offset block's owner also sums the bias gradient.
          const bool bias = fused.db != nullptr && pb == 0;
          Vec<T> db[2] = {};
          if (bias) db[0] = load(chunk_db + c0), db[1] = load(chunk_db + c0 + W);
          const auto lines = [&](auto a_tag, auto bias_tag) {
            constexpr Activation A = decltype(a_tag)::value;
            constexpr bool B = decltype(bias_tag)::value;
            for_each_line(g, g.out, f0, f1,
                          [&](int64_t f, int64_t count, int64_t o0, int64_t o1, int64_t o2) {
                            const T* xs = slab + (o0 - a) * step[0] + o1 * step[1] + o2 * step[2];
                            const T* yf = A == Activation::none ? nullptr : ys + (f - f0) * ldg + c0;
                            weight_line<T, MR, A, B>(xs, step[g.rank - 1], count,
                                                     off.data() + pb * MR, grad + (f - f0) * ldg + c0,
                                                     ldg, acc, yf, fused.negative_slope, db);
                          });
          };
          const auto with_bias = [&](auto a_tag) {
            if (bias)
              lines(a_tag, std::true_type{});
            else
              lines(a_tag, std::false_type{});
          };
          with_activation(band_act, with_bias);
          for (int j = 0; j < MR; ++j) {
            store(tile + j * ld, acc[j][0]);
            store(tile + j * ld + W, acc[j][1]);
          }
          if (bias) store(chunk_db + c0, db[0]), store(chunk_db + c0 + W, db[1]);
        }
      }
    }
  }
  if (fused.pooled) *fused.pooled->hits = hits;
  if (stop) return;
  // dw and db were zeroed by the caller: the chunks' sums in order.
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const T* part_dw = acc_dw.data() + chunk * tile_elems;
    for (int64_t q = 0; q < P; ++q)
      for (int64_t c = 0; c < cout; ++c) dw[q * cout + c] += part_dw[q * ld + c];
    if (fused.db)
      for (int64_t c = 0; c < cout; ++c) fused.db[c] += acc_db.data()[chunk * db_elems + c];
  }
}

// The offset-tile height for a problem: the one whose busiest thread runs
// the fewest tile-position steps, each costing about 3 MR + 6 instructions
// (2 MR multiply-adds, MR broadcasts, the loads and mask of dy); a tie
// keeps the narrower tile.
template <class T>
int weight_rows(const ConvProblem& p) {
  const int64_t P = p.patch_size(), c_blocks = (p.out_channels + 2 * kLanes<T> - 1) / (2 * kLanes<T>);
  const int64_t nt = threads_for(p.rows() * P * p.out_channels);
  // With several runs of the batch, threads split the batch, not the tiles.
  const bool chunked = batch_chunks(p) > 1;
  const auto cost = [&](int64_t mr) {
    const int64_t pairs = (P + mr - 1) / mr * c_blocks;
    const int64_t team = chunked ? 1 : std::max<int64_t>(1, std::min(nt, pairs));
    return (pairs + team - 1) / team * (3 * mr + 6);
  };
  return cost(kWideWeightRows) < cost(kWeightRows) ? kWideWeightRows : kWeightRows;
}

template <class T>
void backward_weight(const ConvProblem& p, const T* x, const T* dy, T* dw,
                     const FusedWeightGradient<T>& fused) {
  std::fill_n(dw, p.patch_size() * p.out_channels, T(0));
  if (fused.db) std::fill_n(fused.db, p.out_channels, T(0));
  if (p.rows() == 0 || p.patch_size() == 0 || p.out_channels == 0) return;
  if constexpr (kWideWeightRows != kWeightRows)
    if (weight_rows<T>(p) == kWideWeightRows)
      return backward_weight_tiles<T, kWideWeightRows>(p, x, dy, dw, fused);
  backward_weight_tiles<T, kWeightRows>(p, x, dy, dw, fused);
}

// dx[i][ci] for input positions i < count (at_i = ds + i * step): the sum
// over kernel offsets k of at_i[off[k]] . wt[k][ci] over `ld` channels in
// vectors, four partial sums per position reduced at the end.
template <class T, int MR>
void input_tile(const T* ds, int64_t step, int64_t count, const int64_t* off, int64_t K,
                int64_t cin, const T* wt, int64_t ld, T* dx) {
  constexpr int64_t W = kLanes<T>;
  const int64_t vectors = ld / W;
  const T* at[MR];
  for (int i = 0; i < MR; ++i) at[i] = ds + (i < count ? i : 0) * step;
  for (int64_t ci = 0; ci < cin; ++ci) {
    Vec<T> acc[MR][4] = {};
    for (int64_t k = 0; k < K; ++k) {
      const T* wk = wt + (k * cin + ci) * ld;
      const int64_t o = off[k];
      int64_t v = 0;
      for (; v + 4 <= vectors; v += 4) {
        const Vec<T> w0 = load(wk + v * W), w1 = load(wk + (v + 1) * W);
        const Vec<T> w2 = load(wk + (v + 2) * W), w3 = load(wk + (v + 3) * W);
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
          const T* d = at[i] + o + v * W;
          acc[i][0] = fmadd(load(d), w0, acc[i][0]);
          acc[i][1] = fmadd(load(d + W), w1, acc[i][1]);
          acc[i][2] = fmadd(load(d + 2 * W), w2, acc[i][2]);
          acc[i][3] = fmadd(load(d + 3 * W), w3, acc[i][3]);
        }
      }
      for (; v < vectors; ++v) {
        const Vec<T> wv = load(wk + v * W);
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) acc[i][0] = fmadd(load(at[i] + o + v * W), wv, acc[i][0]);
      }
    }
    for (int64_t i = 0; i < count; ++i) {
      const Vec<T> total = (acc[i][0] + acc[i][1]) + (acc[i][2] + acc[i][3]);
      T sum = total[0];
      for (int64_t j = 1; j < W; ++j) sum += total[j];
      dx[i * cin + ci] = sum;
    }
  }
}

// input_tile when the kernel has KW taps along the line at dilation 1, for
// up to MR positions (spare ones read past the line; the slab has room):
// tap kw of position i reads slab position i + KW - 1 - kw of its kernel
// row, so each dy vector, loaded once, serves the KW positions that read it
// (input_tile loads one per multiply-add). Each dx element still sums its
// kernel rows, vectors and taps in an order fixed by the problem.
template <class T, int KW, int MR>
void input_tile_line(const T* ds, int64_t count, const int64_t* row_off, int64_t rows,
                     int64_t cin, const T* wt, int64_t ld, T* dx) {
  constexpr int64_t W = kLanes<T>;
  const int64_t vectors = ld / W;
  for (int64_t ci = 0; ci < cin; ++ci) {
    Vec<T> acc[MR] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const T* base = ds + row_off[r];
      for (int64_t v = 0; v < vectors; ++v) {
        Vec<T> wv[KW];
#pragma GCC unroll 8
        for (int kw = 0; kw < KW; ++kw) wv[kw] = load(wt + ((r * KW + kw) * cin + ci) * ld + v * W);
        const T* d = base + v * W;
#pragma GCC unroll 16
        for (int j = 0; j < MR + KW - 1; ++j) {
          const Vec<T> dj = load(d + j * ld);
#pragma GCC unroll 8
          for (int kw = 0; kw < KW; ++kw) {
            const int i = j - (KW - 1 - kw);
            if (i >= 0 && i < MR) acc[i] = fmadd(dj, wv[kw], acc[i]);
          }
        }
      }
    }
    for (int64_t i = 0; i < count; ++i) {
      T sum = acc[i][0];
      for (int64_t j = 1; j < W; ++j) sum += acc[i][j];
      dx[i * cin + ci] = sum;
    }
  }
}

// Stride 1 in every dimension (the caller checks).
template <class T>
void backward_input(const ConvProblem& p, const T* w, const T* dy, T* dx) {
  const Geometry& g = p.g;
  constexpr int64_t W = kLanes<T>;
  constexpr int MR = kInputRows;
  const int64_t cin = p.in_channels, cout = p.out_channels, K = g.kernel_size();
  const int64_t in_positions = g.in_size(), positions = g.out_size();
  if (p.rows() == 0 || cout == 0) {
    std::fill_n(dx, p.batch * in_positions * cin, T(0));
    return;
  }
  const int64_t ld = round_up(cout, W);
  Aligned<T> wt;
  pad_columns(w, K * cin, cout, ld, wt);

  // Input coordinate i reads, through kernel position k, output coordinate
  // i + pad_before - k * dilation: the slab starts (kernel - 1) * dilation
  // before, so that kernel position kernel - 1 - k' is offset k' from it.
  Slab s{};
  for (int d = 0; d < 3; ++d) {
    const int64_t reach = g.dilation[d] * (g.kernel[d] - 1);
    s.ext[d] = g.in[d] + reach;
    s.lo[d] = g.pad_before[d] - reach;
    s.src[d] = g.out[d];
  }
  s.ch = cout;
  s.ld = ld;
  const std::vector<int64_t> off = tap_offsets(g, s.ext, 1, ld, true);
  const int64_t step[3] = {s.ext[1] * s.ext[2] * ld, s.ext[2] * ld, ld};
  const int64_t reach0 = g.dilation[0] * (g.kernel[0] - 1);
  const int nt = threads_for(p.rows() * K * cin * cout);
  const int64_t band = band_rows(g.in[0], reach0 + 1, 1,
                                 s.ext[1] * s.ext[2] * ld * int64_t(sizeof(T)), p.batch, nt);
  const int64_t bands = (g.in[0] + band - 1) / band, inner = g.in[1] * g.in[2];
  const int64_t lo0 = s.lo[0];
  // Kernels of 3, 5 or 7 taps along the line at dilation 1 take
  // input_tile_line (AVX2: 7 accumulators, KW weight vectors and a dy
  // vector in the 16 registers).
  const int R = g.rank - 1;
  const int64_t kw = g.kernel[R], rows = K / std::max<int64_t>(kw, 1);
  const bool by_line = kHasLineTiles && g.dilation[R] == 1 && (kw == 3 || kw == 5 || kw == 7);
  std::vector<int64_t> row_off(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows && by_line; ++r) row_off[size_t(r)] = off[size_t(r * kw + kw - 1)];
  const int64_t spare = (kLineRows + 8) * ld;  // what a short tile reads past the slab
  const StopToken stop;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t task = 0; task < p.batch * bands; ++task) {
    if (stop) continue;
    const int64_t n = task / bands, a = (task % bands) * band;
    const int64_t e = std::min(g.in[0], a + band);
    Slab t = s;
    t.ext[0] = (e - a) + reach0;
    t.lo[0] = lo0 + a;
    T* slab = thread_slab<T>(t.size() + spare);
    fill_slab(dy + n * positions * cout, t, slab);
    for_each_line(g, g.in, a * inner, e * inner,
                  [&](int64_t f, int64_t count, int64_t i0, int64_t i1, int64_t i2) {
                    const T* ds = slab + (i0 - a) * step[0] + i1 * step[1] + i2 * step[2];
                    T* out = dx + (n * in_positions + f) * cin;
                    if (by_line) {
                      constexpr int LR = kLineRows;
                      for (int64_t i = 0; i < count; i += LR) {
                        const int64_t c = std::min<int64_t>(LR, count - i);
                        const T* at = ds + i * ld;
                        T* o = out + i * cin;
                        const int64_t* ro = row_off.data();
                        if (kw == 3)
                          input_tile_line<T, 3, LR>(at, c, ro, rows, cin, wt.data(), ld, o);
                        else if (kw == 5)
                          input_tile_line<T, 5, LR>(at, c, ro, rows, cin, wt.data(), ld, o);
                        else
                          input_tile_line<T, 7, LR>(at, c, ro, rows, cin, wt.data(), ld, o);
                      }
                      return;
                    }
                    for (int64_t i = 0; i < count; i += MR)
                      input_tile<T, MR>(ds + i * ld, ld, std::min<int64_t>(MR, count - i),
                                        off.data(), K, cin, wt.data(), ld, out + i * cin);
                  });
  }
}

}  // namespace few

}  // namespace cnnkit::detail::CNNKIT_ISA_NS

// The Winograd F(4x4, 3x3) transforms and tile loop (see winograd.hpp),
// compiled once per instruction set: winograd.cpp includes this with
// CNNKIT_ISA_NS=baseline, winograd_avx2.cpp with CNNKIT_ISA_NS=avx2 and
// -mavx2 -mfma (an AVX-512 unit is one more such file and one more line in
// CNNKIT_DECLARE_WINOGRAD). Every transform loops over the contiguous channel
// axis without branches, so the compiler vectorises it for the unit's target;
// the 36 products per block go through gemm_serial, which picks its own path.
//
// The matrices are Lavin's for the points 0, 1, -1, 2, -2 and infinity:
//   B^T = [4  0 -5  0 1 0]   G = [ 1/4     0    0 ]   A^T = [1 1  1 1  1 0]
//         [0 -4 -4  1 1 0]       [-1/6 -1/6 -1/6 ]         [0 1 -1 2 -2 0]
//         [0  4 -4 -1 1 0]       [-1/6  1/6 -1/6 ]         [0 1  1 4  4 0]
//         [0 -2 -1  2 1 0]       [1/24 1/12  1/6 ]         [0 1 -1 8 -8 1]
//         [0  2 -1 -2 1 0]       [1/24 -1/12 1/6 ]
//         [0  4  0 -5 0 1]       [  0     0    1 ]
// Y = A^T [ (G g G^T) . (B^T d B) ] A for a 6x6 input tile d and a 3x3 filter g.
#pragma once

#include <algorithm>
#include <cstdint>

#include "add_relu.hpp"
#include "gemm.hpp"

namespace cnnkit::detail {

// One Winograd pass: y[n, i, j, o] = sum over (kh, kw, k) of
// x[n, i + off_h + kh, j + off_w + kw, k] * filter(kh, kw, k, o), with x zero
// outside its extent; the filter comes transformed and packed (see
// WinogradPlan).
struct WinogradPass {
  int64_t batch = 0, in_h = 0, in_w = 0, in_c = 0;  // x: (batch, in_h, in_w, in_c)
  int64_t out_h = 0, out_w = 0, out_c = 0;          // y: (batch, out_h, out_w, out_c)
  int64_t ldy = 0;  // elements between y's pixels: out_c, or more for a channel slice
  int64_t off_h = 0, off_w = 0;
  // Applied with the bias to each output row while it is in L1, as
  // apply_epilogue() would in a pass of its own over y (the same bits).
  Activation activation = Activation::none;
  double negative_slope = 0.2;  // a T converted exactly
  // A residual of y's shape (a const T*) added to each output row after the
  // bias, then add_relu's rectifier when residual_relu; the activation is none.
  const void* residual = nullptr;
  bool residual_relu = false;
};

// How a pass cuts its work: tiles of 4x4 outputs in blocks of `block`, and
// the output channels of each block in `parts` column ranges, part q being
// [out_c * q / parts, out_c * (q + 1) / parts). The transformed filters come
// as 36 * parts matrices packed for the GEMM (gemm.hpp's PackedB), entry
// e * parts + q being op(U[e]) restricted to part q's columns (in_c x its
// width), packed once per call -- or once per weights (winograd.cpp's cache)
// -- and shared read-only by every task.
//
// Tiles per block: the block's V and M (36 x tiles x channels each) about
// 2 MiB together, so the GEMMs' A and C stay near the core, but at least 96
// tiles (chosen when every block packed U[e] again, which cost 15% at 28-tile
// blocks; with U packed once per call, smaller blocks were not measured). The
// count depends only on the channels, never on the batch or the thread
// count; the workspace is 96 x 36 x (C_in + C_out) values per thread at most
// above 2 MiB (7 MiB of float at 256 channels).
// Too few blocks to keep the threads busy (the deep layers of one image: 64
// tiles at 32x32): the output channels of each block are split too, into
// parts of at least 64, which share the block's input transform (made once,
// by all threads, see winograd_run). The split depends on the problem only,
// so the results do not depend on the thread count.
struct WinogradPlan {
  int64_t tiles_h = 0, tiles_w = 0, tiles = 0, block = 0, blocks = 0, parts = 1;
};

inline WinogradPlan winograd_plan(const WinogradPass& s, int64_t elem_size) {
  constexpr int64_t kE = 36, kTile = 4;
  WinogradPlan p;
  p.tiles_h = (s.out_h + kTile - 1) / kTile;
  p.tiles_w = (s.out_w + kTile - 1) / kTile;
  p.tiles = s.batch * p.tiles_h * p.tiles_w;
  const int64_t per_tile = kE * (s.in_c + s.out_c) * elem_size;
  const int64_t most =
      per_tile > 0 ? std::clamp<int64_t>((int64_t(2) << 20) / per_tile, 96, 512) : 96;
  p.blocks = (p.tiles + most - 1) / most;
  // The tiles shared evenly by the blocks: 196 tiles (56x56 at batch 1) as
  // 98 + 98 rather than 113 + 83, which left one of two threads idle for a
  // seventh of the layer. A GEMM's rows are independent, so the bits stay.
  p.block = p.blocks > 0 ? (p.tiles + p.blocks - 1) / p.blocks : most;
  p.parts = p.blocks >= 4 ? 1 : std::clamp<int64_t>(s.out_c / 64, 1, (4 + p.blocks - 1) / p.blocks);
  return p;
}

#define CNNKIT_DECLARE_WINOGRAD(ns)                                                        \
  namespace ns {                                                                          \
  /* u[e] = (G g G^T)[e] for w (3, 3, rows, cols) read as g(kh, kw) = w[kh][kw], or      \
     w[2 - kh][2 - kw] when `flip`: 36 matrices rows x cols, row stride cols. */           \
  template <class T>                                                                      \
  void winograd_filter(const T* w, int64_t rows, int64_t cols, bool flip, T* u);          \
  /* u: the 36 * parts packed matrices of winograd_plan(s, sizeof(T)). */                  \
  template <class T>                                                                      \
  void winograd_run(const WinogradPass& s, const T* x, const PackedB<T>* u, const T* b,   \
                    T* y);                                                                \
  }
CNNKIT_DECLARE_WINOGRAD(baseline)
CNNKIT_DECLARE_WINOGRAD(avx2)
CNNKIT_DECLARE_WINOGRAD(avx512)
#undef CNNKIT_DECLARE_WINOGRAD

}  // namespace cnnkit::detail

#ifdef CNNKIT_ISA_NS

#include <omp.h>

#include <vector>

#include "interrupt.hpp"
#include "parallel.hpp"

namespace cnnkit::detail::CNNKIT_ISA_NS {

namespace {

constexpr int kAlpha = 6;  // input tile side
constexpr int kTile = 4;   // output tile side
constexpr int kE = kAlpha * kAlpha;

// r[0..6) = B^T d[0..6), for n channels.
template <class T>
inline void input_1d(const T* const* d, T* const* r, int64_t n) {
  const T *d0 = d[0], *d1 = d[1], *d2 = d[2], *d3 = d[3], *d4 = d[4], *d5 = d[5];
  T *r0 = r[0], *r1 = r[1], *r2 = r[2], *r3 = r[3], *r4 = r[4], *r5 = r[5];
#pragma omp simd
  for (int64_t c = 0; c < n; ++c) {
    const T a1 = d1[c], a2 = d2[c], a3 = d3[c], a4 = d4[c];
    r0[c] = (T(4) * d0[c] - T(5) * a2) + a4;
    r1[c] = (a3 + a4) - T(4) * (a1 + a2);
    r2[c] = (a4 - a3) + T(4) * (a1 - a2);
    r3[c] = (a4 - a2) + T(2) * (a3 - a1);
    r4[c] = (a4 - a2) - T(2) * (a3 - a1);
    r5[c] = (T(4) * a1 - T(5) * a3) + d5[c];
  }
}

// r[0..4) = A^T m[0..6), for n channels.
template <class T>
inline void output_1d(const T* const* m, T* const* r, int64_t n) {
  const T *m0 = m[0], *m1 = m[1], *m2 = m[2], *m3 = m[3], *m4 = m[4], *m5 = m[5];
  T *r0 = r[0], *r1 = r[1], *r2 = r[2], *r3 = r[3];
#pragma omp simd
  for (int64_t c = 0; c < n; ++c) {
    const T p12 = m1[c] + m2[c], d12 = m1[c] - m2[c];
    const T p34 = m3[c] + m4[c], d34 = m3[c] - m4[c];
    r0[c] = (m0[c] + p12) + p34;
    r1[c] = d12 + T(2) * d34;
    r2[c] = p12 + T(4) * p34;
    r3[c] = (d12 + T(8) * d34) + m5[c];
  }
}

template <class T>
std::vector<T>& scratch(int slot, size_t size) {
  thread_local std::vector<T> buf[4];
  if (buf[slot].size() < size) buf[slot].resize(size);
  return buf[slot];
}

}  // namespace

template <class T>
void winograd_filter(const T* w, int64_t rows, int64_t cols, bool flip, T* u) {
  // G's rows as (g0, g1, g2) coefficients, applied along kh then kw.
  static const double kG[kAlpha][3] = {{1.0 / 4, 0, 0},          {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                       {-1.0 / 6, 1.0 / 6, -1.0 / 6}, {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                       {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};
  const int64_t plane = rows * cols;
  const int nt = threads_for(plane * 162, 1 << 16);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    std::vector<T> t(size_t(kAlpha * 3 * cols));  // (G g)[xi][kw] for one row
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      auto g = [&](int kh, int kw) {
        if (flip) kh = 2 - kh, kw = 2 - kw;
        return w + (kh * 3 + kw) * plane + r * cols;
      };
      for (int xi = 0; xi < kAlpha; ++xi)
        for (int kw = 0; kw < 3; ++kw) {
          T* out = t.data() + (xi * 3 + kw) * cols;
          const T c0 = T(kG[xi][0]), c1 = T(kG[xi][1]), c2 = T(kG[xi][2]);
          const T *g0 = g(0, kw), *g1 = g(1, kw), *g2 = g(2, kw);
          for (int64_t c = 0; c < cols; ++c) out[c] = (c0 * g0[c] + c1 * g1[c]) + c2 * g2[c];
        }
      for (int xi = 0; xi < kAlpha; ++xi)
        for (int nu = 0; nu < kAlpha; ++nu) {
          T* out = u + (xi * kAlpha + nu) * plane + r * cols;
          const T c0 = T(kG[nu][0]), c1 = T(kG[nu][1]), c2 = T(kG[nu][2]);
          const T* t0 = t.data() + (xi * 3 + 0) * cols;
          const T* t1 = t0 + cols;
          const T* t2 = t1 + cols;
          for (int64_t c = 0; c < cols; ++c) out[c] = (c0 * t0[c] + c1 * t1[c]) + c2 * t2[c];
        }
    }
  }
}

template <class T>
void winograd_run(const WinogradPass& s, const T* x, const PackedB<T>* u, const T* b, T* y) {
  const WinogradPlan plan = winograd_plan(s, int64_t(sizeof(T)));
  const int64_t tiles_h = plan.tiles_h, tiles_w = plan.tiles_w, tiles = plan.tiles;
  const int64_t k = s.in_c, n = s.out_c, ldy = s.ldy > 0 ? s.ldy : n;
  if (tiles == 0 || n == 0) return;
  const int64_t block = plan.block, blocks = plan.blocks, parts = plan.parts;
  const int nt = threads_for(tiles * kE * k * n / 4, 1 << 16);
  const bool finish = b || s.activation != Activation::none;
  const T* const residual = static_cast<const T*>(s.residual);
  const StopToken stop;

  // A thread's scratch: zeros for input rows outside x (k of them), the row
  // transforms' 36 rows, and a sink for output rows outside y.
  const size_t work_size = size_t((1 + kE + kTile) * std::max(k, n));
  auto work_of = [&] {
    T* work = scratch<T>(2, work_size).data();
    std::fill_n(work, k, T(0));
    return work;
  };

  // Input transform of tile t0 + t: V[e][t] = (B^T d B)[e], in v's rows of
  // `block` tiles.
  auto transform_input = [&](T* work, T* v, int64_t t0, int64_t t) {
    const T* zeros = work;
    T* mid = work + std::max(k, n);
    const int64_t tile = t0 + t, img = tile / (tiles_h * tiles_w);
    const int64_t th = (tile / tiles_w) % tiles_h, tw = tile % tiles_w;
    const int64_t h0 = th * kTile + s.off_h, w0 = tw * kTile + s.off_w;
    const T* d[kE];
    for (int i = 0; i < kAlpha; ++i)
      for (int j = 0; j < kAlpha; ++j) {
        const int64_t h = h0 + i, w = w0 + j;
        d[i * kAlpha + j] = (h >= 0 && h < s.in_h && w >= 0 && w < s.in_w)
                                ? x + ((img * s.in_h + h) * s.in_w + w) * k
                                : zeros;
      }
    // Along the rows of the tile (index j), then along its columns (i).
    for (int i = 0; i < kAlpha; ++i) {
      T* r[kAlpha];
      for (int j = 0; j < kAlpha; ++j) r[j] = mid + (i * kAlpha + j) * k;
      input_1d(d + i * kAlpha, r, k);
    }
    for (int j = 0; j < kAlpha; ++j) {
      const T* col[kAlpha];
      T* r[kAlpha];
      for (int i = 0; i < kAlpha; ++i) {
        col[i] = mid + (i * kAlpha + j) * k;
        r[i] = v + ((i * kAlpha + j) * block + t) * k;
      }
      input_1d(col, r, k);
    }
  };

  // The 36 products M[e] = V[e] U[e] of the block's `count` tiles for part's
  // output channels [c0, c0 + nc), then Y = A^T M A, clipped to y, plus the
  // bias and activation.
  auto multiply_and_store = [&](T* work, const T* v, int64_t t0, int64_t count, int64_t part) {
    const int64_t c0 = n * part / parts, nc = n * (part + 1) / parts - c0;
    T* mid = work + std::max(k, n);
    T* sink = mid + kE * std::max(k, n);
    T* m = scratch<T>(1, size_t(kE * block * nc)).data();
    const Epilogue<T> epilogue{b ? b + c0 : nullptr, s.activation, T(s.negative_slope)};
    for (int e = 0; e < kE; ++e)
      gemm_packed_serial(false, count, v + e * block * k, k, u[e * parts + part],
                         m + e * block * nc, nc, false);
    for (int64_t t = 0; t < count; ++t) {
      const int64_t tile = t0 + t, img = tile / (tiles_h * tiles_w);
      const int64_t th = (tile / tiles_w) % tiles_h, tw = tile % tiles_w;
      for (int i = 0; i < kAlpha; ++i) {
        const T* row[kAlpha];
        T* r[kTile];
        for (int j = 0; j < kAlpha; ++j) row[j] = m + ((i * kAlpha + j) * block + t) * nc;
        for (int q = 0; q < kTile; ++q) r[q] = mid + (i * kTile + q) * nc;
        output_1d(row, r, nc);
      }
      for (int q = 0; q < kTile; ++q) {
        const T* col[kAlpha];
        T* r[kTile];
        int64_t pixel[kTile];
        const int64_t ow = tw * kTile + q;
        for (int i = 0; i < kAlpha; ++i) col[i] = mid + (i * kTile + q) * nc;
        for (int p = 0; p < kTile; ++p) {
          const int64_t oh = th * kTile + p;
          pixel[p] = (img * s.out_h + oh) * s.out_w + ow;
          r[p] = (oh < s.out_h && ow < s.out_w) ? y + pixel[p] * ldy + c0 : sink + p * n;
        }
        output_1d(col, r, nc);
        if (finish)
          for (int p = 0; p < kTile; ++p)
            if (r[p] != sink + p * n) apply_epilogue(epilogue, r[p], n, 1, nc);
        if (residual)
          for (int p = 0; p < kTile; ++p) {
            if (r[p] == sink + p * n) continue;
            const T* add = residual + pixel[p] * n + c0;
            if (s.residual_relu)
              add_relu_span(r[p], add, nc, r[p]);
            else
              for (int64_t c = 0; c < nc; ++c) r[p][c] = r[p][c] + add[c];
          }
      }
    }
  };

  if (parts == 1) {  // each block is a task: its transform, products and store
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
    for (int64_t bi = 0; bi < blocks; ++bi) {
      if (stop) continue;
      const int64_t t0 = bi * block, count = std::min(block, tiles - t0);
      T* work = work_of();
      T* v = scratch<T>(0, size_t(kE * block * k)).data();
      for (int64_t t = 0; t < count; ++t) transform_input(work, v, t0, t);
      multiply_and_store(work, v, t0, count, 0);
    }
    return;
  }
  // Blocks cut into column parts (few tiles: ResNet-18's 28x28x128 layers at
  // batch 1 are one block of 49 tiles in two parts): the threads share each
  // block's input transform, made once into one V, then take its parts. When
  // every part made its own V, the second transform cost a quarter of the
  // layer (28x28, 128 -> 128 channels, one thread: 0.63-0.73 ms against
  // 0.16 for the transform alone). V's values do not depend on who makes
  // them, so the bits stay.
  T* const v = scratch<T>(3, size_t(kE * block * k)).data();
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    T* work = work_of();
    for (int64_t bi = 0; bi < blocks; ++bi) {
      const int64_t t0 = bi * block, count = std::min(block, tiles - t0);
#pragma omp for schedule(static)
      for (int64_t t = 0; t < count; ++t)
        if (!stop) transform_input(work, v, t0, t);
#pragma omp for schedule(dynamic, 1)
      for (int64_t part = 0; part < parts; ++part)
        if (!stop) multiply_and_store(work, v, t0, count, part);
    }
  }
}

#define CNNKIT_INSTANTIATE_WINOGRAD(T)                                            \
  template void winograd_filter<T>(const T*, int64_t, int64_t, bool, T*);         \
  template void winograd_run<T>(const WinogradPass&, const T*, const PackedB<T>*, const T*, T*);
CNNKIT_INSTANTIATE_WINOGRAD(float)
CNNKIT_INSTANTIATE_WINOGRAD(double)
#undef CNNKIT_INSTANTIATE_WINOGRAD

}  // namespace cnnkit::detail::CNNKIT_ISA_NS

#endif  // CNNKIT_ISA_NS

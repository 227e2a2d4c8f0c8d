// The small-k GEMM's register tiles (csrc/gemm_small_k.hpp), shared source:
// gemm_small_k_avx512.cpp and gemm_small_k_avx2.cpp each define their vector
// operations and tile heights and include this with CNNKIT_SMALL_K_NS set to
// their namespace, so that no function is emitted twice under one name with
// different instruction sets.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "gemm.hpp"
#include "gemm_small_k.hpp"

namespace cnnkit::small_k {

// One product as the instruction-set units see it. op(B) has been copied
// to `panel` (k rows of ldp floats, 64-byte aligned, ldp a multiple of 16,
// zero past column n) and the bias, if any, to ldp floats likewise.
struct Job {
  int64_t n, k;
  const float* a;
  int64_t lda;
  const float* panel;
  int64_t ldp;
  const float* bias;
  float* c;
  int64_t ldc;
  Activation activation;
  float negative_slope;
  int64_t m_end;  // C's rows: the prefetches stay inside A
};

#define CNNKIT_DECLARE_SMALL_K(ns)                                            \
  namespace ns {                                                              \
  /* C's rows [i0, i1), all columns; i0 a multiple of row_step() */           \
  void rows(const Job& job, int64_t i0, int64_t i1);                          \
  /* the rows every register tile height of the unit divides */               \
  int64_t row_step() noexcept;                                                \
  }
CNNKIT_DECLARE_SMALL_K(avx2)
CNNKIT_DECLARE_SMALL_K(avx512)
#undef CNNKIT_DECLARE_SMALL_K

#ifdef CNNKIT_SMALL_K_NS
namespace CNNKIT_SMALL_K_NS {
namespace {

// The activation as finish_tile (csrc/gemm_impl.hpp) computes it, on a
// vector. max(0, x) and min(6, x) return x when x is NaN (the second
// operand), so NaN stays NaN as in `x < 0 ? 0 : x`, and -0 stays -0.
template <class Vec, Activation A>
inline typename Vec::V activate(typename Vec::V x, typename Vec::V slope) {
  if constexpr (A == Activation::relu) return Vec::max(Vec::zero(), x);
  if constexpr (A == Activation::relu6)
    return Vec::min(Vec::set1(6.0f), Vec::max(Vec::zero(), x));
  if constexpr (A == Activation::leaky_relu) return Vec::positive_or(x, Vec::mul(slope, x));
  if constexpr (A == Activation::hard_swish) {
    const typename Vec::V t = Vec::add(Vec::div(x, Vec::set1(6.0f)), Vec::set1(0.5f));
    return Vec::mul(x, Vec::min(Vec::set1(1.0f), Vec::max(Vec::zero(), t)));
  }
  return x;
}

// An MR x (NV vectors) tile of C: rows [0, mr) of A from `a` (row stride
// lda; rows up to MR are read, the caller makes them valid), columns [0,
// cols) of the panel from `b`, C at `c`. Row i of A is read at byte offset
// (i % 3) * stride from row 3 * (i / 3): one pointer per three rows and the
// stride make base + index * scale addresses, where a pointer per row ran
// out of general registers (csrc/gemm_avx512.cpp's StridedRowsA).
template <class Vec, int MR, int NV, Activation A>
void tile(const Job& job, const float* a, int64_t lda, int64_t mr, const float* b,
          const float* bias, int64_t cols, float* c) {
  using V = typename Vec::V;
  constexpr int64_t W = Vec::W;
  constexpr int G = (MR + 2) / 3;
  const char* base[G];
  const int64_t stride = lda * int64_t(sizeof(float));
#pragma GCC unroll 8
  for (int g = 0; g < G; ++g) base[g] = reinterpret_cast<const char*>(a) + 3 * g * stride;
  V acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = Vec::zero();
  const int64_t k = job.k, ldp = job.ldp;
#pragma GCC unroll 2
  for (int64_t p = 0; p < k; ++p, b += ldp) {
    V bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = Vec::load(b + v * W);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const V ai = Vec::set1(
          *(reinterpret_cast<const float*>(base[i / 3] + (i % 3) * stride) + p));
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = Vec::fmadd(ai, bv[v], acc[i][v]);
    }
  }
  // The sum as stored, then + bias, then the activation: finish_tile's
  // operations on the stored tile, in registers.
  // In locals: the stores below may alias anything (the intrinsics' types),
  // so a field of job would be reloaded after each.
  const V slope = Vec::set1(job.negative_slope);
  const int64_t ldc = job.ldc;
  V bias_v[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) bias_v[v] = bias ? Vec::load(bias + v * W) : Vec::zero();
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    if (i >= mr) break;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      V x = acc[i][v];
      if (bias) x = Vec::add(x, bias_v[v]);
      Vec::store(c + i * ldc + v * W, activate<Vec, A>(x, slope), cols - v * W);
    }
  }
}

// Rows [r0, r1) of C, columns [j0, j0 + cols) (NV vectors, the last maybe
// partial), in tiles of MR rows; the last tile, if short, reads a copy of
// its rows padded with zeros, so that the kernel never reads past A.
template <class Vec, int MR, int NV, Activation A>
void strip(const Job& job, int64_t r0, int64_t r1, int64_t j0, int64_t cols) {
  const float* b = job.panel + j0;
  const float* bias = job.bias ? job.bias + j0 : nullptr;
  // With short rows (k <= 48: up to three lines each) the first column block
  // prefetches the rows two tiles ahead into L1 (12544 x 32 -> 16, one
  // thread, CPU time: 0.12 -> 0.105 ms); longer rows, which the hardware
  // prefetchers follow, lost by it (3136 x 144 -> 24: 0.17 -> 0.185).
  int64_t r = r0;
  const int64_t ahead = 2 * MR, line_floats = 16;
  for (; r + MR <= r1; r += MR) {
    if (j0 == 0 && job.k <= 48 && r + ahead + MR <= job.m_end)
      for (int64_t i = 0; i < MR; ++i)
        for (int64_t p = 0; p < job.k; p += line_floats)
          _mm_prefetch(reinterpret_cast<const char*>(job.a + (r + ahead + i) * job.lda + p),
                       _MM_HINT_T0);
    tile<Vec, MR, NV, A>(job, job.a + r * job.lda, job.lda, MR, b, bias, cols,
                         job.c + r * job.ldc + j0);
  }
  if (r == r1) return;
  alignas(64) float rows[MR * kMaxK];
  const int64_t mr = r1 - r;
  for (int64_t i = 0; i < MR; ++i)
    for (int64_t p = 0; p < job.k; ++p)
      rows[i * job.k + p] = i < mr ? job.a[(r + i) * job.lda + p] : 0.0f;
  tile<Vec, MR, NV, A>(job, rows, job.k, mr, b, bias, cols, job.c + r * job.ldc + j0);
}

// Shapes supplies kMR1, kMR2, kMR3 (tile heights for 1, 2 and 3 vectors of
// columns; kMR3 = 0 where 3 do not fit the registers) and kBand (rows of A
// kept in L1 while every column block runs over them: a multiple of each
// height).
template <class Vec, class Shapes, Activation A>
void rows_with(const Job& job, int64_t i0, int64_t i1) {
  constexpr int64_t W = Vec::W;
  const int64_t vectors = (job.n + W - 1) / W;
  for (int64_t r0 = i0; r0 < i1; r0 += Shapes::kBand) {
    const int64_t r1 = std::min(i1, r0 + Shapes::kBand);
    for (int64_t v0 = 0; v0 < vectors;) {
      // Blocks of three vectors where they fit (48 columns divide 96, 144
      // and 192), else of two, one last.
      const int64_t left = vectors - v0;
      const int64_t nv = Shapes::kMR3 && (left == 3 || left > 4) ? 3 : left >= 2 ? 2 : 1;
      const int64_t j0 = v0 * W, cols = std::min(job.n - j0, nv * W);
      if constexpr (Shapes::kMR3 > 0) {
        if (nv == 3) strip<Vec, Shapes::kMR3, 3, A>(job, r0, r1, j0, cols);
      }
      if (nv == 2) strip<Vec, Shapes::kMR2, 2, A>(job, r0, r1, j0, cols);
      if (nv == 1) strip<Vec, Shapes::kMR1, 1, A>(job, r0, r1, j0, cols);
      v0 += nv;
    }
  }
}

template <class Vec, class Shapes>
void rows_of(const Job& job, int64_t i0, int64_t i1) {
  switch (job.activation) {
    case Activation::relu:
      return rows_with<Vec, Shapes, Activation::relu>(job, i0, i1);
    case Activation::relu6:
      return rows_with<Vec, Shapes, Activation::relu6>(job, i0, i1);
    case Activation::leaky_relu:
      return rows_with<Vec, Shapes, Activation::leaky_relu>(job, i0, i1);
    case Activation::hard_swish:
      return rows_with<Vec, Shapes, Activation::hard_swish>(job, i0, i1);
    default:  // none; gemm_small_k_applies refuses sigmoid
      return rows_with<Vec, Shapes, Activation::none>(job, i0, i1);
  }
}

}  // namespace
}  // namespace CNNKIT_SMALL_K_NS
#endif

}  // namespace cnnkit::small_k

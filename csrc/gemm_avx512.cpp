// GEMM micro-kernels for CPUs with AVX-512 (this file is compiled with
// -mavx512f/bw/vl/dq and -mfma), and the shared packing and blocking loops
// compiled for them.
#define CNNKIT_ISA_NS avx512
#include "gemm_impl.hpp"

#include <immintrin.h>

namespace cnnkit::gemm_impl::avx512 {

namespace {

// The few vector operations the kernel needs, per element type. Masks
// select the first `n` lanes, for the columns of an edge tile.
struct F32 {
  using T = float;
  using V = __m512;
  using Mask = __mmask16;
  static constexpr int64_t W = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const T* p) { return _mm512_load_ps(p); }
  static V loadu(const T* p) { return _mm512_loadu_ps(p); }
  static V broadcast(const T* p) { return _mm512_set1_ps(*p); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static void storeu(T* p, V v) { _mm512_storeu_ps(p, v); }
  static Mask first(int64_t n) { return n >= W ? Mask(~0u) : Mask((1u << n) - 1); }
  static V maskz_loadu(Mask m, const T* p) { return _mm512_maskz_loadu_ps(m, p); }
  static void mask_storeu(T* p, Mask m, V v) { _mm512_mask_storeu_ps(p, m, v); }
};

struct F64 {
  using T = double;
  using V = __m512d;
  using Mask = __mmask8;
  static constexpr int64_t W = 8;
  static V zero() { return _mm512_setzero_pd(); }
  static V load(const T* p) { return _mm512_load_pd(p); }
  static V loadu(const T* p) { return _mm512_loadu_pd(p); }
  static V broadcast(const T* p) { return _mm512_set1_pd(*p); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static void storeu(T* p, V v) { _mm512_storeu_pd(p, v); }
  static Mask first(int64_t n) { return n >= W ? Mask(0xff) : Mask((1u << n) - 1); }
  static V maskz_loadu(Mask m, const T* p) { return _mm512_maskz_loadu_pd(m, p); }
  static void mask_storeu(T* p, Mask m, V v) { _mm512_mask_storeu_pd(p, m, v); }
};

// An MR x (2 vectors) tile: 14 x 32 floats or 14 x 16 doubles. 28
// accumulators, 2 B vectors and 1 A broadcast use 31 of the 32 zmm
// registers; each step issues 28 FMAs for 16 loads (the broadcasts fold into
// the FMAs as embedded-broadcast operands), so the two 512-bit FMA pipes, not
// the load ports, set the pace, and 28 independent chains cover the FMA
// latency (4 cycles) times its throughput (2 per cycle) three times over.
template <class Vec, int64_t MR_, int64_t MC_, int64_t KC_, int64_t NC_>
struct ZmmKernel : SliverEntryPoints<ZmmKernel<Vec, MR_, MC_, KC_, NC_>, typename Vec::T, MR_> {
  using T = typename Vec::T;
  using V = typename Vec::V;
  static constexpr int64_t MR = MR_, NR = 2 * Vec::W, MC = MC_, KC = KC_, NC = NC_;
  static constexpr bool kInPlaceA = true;

  template <class A>
  static void tile(int64_t kc, const A& a, const T* b, T* c, int64_t ldc, int64_t mr, int64_t nr,
                   bool overwrite) {
    for (int64_t i = 0; i < mr; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR - 1), _MM_HINT_T0);
    }
    V acc0[MR], acc1[MR];
#pragma GCC unroll 16
    for (int64_t i = 0; i < MR; ++i) acc0[i] = acc1[i] = Vec::zero();
    // Two steps per iteration: the loop's counter, compare and branch, which
    // can take FMA port slots, once per 56 FMAs instead of 28 (a tile in L1:
    // 182 -> 193 GFLOP/s; A read in place at lda 1600: 176 -> 182).
#pragma GCC unroll 2
    for (int64_t p = 0; p < kc; ++p, b += NR) {
      const V b0 = Vec::load(b), b1 = Vec::load(b + Vec::W);
#pragma GCC unroll 16
      for (int64_t i = 0; i < MR; ++i) {
        const V ai = Vec::broadcast(a.at(i, p));
        acc0[i] = Vec::fmadd(ai, b0, acc0[i]);
        acc1[i] = Vec::fmadd(ai, b1, acc1[i]);
      }
    }
    // Edge columns through masks: the same additions as a full tile's.
    const auto m0 = Vec::first(nr), m1 = Vec::first(nr - Vec::W > 0 ? nr - Vec::W : 0);
#pragma GCC unroll 16
    for (int64_t i = 0; i < MR; ++i) {
      if (i >= mr) break;
      T* row = c + i * ldc;
      if (nr == NR) {
        if (overwrite) {
          Vec::storeu(row, acc0[i]);
          Vec::storeu(row + Vec::W, acc1[i]);
        } else {
          Vec::storeu(row, Vec::add(Vec::loadu(row), acc0[i]));
          Vec::storeu(row + Vec::W, Vec::add(Vec::loadu(row + Vec::W), acc1[i]));
        }
      } else if (overwrite) {
        Vec::mask_storeu(row, m0, acc0[i]);
        Vec::mask_storeu(row + Vec::W, m1, acc1[i]);
      } else {
        Vec::mask_storeu(row, m0, Vec::add(Vec::maskz_loadu(m0, row), acc0[i]));
        Vec::mask_storeu(row + Vec::W, m1,
                         Vec::add(Vec::maskz_loadu(m1, row + Vec::W), acc1[i]));
      }
    }
  }
};

}  // namespace

// Sizes for a core with a 48 KiB L1 and a 2 MiB L2 (Sapphire Rapids; Zen 4
// and 5 have 32-48 KiB and 1 MiB). A packed A sliver (14 x kc floats, 14 KiB
// at kc = 256) stays in L1 while it runs over every B sliver of the panel
// (kc x NC, 1 MiB), which streams from L2 (kAOuter). The other way round --
// a B sliver (32 KiB) in L1, the A block (MC x kc, 280 KiB) streaming from
// L2 -- measured 4-6% slower at 1024^3 and 2048 x 1024 x 2048 (thread CPU
// time, alternated runs on a shared Sapphire Rapids); the conv shapes,
// which read A in place, are unchanged. Where the time goes at 1024^3: the
// kernel runs at 215-233 GFLOP/s on slivers in L1, about 220 with the A
// block from L2 and about 195 once its tiles load and store the real C
// (ldc = 1024); packing A and B takes about 5% of the product. kc = 512
// measured no better than 256 and would change the k blocks, and so the
// bits, that gemm_few_rows repeats; NC = 4096 with the A sliver outer
// sweeps a 4 MiB panel from L3, 10% slower. Software prefetch of the B
// slivers ahead of the FMAs measured 3-5% slower.
//
// With A packed along (csrc/gemm_impl.hpp), bench/gemm_accounting.cpp puts
// the kernel loop alone at 1024^3 at 11.7 ms of CPU time (load 4-5), to which
// the real C adds 0.55 ms, packing A along 0.47 (0.56 as a pass of its own:
// the overlap hides a fifth of it) and packing B 0.45. None of these fell
// with the following, each against this build alternated in one process
// (bench/gemm_ab.cpp; medians of 6-16 rounds; the same code against itself
// read 0.98-1.03):
//   - two or four k blocks per tile, the running sum kept in an MR x NR
//     buffer in L1 between them so that C is read and written once per span
//     (same additions, same bits), the panel narrowed to stay 1 MiB (NC
//     512 / 256): 0.96-0.99 / 0.95-0.98, as A is then packed n / NC times;
//     with the second panel's A packing left out (an upper bound) 1.00-1.02;
//   - the next B panel packed into a second buffer, rows between tiles: 0.98;
//   - the next tile's C prefetched a line every 4-8 steps of k, or the
//     tile's own 32-128 steps before its end, to L1 or L2: 0.95-0.99;
//   - the lines the next share of A packing reads, prefetched 1-4 shares
//     ahead: 0.99-1.015; B packed 4-16 rows per sliver at a time: as before;
//   - a 6 x 64 tile (the C tile over four L1 sets, not two): 1.01; 7 x 64
//     needs 33 registers: 0.93; the k loop unrolled by 4 or 8: 0.97 / 0.94;
//   - MC 560 or 1022: 0.99-1.01.
template <>
struct MicroKernel<float> : ZmmKernel<F32, 14, 280, 256, 1024> {
  static constexpr bool kAOuter = true;
  // A read in place keeps the B sliver outer and packs B over as many k
  // blocks as 4096 columns' worth, as before kAOuter (the conv shapes).
  static constexpr int64_t kDirectPanel = 4096 * 256;
  // Full slivers read across rows that are often a multiple of 4 KiB apart
  // (ld = 1024 floats): the generic loops read them one element at a time,
  // their rows share one L1 set and evict each other before the next
  // element of a line is read. Here each block of 16 steps of k is loaded as
  // vectors, every line read once, and transposed in registers.
  // A sliver: MR rows of a row-major A, element (i, p) to dst[p * MR + i].
  static void pack_a_rows(const float* src, int64_t lda, int64_t kc, float* dst) {
    static_assert(MR <= 16);
    constexpr __mmask16 kRows = __mmask16((1u << MR) - 1);
    for (int64_t p = 0; p < kc; p += 16) {
      const int64_t steps = kc - p < 16 ? kc - p : 16;
      __m512 r[16];
      load_transposed<MR>(src + p, lda, steps, r);
      float* out = dst + p * MR;
      for (int64_t q = 0; q < steps; ++q) _mm512_mask_storeu_ps(out + q * MR, kRows, r[q]);
    }
  }
  // B sliver: NR rows of B (columns of op(B)), element (j, p) to dst[p * NR + j].
  static void pack_b_cols(const float* src, int64_t ldb, int64_t kc, float* dst) {
    static_assert(NR == 32);
    for (int64_t p = 0; p < kc; p += 16) {
      const int64_t steps = kc - p < 16 ? kc - p : 16;
      __m512 lo[16], hi[16];
      load_transposed<16>(src + p, ldb, steps, lo);
      load_transposed<16>(src + 16 * ldb + p, ldb, steps, hi);
      float* out = dst + p * NR;
      for (int64_t q = 0; q < steps; ++q) {
        _mm512_storeu_ps(out + q * NR, lo[q]);
        _mm512_storeu_ps(out + q * NR + 16, hi[q]);
      }
    }
  }

 private:
  // r[q] = column q of the rows x `steps` block at src (row stride ld), q <
  // steps; rows past `rows` and steps past `steps` read as zero.
  template <int rows>
  static void load_transposed(const float* src, int64_t ld, int64_t steps, __m512 (&r)[16]) {
    const __mmask16 cols = F32::first(steps);
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i)
      r[i] = i < rows ? _mm512_maskz_loadu_ps(cols, src + i * ld) : _mm512_setzero_ps();
    __m512 t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 16; i += 2) {
      t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    // In each 128-bit lane l, u[4g + q] now holds column 4l + q of rows
    // 4g..4g+3; the lanes are then gathered across the four groups.
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {
      const __m512* s = t + 4 * g;
      u[4 * g + 0] = _mm512_shuffle_ps(s[0], s[2], 0x44);
      u[4 * g + 1] = _mm512_shuffle_ps(s[0], s[2], 0xEE);
      u[4 * g + 2] = _mm512_shuffle_ps(s[1], s[3], 0x44);
      u[4 * g + 3] = _mm512_shuffle_ps(s[1], s[3], 0xEE);
    }
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      const __m512 v0 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x88);
      const __m512 w0 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xDD);
      const __m512 v1 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0x88);
      const __m512 w1 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0xDD);
      r[q] = _mm512_shuffle_f32x4(v0, v1, 0x88);
      r[8 + q] = _mm512_shuffle_f32x4(v0, v1, 0xDD);
      r[4 + q] = _mm512_shuffle_f32x4(w0, w1, 0x88);
      r[12 + q] = _mm512_shuffle_f32x4(w0, w1, 0xDD);
    }
  }
};
// The same order for doubles: the A sliver (14 x 256, 28 KiB) in L1, a 1 MiB
// B panel in L2. Against the B sliver outer with NC = 2048: 1024^3 +5%,
// 2048 x 1024 x 2048 +8% (thread CPU time, alternated runs).
template <>
struct MicroKernel<double> : ZmmKernel<F64, 14, 140, 256, 512> {
  static constexpr bool kAOuter = true;
  static constexpr int64_t kDirectPanel = 2048 * 256;
};

template TileShape tile_shape<float>() noexcept;
template TileShape tile_shape<double>() noexcept;
template void compute<float>(const Operands<float>&, const Range&);
template void compute<double>(const Operands<double>&, const Range&);
template void pack_operand<float>(const Operands<float>&, int64_t, int64_t, int64_t, float*);
template void compute_skinny<float>(const Operands<float>&, int64_t, int64_t, int64_t);
template void pack_operand<double>(const Operands<double>&, int64_t, int64_t, int64_t, double*);
template void compute_skinny<double>(const Operands<double>&, int64_t, int64_t, int64_t);

}  // namespace cnnkit::gemm_impl::avx512

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
// and 5 have 32-48 KiB and 1 MiB): a B sliver (kc x 32 floats) is 32 KiB at
// kc = 256 and stays in L1 while the A block (MC x kc, 280 KiB) streams from
// L2; the B panel (kc x NC) sits in L2/L3. On a shared Sapphire Rapids, A
// blocks of 140-420 KiB measured within noise of each other (150-170
// GFLOP/s at 1024^3) and 840 KiB about 10% slower: a smaller block survives
// other processes' use of the L2 better. Prefetching the A sliver ahead of
// the FMAs measured no faster.
template <>
struct MicroKernel<float> : ZmmKernel<F32, 14, 280, 256, 4096> {};
template <>
struct MicroKernel<double> : ZmmKernel<F64, 14, 140, 256, 2048> {};

template TileShape tile_shape<float>() noexcept;
template TileShape tile_shape<double>() noexcept;
template void compute<float>(const Operands<float>&, const Range&);
template void compute<double>(const Operands<double>&, const Range&);
template void pack_operand<float>(const Operands<float>&, int64_t, int64_t, int64_t, float*);
template void compute_skinny<float>(const Operands<float>&, int64_t, int64_t, int64_t);
template void pack_operand<double>(const Operands<double>&, int64_t, int64_t, int64_t, double*);
template void compute_skinny<double>(const Operands<double>&, int64_t, int64_t, int64_t);

}  // namespace cnnkit::gemm_impl::avx512

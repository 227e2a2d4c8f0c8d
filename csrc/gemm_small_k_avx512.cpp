// The small-k GEMM's AVX-512 tiles (csrc/gemm_small_k.hpp); this file is
// compiled with -mavx512f/bw/vl/dq and -mfma.
#include <immintrin.h>

#define CNNKIT_SMALL_K_NS avx512
#include "gemm_small_k_impl.hpp"

namespace cnnkit::small_k::avx512 {

namespace {

struct F32 {
  using V = __m512;
  static constexpr int64_t W = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p) { return _mm512_load_ps(p); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
  // x where x > 0, else y.
  static V positive_or(V x, V y) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, zero(), _CMP_GT_OQ), y, x);
  }
  // The first `count` lanes (all when count >= W; none when count <= 0).
  static void store(float* p, V v, int64_t count) {
    if (count >= W) return _mm512_storeu_ps(p, v);
    if (count > 0) _mm512_mask_storeu_ps(p, __mmask16((1u << count) - 1), v);
  }
};

// 14 rows of one or two vectors (14 or 28 accumulators: the 14 independent
// FMA chains cover the FMA latency times its throughput), 8 rows of three
// (24 accumulators and 3 B vectors); bands of 56 rows (56 x 32 floats of A,
// 7 KiB, stay in L1 across the column blocks).
struct Shapes {
  static constexpr int kMR1 = 14, kMR2 = 14, kMR3 = 8;
  static constexpr int64_t kBand = 56;
};

}  // namespace

void rows(const Job& job, int64_t i0, int64_t i1) { rows_of<F32, Shapes>(job, i0, i1); }

int64_t row_step() noexcept { return Shapes::kBand; }

}  // namespace cnnkit::small_k::avx512

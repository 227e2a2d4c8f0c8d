// The small-k GEMM's AVX2 tiles (csrc/gemm_small_k.hpp); this file is
// compiled with -mavx2 -mfma.
#include <immintrin.h>

#define CNNKIT_SMALL_K_NS avx2
#include "gemm_small_k_impl.hpp"

namespace cnnkit::small_k::avx2 {

namespace {

struct F32 {
  using V = __m256;
  static constexpr int64_t W = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_load_ps(p); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  // x where x > 0, else y.
  static V positive_or(V x, V y) {
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, zero(), _CMP_GT_OQ));
  }
  // The first `count` lanes (all when count >= W; none when count <= 0).
  static void store(float* p, V v, int64_t count) {
    if (count >= W) return _mm256_storeu_ps(p, v);
    if (count <= 0) return;
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(int(count)), lanes), v);
  }
};

// 16 ymm registers: 12 rows of one vector (12 accumulators, the B vector
// and the broadcast) or 6 rows of two (12 + 2 + 1, the packed GEMM's tile);
// three vectors do not fit. Bands of 48 rows.
struct Shapes {
  static constexpr int kMR1 = 12, kMR2 = 6, kMR3 = 0;
  static constexpr int64_t kBand = 48;
};

}  // namespace

void rows(const Job& job, int64_t i0, int64_t i1) { rows_of<F32, Shapes>(job, i0, i1); }

int64_t row_step() noexcept { return Shapes::kBand; }

}  // namespace cnnkit::small_k::avx2

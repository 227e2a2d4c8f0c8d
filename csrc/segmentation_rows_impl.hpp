// The per-row arithmetic of felzenszwalb (Gaussian taps, edge weights),
// compiled once per instruction set: segmentation.cpp includes this with
// CNNKIT_ISA_NS=baseline, segmentation_avx2.cpp and segmentation_avx512.cpp
// with their flags. The loops run over contiguous doubles in a fixed order of
// operations and the build forbids FMA contraction, so every path gives the
// same bits (and the NumPy reference's).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace cnnkit::segmentation_impl {

#define CNNKIT_DECLARE_SEGMENTATION_ROWS(ns)                                                    \
  namespace ns {                                                                               \
  /* dst[i] = sum over t of taps[t] * src[t][i], i < len, accumulated from 0 in tap order. */ \
  void taps_sum(const double* const* src, const double* taps, int64_t n, int64_t len,         \
                double* dst);                                                                  \
  /* The colour distance of each edge of a row of w pixels of c channels to its right (x <   \
     w - 1) and, with next (the row below; may be null), down, down-right and up-right from   \
     below: sqrt of the squared differences summed over channels in order. scratch holds w c \
     doubles. */                                                                               \
  void row_weights(const double* row, const double* next, int64_t w, int64_t c, double* right, \
                   double* down, double* diag, double* anti, double* scratch);                 \
  }

CNNKIT_DECLARE_SEGMENTATION_ROWS(baseline)
CNNKIT_DECLARE_SEGMENTATION_ROWS(avx2)
CNNKIT_DECLARE_SEGMENTATION_ROWS(avx512)
#undef CNNKIT_DECLARE_SEGMENTATION_ROWS

#ifdef CNNKIT_ISA_NS
namespace CNNKIT_ISA_NS {

// Blocks of outputs stay in registers over all taps (four vectors): a pass
// per tap would load and store dst once per tap. Written with intrinsics
// because the compiler vectorised the blocked loop through gathers. Each
// output is still 0 + the products in tap order, multiply then add.
void taps_sum(const double* const* src, const double* taps, int64_t n, int64_t len,
              double* dst) {
  int64_t i0 = 0;
#if defined(__AVX512F__)
  for (; i0 + 32 <= len; i0 += 32) {
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t t = 0; t < n; ++t) {
      const double* s = src[t] + i0;
      const __m512d wt = _mm512_set1_pd(taps[t]);
      a0 = _mm512_add_pd(a0, _mm512_mul_pd(wt, _mm512_loadu_pd(s)));
      a1 = _mm512_add_pd(a1, _mm512_mul_pd(wt, _mm512_loadu_pd(s + 8)));
      a2 = _mm512_add_pd(a2, _mm512_mul_pd(wt, _mm512_loadu_pd(s + 16)));
      a3 = _mm512_add_pd(a3, _mm512_mul_pd(wt, _mm512_loadu_pd(s + 24)));
    }
    _mm512_storeu_pd(dst + i0, a0);
    _mm512_storeu_pd(dst + i0 + 8, a1);
    _mm512_storeu_pd(dst + i0 + 16, a2);
    _mm512_storeu_pd(dst + i0 + 24, a3);
  }
#elif defined(__AVX2__)
  for (; i0 + 16 <= len; i0 += 16) {
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t t = 0; t < n; ++t) {
      const double* s = src[t] + i0;
      const __m256d wt = _mm256_set1_pd(taps[t]);
      a0 = _mm256_add_pd(a0, _mm256_mul_pd(wt, _mm256_loadu_pd(s)));
      a1 = _mm256_add_pd(a1, _mm256_mul_pd(wt, _mm256_loadu_pd(s + 4)));
      a2 = _mm256_add_pd(a2, _mm256_mul_pd(wt, _mm256_loadu_pd(s + 8)));
      a3 = _mm256_add_pd(a3, _mm256_mul_pd(wt, _mm256_loadu_pd(s + 12)));
    }
    _mm256_storeu_pd(dst + i0, a0);
    _mm256_storeu_pd(dst + i0 + 4, a1);
    _mm256_storeu_pd(dst + i0 + 8, a2);
    _mm256_storeu_pd(dst + i0 + 12, a3);
  }
#endif
  for (int64_t i = i0; i < len; ++i) dst[i] = 0.0;
  for (int64_t t = 0; t < n; ++t) {
    const double* s = src[t];
    const double wt = taps[t];
    for (int64_t i = i0; i < len; ++i) dst[i] += wt * s[i];
  }
}

namespace {

// The square roots of non-negative sums, as vectors: std::sqrt stays scalar
// (the compiler keeps errno's case), and vector and scalar square roots are
// both correctly rounded, so the bits are the same.
inline void sqrt_in_place(double* v, int64_t count) {
  int64_t x = 0;
#if defined(__AVX512F__)
  for (; x + 8 <= count; x += 8) _mm512_storeu_pd(v + x, _mm512_sqrt_pd(_mm512_loadu_pd(v + x)));
#elif defined(__AVX2__)
  for (; x + 4 <= count; x += 4) _mm256_storeu_pd(v + x, _mm256_sqrt_pd(_mm256_loadu_pd(v + x)));
#elif defined(__SSE2__)
  for (; x + 2 <= count; x += 2) _mm_storeu_pd(v + x, _mm_sqrt_pd(_mm_loadu_pd(v + x)));
#endif
  for (; x < count; ++x) v[x] = std::sqrt(v[x]);
}

// out[x] = sqrt(sum over k of (a[x c + k] - b[x c + k])^2), x < count: the
// squares over the interleaved channels first (one contiguous loop), then
// the sums per pixel, with the common channel counts unrolled so that the
// compiler sees the stride.
void distances(const double* a, const double* b, int64_t count, int64_t c, double* sq,
               double* out) {
  const int64_t len = count * c;
  for (int64_t i = 0; i < len; ++i) {
    const double d = a[i] - b[i];
    sq[i] = d * d;
  }
  if (c == 3) {
    for (int64_t x = 0; x < count; ++x) out[x] = sq[3 * x] + sq[3 * x + 1] + sq[3 * x + 2];
  } else if (c == 1) {
    for (int64_t x = 0; x < count; ++x) out[x] = sq[x];
  } else {
    for (int64_t x = 0; x < count; ++x) {
      double s = 0.0;
      for (int64_t k = 0; k < c; ++k) s += sq[x * c + k];
      out[x] = s;
    }
  }
  sqrt_in_place(out, count);
}

}  // namespace

void row_weights(const double* row, const double* next, int64_t w, int64_t c, double* right,
                 double* down, double* diag, double* anti, double* scratch) {
  distances(row + c, row, w - 1, c, scratch, right);
  if (next == nullptr) return;
  distances(next, row, w, c, scratch, down);
  distances(next + c, row, w - 1, c, scratch, diag);
  distances(next, row + c, w - 1, c, scratch, anti);
}

}  // namespace CNNKIT_ISA_NS
#endif  // CNNKIT_ISA_NS

}  // namespace cnnkit::segmentation_impl

// The per-row arithmetic of felzenszwalb (Gaussian taps, edge weights),
// compiled once per instruction set: segmentation.cpp includes this with
// CNNKIT_ISA_NS=baseline, segmentation_avx2.cpp and segmentation_avx512.cpp
// with their flags. The loops run over contiguous doubles in a fixed order of
// operations and the build forbids FMA contraction, so every path gives the
// same bits (and the NumPy reference's).
#pragma once

#include <cmath>
#include <cstdint>

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

void taps_sum(const double* const* src, const double* taps, int64_t n, int64_t len,
              double* dst) {
  for (int64_t i = 0; i < len; ++i) dst[i] = 0.0;
  for (int64_t t = 0; t < n; ++t) {
    const double* s = src[t];
    const double wt = taps[t];
    for (int64_t i = 0; i < len; ++i) dst[i] += wt * s[i];
  }
}

namespace {

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
    for (int64_t x = 0; x < count; ++x)
      out[x] = std::sqrt(sq[3 * x] + sq[3 * x + 1] + sq[3 * x + 2]);
  } else if (c == 1) {
    for (int64_t x = 0; x < count; ++x) out[x] = std::sqrt(sq[x]);
  } else {
    for (int64_t x = 0; x < count; ++x) {
      double s = 0.0;
      for (int64_t k = 0; k < c; ++k) s += sq[x * c + k];
      out[x] = std::sqrt(s);
    }
  }
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

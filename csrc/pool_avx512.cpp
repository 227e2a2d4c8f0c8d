// The pooling loops for CPUs with AVX-512 (this file is compiled with
// -mavx512f/bw/vl/dq, -mfma and a preference for 512-bit vectors).
#define CNNKIT_ISA_NS avx512
#include "pool_impl.hpp"

#include <immintrin.h>

namespace cnnkit::pool_impl::avx512 {

namespace {

// One window's maximum over channels [c0, c0 + 16 V), held in V registers;
// `mask` gives each vector's lanes (past `channels`, none). Row-major window
// order and max_into's two steps: m = v > a ? v : a (MAXPS), then a NaN in v
// replaces it.
template <int V>
inline void window_max(const float* const* rows, int64_t nrows, int64_t j0, int64_t j1,
                       int64_t ldx, int64_t c0, const __mmask16* mask, float* out) {
  __m512 acc[V];
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v) acc[v] = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t r = 0; r < nrows; ++r)
    for (int64_t j = j0; j < j1; ++j) {
      const float* at = rows[r] + j * ldx + c0;
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) {
        const __m512 x = _mm512_maskz_loadu_ps(mask[v], at + 16 * v);
        acc[v] = _mm512_mask_mov_ps(_mm512_max_ps(x, acc[v]),
                                    _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
      }
    }
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v) _mm512_mask_storeu_ps(out + c0 + 16 * v, mask[v], acc[v]);
}

}  // namespace

void max_pool_line(const float* const* rows, int64_t nrows, int64_t width, int64_t channels,
                   int64_t ldx, int64_t kw, int64_t sw, int64_t pad, int64_t count, float* y,
                   int64_t ldy) {
  // Each window whole, all its channels, before the next: the window's
  // elements are read as contiguous runs (a channel block at a time over the
  // whole row read VGG's 2x2 windows of 128 channels 1.2x slower).
  const int64_t full = channels / 64 * 64, left = channels - full;
  const int tail = int((left + 15) / 16);
  const __mmask16 all[4] = {0xffff, 0xffff, 0xffff, 0xffff};
  __mmask16 some[4];
  for (int v = 0; v < 4; ++v)
    some[v] = __mmask16((uint32_t(1) << std::clamp<int64_t>(left - 16 * v, 0, 16)) - 1);
  for (int64_t q = 0; q < count; ++q) {
    const int64_t start = q * sw - pad;
    const int64_t j0 = std::max<int64_t>(start, 0), j1 = std::min(start + kw, width);
    float* out = y + q * ldy;
    for (int64_t c0 = 0; c0 < full; c0 += 64) window_max<4>(rows, nrows, j0, j1, ldx, c0, all, out);
    if (tail == 4) window_max<4>(rows, nrows, j0, j1, ldx, full, some, out);
    if (tail == 3) window_max<3>(rows, nrows, j0, j1, ldx, full, some, out);
    if (tail == 2) window_max<2>(rows, nrows, j0, j1, ldx, full, some, out);
    if (tail == 1) window_max<1>(rows, nrows, j0, j1, ldx, full, some, out);
  }
}

}  // namespace cnnkit::pool_impl::avx512

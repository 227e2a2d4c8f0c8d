#include "gemm_small_k.hpp"

#include <omp.h>

#include <algorithm>

#include "cpu.hpp"
#include "gemm_small_k_impl.hpp"
#include "parallel.hpp"

namespace cnnkit {

#if defined(CNNKIT_HAVE_AVX512) || defined(CNNKIT_HAVE_AVX2)
namespace {

// Multiply-adds per thread below which a product stays on one thread.
constexpr int64_t kMinWorkPerThread = int64_t(1) << 18;

int64_t padded(int64_t n) { return (n + 15) / 16 * 16; }

}  // namespace
#endif

bool gemm_small_k_applies(int64_t m, int64_t n, int64_t k,
                          const Epilogue<float>* epilogue) noexcept {
#if defined(CNNKIT_HAVE_AVX512) || defined(CNNKIT_HAVE_AVX2)
  const Isa isa = active_isa();
  if (isa != Isa::avx512 && isa != Isa::avx2) return false;
  if (epilogue && epilogue->activation == Activation::sigmoid) return false;
  return m >= small_k::kMinRows && k >= 1 && k <= small_k::kMaxK && n >= 1 &&
         n <= small_k::kMaxN && k * padded(n) <= small_k::kMaxPanel;
#else
  (void)m, (void)n, (void)k, (void)epilogue;
  return false;
#endif
}

void gemm_small_k(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, bool trans_b,
                  const float* b, int64_t ldb, float* c, int64_t ldc,
                  const Epilogue<float>* epilogue) {
#if defined(CNNKIT_HAVE_AVX512) || defined(CNNKIT_HAVE_AVX2)
  // op(B) and the bias zero-padded to whole vectors, aligned: the tiles
  // read them with aligned loads and no masks.
  alignas(64) float panel[small_k::kMaxPanel];
  alignas(64) float bias[small_k::kMaxN];
  const int64_t ldp = padded(n);
  for (int64_t p = 0; p < k; ++p) {
    float* row = panel + p * ldp;
    if (!trans_b) std::copy(b + p * ldb, b + p * ldb + n, row);
    std::fill(row + n, row + ldp, 0.0f);
  }
  // B's rows read in order, each scattered down a column of the panel: both
  // fit in L1, and the reads, not the writes, are what the prefetchers follow.
  for (int64_t j = 0; j < n && trans_b; ++j)
    for (int64_t p = 0; p < k; ++p) panel[p * ldp + j] = b[j * ldb + p];
  const bool has_bias = epilogue && epilogue->bias;
  if (has_bias) {
    std::copy(epilogue->bias, epilogue->bias + n, bias);
    std::fill(bias + n, bias + ldp, 0.0f);
  }
  const small_k::Job job{n,   k, a, lda, panel, ldp, has_bias ? bias : nullptr,
                         c,   ldc,
                         epilogue ? epilogue->activation : Activation::none,
                         epilogue ? epilogue->negative_slope : 0.0f, m};
  auto rows = &small_k::avx2::rows;
  int64_t step = small_k::avx2::row_step();
#ifdef CNNKIT_HAVE_AVX512
  if (active_isa() == Isa::avx512) {
    rows = &small_k::avx512::rows;
    step = small_k::avx512::row_step();
  }
#endif
  // Bands of whole `step`s of rows, one per thread: every element's sum is
  // the same whichever band it falls in.
  const int64_t steps = (m + step - 1) / step;
  const int nt = int(std::min<int64_t>(steps, threads_for(m * n * k, kMinWorkPerThread)));
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int64_t parts = omp_get_num_threads(), part = omp_get_thread_num();
    const int64_t i0 = std::min(m, steps * part / parts * step);
    const int64_t i1 = std::min(m, steps * (part + 1) / parts * step);
    if (i0 < i1) rows(job, i0, i1);
  }
#else
  (void)m, (void)n, (void)k, (void)a, (void)lda, (void)trans_b, (void)b, (void)ldb, (void)c,
      (void)ldc, (void)epilogue;
#endif
}

}  // namespace cnnkit

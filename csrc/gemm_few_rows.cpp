#include "gemm_few_rows.hpp"

#include <omp.h>

#include <algorithm>
#include <type_traits>

#include "cpu.hpp"
#include "gemm_few_rows_impl.hpp"
#include "parallel.hpp"

namespace cnnkit {

namespace {

// csrc/gemm_avx512.cpp's float k block (MicroKernel<float>::KC) and
// gemm_impl::k_block's rule: blocks of near-equal length no longer than it.
constexpr int64_t kBlockMax = 256;

// The fewest rows a thread takes when threads share the rows (split_rows).
constexpr int64_t kMinBand = 48;
// The least k for which banded_applies takes a product from the packed GEMM:
// the smallest measured (1152), rounded down.
constexpr int64_t kMinBandedK = 1024;
// The weights from which split_rows wants m >= n. Not kLargeB (2 MiB): that
// sent ResNet-18's 14 x 14 x 256 3x3 (2.4 MB of weights) and AlexNet's conv4
// and conv5 (3.5 and 2.4 MB) back to columns, where the measurements below
// had them slower. Two threads, wall, columns and rows alternated 30 times
// in one process (300 calls each), three runs, load 4.3-4.5, best ms of each
// run / median of the two runs not held up by a descheduled thread: 196 x
// 2304 x 256 0.75-0.79 / 0.89 -> 0.73 / 0.79-0.83, AlexNet's conv4
// (169 x 3456 x 256) 0.99-1.02 / 1.15-1.16 -> 0.95 / 1.04-1.08, conv5 0.65-0.67
// / 0.76 -> 0.65 / 0.70-0.71. The next larger few-row weights at batch 1 or
// 8, ResNet-18's layer4.0.conv1 (4.7 MB), stay on columns.
constexpr int64_t kRowsLargeB = int64_t(4) << 20;
// Multiply-adds per thread below which a product stays on one thread.
constexpr int64_t kMinWorkPerThread = int64_t(1) << 18;

int64_t k_block(int64_t k) {
  const int64_t blocks = (k + kBlockMax - 1) / kBlockMax;
  return (k + blocks - 1) / blocks;
}

// Whether a k x n float B has `bytes` bytes or more.
bool b_at_least(int64_t n, int64_t k, int64_t bytes) {
  // k * n * sizeof(float) >= bytes, by a division: k * n may overflow.
  const int64_t elements = bytes / int64_t(sizeof(float));
  return k >= (elements + n - 1) / n;
}

// Whether a k x n float B has kLargeB bytes or more.
bool large_b(int64_t n, int64_t k) { return b_at_least(n, k, few_rows::kLargeB); }

// Whether `threads` threads share the rows of an m x n product rather than
// its columns. Sharing columns, each thread gathers the whole A (a
// convolution's patches) for its part of B; sharing rows, each gathers its
// band of A and reads all of B, which the other core's reads have often
// brought into the shared L3. Rows pay where A is not much the smaller
// operand. Two threads, wall, A/B alternated 40 times in one process, load
// ~1.6, median ms columns -> rows: ResNet-18's 14 x 14 x 256 3x3 (196 x
// 2304 x 256) 0.85 -> 0.70, its 3x3/2 into it 0.46 -> 0.39, AlexNet's conv4
// (169 x 3456 x 256) 1.09 -> 0.90, conv5 0.70 -> 0.65, conv3 (169 x 1728 x
// 384) 0.71 -> 0.71; but ResNet-18's 7 x 7 x 512 3x3 (49 x 4608 x 512) 0.99
// -> 1.06 with bands of 25 rows, each thread then streaming 9.4 MB of
// weights for 25 rows. With large weights (kRowsLargeB or more, which each
// thread then streams whole) only where m >= n: load ~3-4, best of 15
// (medians too noisy to read), VGG-16's 28 x 28 x 512 3x3 at batch 1 (784 x
// 4608 x 512) 12.5 -> 11.6, 28 x 28 x 256 -> 512 6.2 -> 5.9; ResNet-18's 7 x
// 7 x 512 3x3 at batch 8 (392 rows) 6.4 -> 5.9 in one process, but 4.66 ->
// 4.90 against main's build in another: columns there, as before. Rows from
// m >= n / 3 (it was n / 2), where they still measured 4-5% faster (two
// threads, wall, alternated 30 times in one process, 300 calls each, three
// runs at load 3.7, best / median ms): AlexNet's conv3 (169 x 1728 x 384)
// 0.72 / 0.77-0.78 -> 0.69 / 0.73-0.74, 1x1 convs on 14 x 14 maps 196 x 1024
// x 512 0.65-0.66 / 0.70-0.71 -> 0.63 / 0.67, 196 x 512 x 512 0.33 / 0.35 ->
// 0.31 / 0.34.
bool split_rows(int64_t m, int64_t n, int64_t k, int threads) {
  return n <= few_rows::kMaxColumns && 3 * m >= n && (m >= n || !b_at_least(n, k, kRowsLargeB)) &&
         m >= int64_t(threads) * kMinBand;
}

// Whether a product the packed GEMM would take runs here on bands of rows
// at `threads` threads: up to kMaxRowsLargeB rows, k of at least
// kMinBandedK. AlexNet's conv2 at batch 1 (729 x 1600 x 192), two threads,
// wall, A/B alternated 30 times, load ~2.5: 1.64 ms packed, 1.47 here
// (best 1.44 and 1.33); ResNet-18's 28 x 28 x 128 3x3 without Winograd
// (784 x 1152 x 128) 0.75 and 0.74. At one thread, the packed path as
// before: 2.86 against 2.89, and 1.44 against 1.52.
bool banded_applies(int64_t m, int64_t n, int64_t k, int threads) {
  return threads > 1 && m <= few_rows::kMaxRowsLargeB && k >= kMinBandedK &&
         split_rows(m, n, k, threads);
}

}  // namespace

template <class T>
bool gemm_few_rows_implicit_applies(int64_t m, int64_t n, int64_t k) noexcept {
  if (gemm_few_rows_applies<T>(m, n, k)) return true;
#ifdef CNNKIT_HAVE_AVX512
  return std::is_same_v<T, float> && active_isa() == Isa::avx512 && m >= 1 &&
         m <= few_rows::kMaxRowsLargeB && n >= 1 && n <= few_rows::kMaxColumns && k >= 1;
#else
  return false;
#endif
}

template <class T>
bool gemm_few_rows_applies(int64_t m, int64_t n, int64_t k) noexcept {
#ifdef CNNKIT_HAVE_AVX512
  if (!std::is_same_v<T, float> || active_isa() != Isa::avx512 || m < 1 || n < 1 || k < 1)
    return false;
  // Wider B only in the range measured (gemm_few_rows.hpp's kMinRowsWide).
  if (n > few_rows::kMaxColumns) return m >= few_rows::kMinRowsWide && m <= few_rows::kMaxRows;
  if (m <= (large_b(n, k) ? few_rows::kMaxRowsLargeB : few_rows::kMaxRows)) return true;
  return banded_applies(m, n, k, threads_for(m * n * k, kMinWorkPerThread));
#else
  (void)m, (void)n, (void)k;
  return false;
#endif
}

namespace {

template <class T>
void few_rows_product(bool threaded, int64_t m, int64_t n, int64_t k, const FewRowsA<T>& a,
                      const T* b, int64_t ldb, T* c, int64_t ldc, const Epilogue<T>* epilogue) {
#ifdef CNNKIT_HAVE_AVX512
  if constexpr (std::is_same_v<T, float>) {
    // Threads share the columns in chunks of at most kColumns: a chunk's
    // packed k block (256 x 512 floats, 512 KiB) stays in L2.
    constexpr int64_t kColumns = 512, kPanel = 32;
    const int64_t panels = (n + kPanel - 1) / kPanel, kc = k_block(k);
    const int want = threaded ? threads_for(m * n * k, kMinWorkPerThread) : 1;
    // The epilogue goes into the tiles' last stores, except sigmoid (the C
    // library's exp, applied in a pass after).
    const bool fused = epilogue && epilogue->activation != Activation::sigmoid;
    const auto finish = [&](T* at, int64_t j0, int64_t rows, int64_t w) {
      if (!epilogue || fused) return;
      Epilogue<T> ep = *epilogue;
      if (ep.bias) ep.bias += j0;
      apply_epilogue(ep, at, ldc, rows, w);
    };
    // Patches read in place are not gathered once per thread, so sharing
    // the columns costs nothing but the share of B each thread packs: they
    // go by columns while each thread gets four panels or more, and each
    // thread streams its part of B once (by rows, each streams all of B).
    // With two panels each (ResNet-18's 56 x 56 x 64 -> 128 3x3/2 at batch 1)
    // a thread's half of the columns took 0.33-0.34 ms, its band of rows
    // 0.31-0.32.
    // One thread's share at two threads, run alone (one thread, CPU time,
    // load ~3, three runs, ms), main's band of rows -> this half of the
    // columns: ResNet-18's 14 x 14 x 256 3x3 at batch 1 0.71-0.76 -> 0.68-0.70,
    // its 3x3/2 into 14 x 14 x 256 0.29-0.32 -> 0.28-0.31, AlexNet's conv3
    // (169 x 1728 x 384) 0.69 -> 0.58-0.60 and conv4 0.89-0.98 -> 0.78-0.80.
    const bool by_columns = a.implicit && n >= 4 * kPanel * want;
    if (want > 1 && !by_columns && split_rows(m, n, k, want)) {
      // Bands of rows, all columns each (n <= kMaxColumns: one chunk); of
      // whole output rows for patches read in place. Each element's sums do
      // not depend on the band, so the bits are those of one thread.
      const int64_t unit = a.implicit ? a.implicit->out_w : 1, units = m / unit;
#pragma omp parallel for schedule(static) num_threads(want)
      for (int64_t t = 0; t < want; ++t) {
        const int64_t i0 = unit * (units * t / want), i1 = unit * (units * (t + 1) / want);
        if (i0 == i1) continue;
        FewRowsA<T> band = a;
        if (a.fill || a.implicit) band.row0 = a.row0 + i0;
        else band.data = a.data + i0 * a.ld;
        few_rows::avx512::columns(i1 - i0, k, kc, band, b, ldb, c + i0 * ldc, ldc, n,
                                  fused ? epilogue : nullptr, nullptr, 0);
        finish(c + i0 * ldc, 0, i1 - i0, n);
      }
      return;
    }
    // Chunks of near-equal width, a multiple of the threads' count of them,
    // each thread a run of consecutive ones: 40 panels at two threads are
    // 4 x 10, not 16 + 16 + 8 (two chunks for one thread, one for the
    // other). A thread prefetches its next chunk's first block during the
    // last block of the one before, so only its first comes from memory
    // unhidden.
    const int64_t most = kColumns / kPanel;
    const int64_t chunks0 = ((panels + most - 1) / most + want - 1) / want * want;
    const int64_t per = (panels + chunks0 - 1) / chunks0, chunks = (panels + per - 1) / per;
    const int nt = static_cast<int>(std::min<int64_t>(chunks, want));
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t t = 0; t < nt; ++t) {
      const int64_t s1 = chunks * (t + 1) / nt;
      for (int64_t s = chunks * t / nt; s < s1; ++s) {
        const int64_t j0 = s * per * kPanel, w = std::min(per * kPanel, n - j0);
        const int64_t j1 = j0 + w, next_w = s + 1 < s1 ? std::min(per * kPanel, n - j1) : 0;
        Epilogue<T> ep;
        if (fused) {
          ep = *epilogue;
          if (ep.bias) ep.bias += j0;
        }
        few_rows::avx512::columns(m, k, kc, a, b + j0, ldb, c + j0, ldc, w,
                                  fused ? &ep : nullptr, next_w > 0 ? b + j1 : nullptr, next_w);
        finish(c + j0, j0, m, w);
      }
    }
    return;
  }
#endif
  (void)m, (void)n, (void)k, (void)a, (void)b, (void)ldb, (void)c, (void)ldc,
      (void)epilogue;
}

}  // namespace

template <class T>
void gemm_few_rows(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
                   int64_t ldb, T* c, int64_t ldc, const Epilogue<T>* epilogue) {
  few_rows_product(true, m, n, k, FewRowsA<T>{a, lda}, b, ldb, c, ldc, epilogue);
}

template <class T>
void gemm_few_rows(int64_t m, int64_t n, int64_t k, const FewRowsA<T>& a, const T* b, int64_t ldb,
                   T* c, int64_t ldc, const Epilogue<T>* epilogue) {
  few_rows_product(true, m, n, k, a, b, ldb, c, ldc, epilogue);
}

template <class T>
void gemm_few_rows_serial(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
                          int64_t ldb, T* c, int64_t ldc, const Epilogue<T>* epilogue) {
  few_rows_product(false, m, n, k, FewRowsA<T>{a, lda}, b, ldb, c, ldc, epilogue);
}

#define CNNKIT_INSTANTIATE(T)                                                                   \
  template bool gemm_few_rows_applies<T>(int64_t, int64_t, int64_t) noexcept;                  \
  template bool gemm_few_rows_implicit_applies<T>(int64_t, int64_t, int64_t) noexcept;         \
  template void gemm_few_rows<T>(int64_t, int64_t, int64_t, const T*, int64_t, const T*, int64_t, \
                                 T*, int64_t, const Epilogue<T>*);                             \
  template void gemm_few_rows_serial<T>(int64_t, int64_t, int64_t, const T*, int64_t, const T*,   \
                                        int64_t, T*, int64_t, const Epilogue<T>*);               \
  template void gemm_few_rows<T>(int64_t, int64_t, int64_t, const FewRowsA<T>&, const T*, int64_t, \
                                 T*, int64_t, const Epilogue<T>*);
CNNKIT_INSTANTIATE(float)
CNNKIT_INSTANTIATE(double)
#undef CNNKIT_INSTANTIATE

}  // namespace cnnkit

// C = A B for products with many rows and a short, narrow B: the 1x1
// convolutions of MobileNet-style networks (12544 x 32 times 32 x 16,
// 12544 x 16 times 16 x 96, 3136 x 24 times 24 x 144), float on the AVX2 and
// AVX-512 paths.
//
// Why: on these shapes the packed GEMM (csrc/gemm.hpp) spends as long on
// its fixed costs as on the multiply-adds -- packing B on every call, a 32
// column register tile of which N = 16 or 24 fills half or three quarters,
// 128-column weight slices (N = 144 becomes 128 + a half-empty 16), a k loop
// of 16-32 steps between the tile's set-up and its store, and the bias and
// activation applied in a second loop over the stored tile. Here A (the
// NHWC activations, whose rows are contiguous) is read in place, B is
// copied once per call into a zero-padded panel of at most kMaxPanel floats
// that stays in L1, the register tile's width follows N (AVX-512: 16, 32 or
// 48 columns, 14 or 8 rows; AVX2: 8 or 16 columns, 12 or 6 rows), and the
// bias and activation are applied in registers before the one store. Bands
// of 56 (48) rows of A stay in L1 while every column block runs over them.
//
// Measured (conv 1x1, batch 1, one thread, CPU time, medians of 200 calls,
// four runs alternated with main's build, load ~4.5; ms, main -> here):
// MobileNet v2's 112 x 112 x 32 -> 16 0.21 -> 0.10, 112 x 112 x 16 -> 96
// with relu6 0.61 -> 0.33, 56 x 56 x 96 -> 24 0.12 -> 0.11, 56 x 56 x 24 ->
// 144 0.25 -> 0.145, 56 x 56 x 144 -> 24 0.18 -> 0.165, 28 x 28 x 32 -> 192
// 0.09 -> 0.06; the forced AVX2 path 1.2-1.8x as fast on the same shapes.
//
// Bits: the packed GEMM's on the same path. For k <= 256 (its k block on
// every path) that GEMM sums each element's products by FMA from zero in
// increasing p, stores the sum, then adds the bias and applies the
// activation (gemm_impl::finish_tile); this path does the same operations
// in the same order, so conv and matmul give the same bits whether or not
// they come here, and the thread count (threads share bands of rows)
// changes nothing. tests/test_gemm_small_k.py checks the equality.
#pragma once

#include <cstdint>

#include "gemm.hpp"

namespace cnnkit {

namespace small_k {
// The longest k taken: one k block of the packed GEMM, so that the bits
// stay its own (see above).
constexpr int64_t kMaxK = 256;
// The widest B taken, and the most elements of the panel (k x n, n rounded
// up to 16): 32 KiB, which stays in L1 beside a band of A. Every shape
// measured inside these bounds was faster than the packed path: conv 1x1
// with bias and relu6, one thread, CPU time, medians of 200 calls, two runs
// each, load ~2.7, main's packed path -> here (ms): 3136 x 32 -> 256 0.57
// -> 0.38, 64 -> 128 0.43 -> 0.33, 128 -> 64 0.37 -> 0.33, 256 -> 32 0.35
// -> 0.33, 192 -> 32 0.27 -> 0.25, 144 -> 24 0.19 -> 0.18; 1024 x 16 -> 256
// 0.12 -> 0.07.
constexpr int64_t kMaxN = 256;
constexpr int64_t kMaxPanel = 8192;
// The fewest rows taken: one more than the few-row path's (csrc/
// gemm_few_rows.hpp, AVX-512). From there up it measured faster too: 300 x
// 32 -> 64 0.015 -> 0.012 ms, 512 x 64 -> 64 0.037 -> 0.029, 784 x 32 ->
// 192 0.095 -> 0.065, 784 x 24 -> 144 0.064 -> 0.039 (as above).
constexpr int64_t kMinRows = 257;
}  // namespace small_k

// Whether gemm_small_k takes an m x k times k x n float product on the
// active instruction-set path (AVX2 or AVX-512) with this epilogue (not
// sigmoid, whose exp stays in the packed path's scalar loop).
bool gemm_small_k_applies(int64_t m, int64_t n, int64_t k,
                          const Epilogue<float>* epilogue) noexcept;

// C (m x n, row stride ldc) = A (m x k, row stride lda) op(B), then the
// epilogue if not null; op(B) is k x n, B stored k x n (ldb >= n) or, with
// trans_b, n x k (ldb >= k). Only where gemm_small_k_applies. Threads: up
// to num_threads(), over bands of rows. C must not overlap A or B.
void gemm_small_k(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, bool trans_b,
                  const float* b, int64_t ldb, float* c, int64_t ldc,
                  const Epilogue<float>* epilogue);

}  // namespace cnnkit

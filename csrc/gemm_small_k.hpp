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
// copied once per call into a zero-padded panel of at most kMaxK x kMaxN
// floats that stays in L1, the register tile's width follows N (16, 32 or
// 48 columns), and the bias and activation are applied in registers before
// the one store.
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
// stay its own (see above). Beyond about 32 the packed path's fixed costs
// are a small part of its time anyway; kMaxK bounds the B panel.
constexpr int64_t kMaxK = 256;
// The widest B taken: the panel (kMaxK x kMaxN floats at most, but in
// practice k x n with k * n <= kMaxPanel) stays in L1.
constexpr int64_t kMaxN = 256;
constexpr int64_t kMaxPanel = 8192;
// The fewest rows taken: below, the few-row and packed paths' costs are
// per call, not per row, and the measurements were on large m.
constexpr int64_t kMinRows = 257;
}  // namespace small_k

// Whether gemm_small_k takes an m x k times k x n float product on the
// active instruction-set path (AVX2 or AVX-512) with this epilogue (not
// sigmoid, whose exp stays in the packed path's scalar loop).
bool gemm_small_k_applies(int64_t m, int64_t n, int64_t k, const Epilogue<float>* epilogue) noexcept;

// C (m x n, row stride ldc) = A (m x k, row stride lda) op(B), then the
// epilogue if not null; op(B) is k x n, B stored k x n (ldb >= n) or, with
// trans_b, n x k (ldb >= k). Only where gemm_small_k_applies. Threads: up
// to num_threads(), over bands of rows. C must not overlap A or B.
void gemm_small_k(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, bool trans_b,
                  const float* b, int64_t ldb, float* c, int64_t ldc,
                  const Epilogue<float>* epilogue);

}  // namespace cnnkit

// C = A B for products with few rows (batch-1 inference: 49 or 196 rows of
// patches against 2304-4608 x 256-512 weights), B read in place, row-major.
//
// Why: at batch 1 the deep layers' weights are far larger than their
// products' other operands, so the product is bound by how often the weights
// cross the memory bus. The packed GEMM (csrc/gemm.hpp) reads them to pack
// them, or -- with csrc/conv_weight_cache.hpp -- reads them and a copy to
// prove the packed copy current, then the packed copy: three streams where
// one would do. Here each column panel of B (64 columns) is streamed once, k
// block by k block, with software prefetch a few rows ahead (its rows are
// ldb apart, a stride the hardware prefetchers follow poorly), and every row
// tile of A reuses the block from L2.
//
// Bits: the same as gemm() on the AVX-512 path, whose float k blocks
// (csrc/gemm_avx512.cpp, kc = 256) this file repeats: each block's products
// summed by FMA from zero in increasing p, the block sums added to C in
// increasing block order, then csrc/gemm.hpp's epilogue. So conv and matmul
// keep their bits whether or not they come through here, and the thread count
// (threads share the column panels) changes nothing.
// tests/test_conv_few_rows.py checks the equality against the packed path.
#pragma once

#include <cstdint>

#include "gemm.hpp"

namespace cnnkit {

// Whether gemm_few_rows takes an m x k times k x n product of element type T
// on the active instruction-set path: float on AVX-512, 1 <= m <= kMaxRows,
// k >= 1, n >= 1.
template <class T>
bool gemm_few_rows_applies(int64_t m, int64_t n, int64_t k) noexcept;

// C (m x n, row stride ldc) = A (m x k, lda) B (k x n, ldb), all row-major,
// then the epilogue if not null. Only where gemm_few_rows_applies; threads:
// up to num_threads(), over 64-column panels. C must not overlap A or B.
template <class T>
void gemm_few_rows(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
                   int64_t ldb, T* c, int64_t ldc, const Epilogue<T>* epilogue);

namespace few_rows {
// The most rows the path takes: beyond, the packed GEMM's 14 x 32 register
// tile and L1-resident slivers are faster (measured in gemm_few_rows.cpp).
constexpr int64_t kMaxRows = 256;
}  // namespace few_rows

}  // namespace cnnkit

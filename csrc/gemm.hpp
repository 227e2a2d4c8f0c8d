// General matrix multiply (GEMM) for float and double, row-major.
//
// Why hand-written rather than borrowed: GEMM is the inner loop of every
// convolution and dense layer in cnnkit, so it is part of the product, not a
// utility. Linking a BLAS would add a run-time dependency (NumPy's bundled
// OpenBLAS is private to NumPy and offers no C API we can rely on), and no
// BLAS gives the guarantees the kernels need: results bit-identical whatever
// the thread count, a single-threaded entry point that is safe inside our own
// OpenMP regions (no second thread pool competing with ours), and the same
// run-time ISA selection as the other kernels (csrc/cpu.hpp). The method is
// the published one of GotoBLAS/BLIS: operands packed into cache-sized
// contiguous panels and a register-blocked micro-kernel per instruction set.
#pragma once

#include <cstdint>

namespace cnnkit {

// C = op(A) op(B), or C += op(A) op(B) when `accumulate`, where op(A) is m x k,
// op(B) is k x n and C is m x n, all row-major with leading dimensions (row
// strides, in elements) lda, ldb and ldc:
//   trans_a == false: op(A)(i, p) = a[i * lda + p]   (A stored m x k, lda >= k)
//   trans_a == true:  op(A)(i, p) = a[p * lda + i]   (A stored k x m, lda >= m)
//   trans_b == false: op(B)(p, j) = b[p * ldb + j]   (B stored k x n, ldb >= n)
//   trans_b == true:  op(B)(p, j) = b[j * ldb + p]   (B stored n x k, ldb >= k)
//   C(i, j) = c[i * ldc + j]                          (ldc >= n)
// T is float or double.
//
// Without `accumulate`, C is only written, never read (NaN or garbage in C
// does not leak into the result). k == 0 sets C to zero, or leaves it
// unchanged with `accumulate`; m == 0 or n == 0 does nothing. C must not
// overlap A or B. Throws std::invalid_argument, before touching C, when a size
// is negative or a leading dimension is smaller than its row.
//
// Reduction order, hence determinism: k is cut into blocks whose bounds depend
// only on k and on the instruction-set path (csrc/cpu.hpp); each block's
// products are summed in increasing p from zero, and the block sums are added
// to C (or to zero) in increasing block order. So C(i, j) depends only on row
// i of op(A), column j of op(B), k and the path: not on the thread count, not
// on m or n, and not on where (i, j) falls in C. A caller may therefore cut a
// big product into row or column tiles and get the same bits. The AVX2 path
// uses fused multiply-add, so its results differ in the last bits from the
// baseline path's.
//
// Threads: cnnkit::num_threads() at most, fewer for small products. The
// packing buffers are per thread and reused across calls (a few MiB per thread
// at most, bounded by the block sizes, not by m, n or k).
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
          const T* b, int64_t ldb, T* c, int64_t ldc, bool accumulate);

// The same product computed on the calling thread only, with the same bits as
// gemm(). For callers that parallelise over tiles themselves, e.g. from inside
// their own `#pragma omp parallel` region.
template <class T>
void gemm_serial(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a,
                 int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc, bool accumulate);

}  // namespace cnnkit

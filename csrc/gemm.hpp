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
#include <memory>
#include <type_traits>

#include "cpu.hpp"
#include "interrupt.hpp"

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
// big product into row or column tiles and get the same bits. The AVX2 and
// AVX-512 paths use fused multiply-add and their own k-block lengths, so
// results differ between paths in the last bits: within twice the rounding
// bound of a K-term sum, 2 * rtol * sqrt(K) * (|A| |B|)(i, j) with rtol 1e-5
// (float) or 1e-13 (double), as tests/test_isa_paths.py checks.
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

// What happens to each element of C once its sum is complete, in the store
// of the GEMM tile while it is still in L1, instead of in another pass over
// C: c = activation(c + bias[j]), j being the element's column in C (the
// caller's C, i.e. relative to the c pointer it passed). bias may be null.
// The bias is added after the whole sum (with `accumulate`, after the sum
// has been added to C), so c + bias has the same bits as a separate pass
// adding it; relu, leaky_relu and relu6 (min(max(x, 0), 6), MobileNet's) are
// exact, sigmoid is 1 / (1 + exp(-x)) with the C library's exp, the same on
// every instruction-set path.
// hard_swish is x * relu6(x + 3) / 6, computed as x * min(max(x / 6 + 0.5, 0),
// 1) (cnnkit.reference's rounding order). It is forward only: its input cannot
// be read back from its output (it is not one-to-one on [-3, 0]), so the
// backward kernels refuse it and layers keep it as an op of its own on the tape.
enum class Activation { none, relu, leaky_relu, sigmoid, relu6, hard_swish };

template <class T>
struct Epilogue {
  const T* bias = nullptr;
  Activation activation = Activation::none;
  T negative_slope = T(0.2);  // of leaky_relu: x where x > 0, slope * x elsewhere
};

// The epilogue alone on an m x n matrix c (row stride ldc), for results that
// come from elsewhere than a GEMM tile (e.g. a direct convolution loop).
template <class T>
void apply_epilogue(const Epilogue<T>& epilogue, T* c, int64_t ldc, int64_t m, int64_t n);

// The gradient through an activation, read from its output y (so the
// forward need not keep its input): out = dy * activation'(y), i.e. dy where
// y > 0 else 0 (relu), dy where y > 0 else negative_slope * dy (leaky_relu,
// slope >= 0), dy * y * (1 - y) (sigmoid), dy (none). out may be dy.
template <class T>
void activation_backward(Activation activation, T negative_slope, const T* y, const T* dy, T* out,
                         int64_t count);

// activation'(x) in terms of y = activation(x), the factor of dy above: 1 or 0
// (relu: y > 0; relu6: 0 < y < 6), 1 or negative_slope (leaky_relu), y (1 - y)
// (sigmoid), 1 (none). Every fused backward mask multiplies by this.
template <class T>
inline T activation_derivative(Activation activation, T y, T negative_slope) {
  switch (activation) {
    case Activation::relu:
      return y > T(0) ? T(1) : T(0);
    case Activation::leaky_relu:
      return y > T(0) ? T(1) : negative_slope;
    case Activation::sigmoid:
      return y * (T(1) - y);
    case Activation::relu6:
      return y > T(0) && y < T(6) ? T(1) : T(0);
    case Activation::hard_swish:  // not reached: the bindings refuse its backward
    case Activation::none:
      break;
  }
  return T(1);
}

// f(std::integral_constant<Activation, activation>{}): a loop over many
// elements gets the activation as a constant, so that its derivative or its
// mask folds to one branch-free expression there.
template <class F>
inline void with_activation(Activation activation, F&& f) {
  switch (activation) {
    case Activation::relu:
      return f(std::integral_constant<Activation, Activation::relu>{});
    case Activation::leaky_relu:
      return f(std::integral_constant<Activation, Activation::leaky_relu>{});
    case Activation::sigmoid:
      return f(std::integral_constant<Activation, Activation::sigmoid>{});
    case Activation::relu6:
      return f(std::integral_constant<Activation, Activation::relu6>{});
    case Activation::hard_swish:
      return f(std::integral_constant<Activation, Activation::hard_swish>{});
    case Activation::none:
      return f(std::integral_constant<Activation, Activation::none>{});
  }
}

// C = op(A) op(B) as gemm(), then the epilogue (when `epilogue` is not null).
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
          const T* b, int64_t ldb, T* c, int64_t ldc, bool accumulate,
          const Epilogue<T>* epilogue);

// op(B) (k x n) packed once into the layout the micro-kernel reads, for
// products that reuse one operand many times -- a convolution's weights
// across all tiles of rows and all threads, a Gram matrix's feature chunk
// across its bands -- which otherwise repack it on every call. The layout
// belongs to the instruction-set path active when packing; the products
// below use that path whatever is active later, so a packed operand stays
// valid (and its results keep their bits) across set_active_isa(). Immutable
// after packing and safe to share between threads. Size: about k x n
// elements (n rounded up to the register tile's width).
template <class T>
class PackedB {
 public:
  PackedB() = default;
  int64_t k() const noexcept { return k_; }
  int64_t n() const noexcept { return n_; }
  Isa isa() const noexcept { return isa_; }
  const T* data() const noexcept { return data_.get(); }

 private:
  template <class U>
  friend PackedB<U> pack_b(bool, int64_t, int64_t, const U*, int64_t);
  int64_t k_ = 0, n_ = 0;
  Isa isa_ = Isa::baseline;
  std::shared_ptr<T> data_;
};

// Packs op(B), k x n (see gemm() for trans_b and ldb), using up to
// num_threads() threads. Throws std::invalid_argument for negative sizes or
// a too-small ldb.
template <class U>
PackedB<U> pack_b(bool trans_b, int64_t k, int64_t n, const U* b, int64_t ldb);

// C = op(A) B, or C += op(A) B, with B packed by pack_b() (m x k times
// k x n), then the epilogue if not null. The same bits as gemm() with the
// unpacked B on the path B was packed for: packing changes where the
// operand is read from, not the sums. gemm_packed_serial runs on the calling
// thread, for callers that parallelise over tiles themselves.
template <class T>
void gemm_packed(bool trans_a, int64_t m, const T* a, int64_t lda, const PackedB<T>& b, T* c,
                 int64_t ldc, bool accumulate, const Epilogue<T>* epilogue = nullptr);
template <class T>
void gemm_packed_serial(bool trans_a, int64_t m, const T* a, int64_t lda, const PackedB<T>& b,
                        T* c, int64_t ldc, bool accumulate, const Epilogue<T>* epilogue = nullptr);

// op(A) supplied by the caller in the packed layout, for an A that exists
// only as a rule, such as a convolution's patch matrix: gathering the patches
// straight into the micro-kernel's slivers saves writing them to a buffer and
// packing that buffer in a second pass (for a convolution's weight gradient,
// the two passes cost about a third of its GEMM).
//
// fill(context, i0, mc, p0, kc, mr, dst) writes rows [i0, i0 + mc) x k steps
// [p0, p0 + kc) of op(A) (m x k) as mr-row slivers: element (i0 + s + i,
// p0 + p) goes to dst[s * kc + p * mr + i] for each sliver start s (a multiple
// of mr) and i < mr, and rows past i0 + mc of the last sliver are zero. mr is
// the register tile's height on the running path (gemm_row_tile()); i0 is a
// multiple of it. Calls come from the thread running the product.
template <class T>
struct ASource {
  void (*fill)(const void* context, int64_t i0, int64_t mc, int64_t p0, int64_t kc, int64_t mr,
               T* dst) = nullptr;
  const void* context = nullptr;
};

// The rows of C one register tile covers on the active path (the mr of
// ASource::fill): callers splitting C into row bands cut at multiples of it,
// so that no band ends in a mostly empty tile.
template <class T>
int64_t gemm_row_tile() noexcept;

// C = op(A) op(B), or C += op(A) op(B), with op(A) (m x k) from `a`, on the
// calling thread; the rest as gemm_serial, including its bits: C(i, j) is the
// same as gemm() gives for a materialised op(A) with the same values. `stop`
// (csrc/interrupt.hpp), taken by the caller before its parallel region, is
// tested between blocks, so that every thread of a call stops on Ctrl-C.
template <class T>
void gemm_source_serial(int64_t m, int64_t n, int64_t k, const ASource<T>& a, bool trans_b,
                        const T* b, int64_t ldb, T* c, int64_t ldc, bool accumulate,
                        const StopToken& stop);

// The upper triangle of C = op(A) op(B) for square C (m == n) when the
// product is symmetric, e.g. a Gram matrix F^T F: only the register tiles
// that reach on or above the diagonal are computed (elements below the
// diagonal inside those tiles are written too; the rest of the lower
// triangle is left untouched). Each computed element has the bits gemm()
// gives it.
template <class T>
void gemm_upper(bool trans_a, bool trans_b, int64_t n, int64_t k, const T* a, int64_t lda,
                const T* b, int64_t ldb, T* c, int64_t ldc, bool accumulate);
template <class T>
void gemm_upper_serial(bool trans_a, bool trans_b, int64_t n, int64_t k, const T* a,
                       int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc, bool accumulate);

}  // namespace cnnkit

// out = max(a + b, 0) elementwise: a residual block's Add and the ReLU that
// alone reads it (ResNet), in one pass over memory and on every thread.
// NumPy's np.add then np.maximum(., 0) reads the operands, writes the sum,
// reads it back and writes it again, on one thread: about 1.2 ms of
// ResNet-18's 28 at batch 1.
//
// Bits: the sum is one IEEE addition; the rectifier keeps v unless v <= 0,
// as np.maximum(v, 0) does: NaN passes, -0.0 becomes +0.0 (the conv
// epilogue's ReLU, v < 0 ? 0 : v, keeps -0.0; this kernel replaces NumPy's
// pair, whose bits it keeps). Elements are independent: results do not
// depend on the thread count.
#pragma once

#include <cstdint>

namespace cnnkit {

// a, b and out hold n contiguous elements; out may be a or b (in place).
// T is float or double.
template <class T>
void add_relu(const T* a, const T* b, int64_t n, T* out);

// add_relu on the calling thread, for kernels that add a residual where they
// store their own tiles (conv_forward_residual). A branch-free loop that each
// translation unit vectorises for its own instruction set.
template <class T>
inline void add_relu_span(const T* a, const T* b, int64_t n, T* out) {
  for (int64_t i = 0; i < n; ++i) {
    const T v = a[i] + b[i];
    out[i] = v <= T(0) ? T(0) : v;  // NaN compares false and passes; -0.0 becomes +0.0
  }
}

}  // namespace cnnkit

// Local response normalization across channels (AlexNet, GoogLeNet; ONNX's LRN,
// torch's LocalResponseNorm), channels-last: every row of C channels is
// normalized on its own,
//   y[c] = x[c] * s[c]^-beta,  s[c] = bias + alpha / size * sum x[c']^2
// over the window c - (size - 1) / 2 <= c' <= c + size / 2 (clipped to [0, C)).
//
// Each window sum runs over its channels in increasing order, and rows are
// independent: results do not depend on the thread count.
#pragma once

#include <cstdint>

namespace cnnkit {

// x and y are rows x channels, row-major. T is float or double.
template <class T>
void lrn(const T* x, int64_t rows, int64_t channels, int64_t size, double alpha, double beta,
         double bias, T* y);

// The gradient of lrn() with respect to x, given dy (rows x channels):
//   dx[c] = dy[c] s[c]^-beta - 2 beta alpha / size x[c] sum_j dy[j] x[j] s[j]^(-beta-1)
// over the windows j that hold c.
template <class T>
void lrn_backward(const T* x, const T* dy, int64_t rows, int64_t channels, int64_t size,
                  double alpha, double beta, double bias, T* dx);

}  // namespace cnnkit

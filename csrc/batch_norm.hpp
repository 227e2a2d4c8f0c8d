// Batch normalisation in training mode, channels-last: x is viewed as (rows,
// C) and every channel is normalised with the mean and biased variance of
// its column. NumPy needs about fifteen passes over the activations (mean,
// centred copy, variance, xhat, output; the backward's temporaries); here
// the forward reads x twice and writes y once, the backward reads x and dy
// twice and writes dx once, and xhat is never stored.
//
// Bits: the column sums are taken over a fixed number of row chunks that
// depends only on the shape, each chunk's partial sums in double in row
// order, the chunks combined in chunk order; threads only decide who runs a
// chunk, so the results do not depend on the thread count. The loops run
// across channels, so the vector width changes no order either: every ISA
// path gives the same bits (the build forbids FMA contraction).
#pragma once

#include <cstdint>

namespace cnnkit {

// y = (x - mean) * (gamma * inv_std) + beta, inv_std = 1 / sqrt(var + epsilon),
// with mean and var (biased) of each column computed in double; mean is
// rounded to T before the subtraction, inv_std formed from the double var
// (a float32 var may overflow where the double one does not) and the factor
// gamma * inv_std rounded to T. rows >= 1. mean and var receive C values each,
// rounded to T.
template <class T>
void batch_norm(const T* x, int64_t rows, int64_t channels, const T* gamma, const T* beta,
                double epsilon, T* y, T* mean, T* var);

// Gradients of batch_norm given dy (rows x C) and the mean and var it returned:
//   dbeta = sum dy,  dgamma = sum dy * xhat,  xhat = (x - mean) * inv_std,
//   dx = gamma * inv_std / rows * (rows * dy - dbeta - xhat * dgamma)
// with the sums in double. dx may be null (only dgamma and dbeta are wanted).
template <class T>
void batch_norm_backward(const T* x, const T* dy, int64_t rows, int64_t channels, const T* gamma,
                         const T* mean, const T* var, double epsilon, T* dx, T* dgamma, T* dbeta);

// y = (x - mean) * (gamma * inv_std) + beta with given statistics (inference
// with the moving ones); the factor formed in double and rounded to T.
// Elements are independent.
template <class T>
void batch_norm_inference(const T* x, int64_t rows, int64_t channels, const T* gamma,
                          const T* beta, const T* mean, const T* var, double epsilon, T* y);

}  // namespace cnnkit

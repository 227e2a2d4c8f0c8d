// Optimizer updates, in place and fused: one pass over a variable and its
// slots instead of the four to six NumPy passes (each with a temporary) that
// python/cnnkit/optimizers.py would run per variable and step.
//
// Bits: every element goes through exactly the operations, in the order and
// the precision T, that the NumPy formulas of cnnkit.reference.sgd_update /
// adam_update perform (this library is built with -ffp-contract=off, so no
// multiply-add is fused behind our back). Elements are independent, so the
// results do not depend on the thread count.
#pragma once

#include <cstdint>

namespace cnnkit {

// SGD on n elements. momentum == 0 (velocity may be null):
//   var = var - lr * grad
// otherwise, with step = lr * grad:
//   velocity = velocity * momentum - step
//   var = var + velocity                            (plain)
//   var = var + (momentum * velocity - step)        (nesterov, the new velocity)
template <class T>
void sgd_update(T* var, const T* grad, T* velocity, int64_t n, T lr, T momentum, bool nesterov);

// Adam on n elements, with b1 = 1 - beta_1, b2 = 1 - beta_2 and step_size the
// bias-corrected learning rate lr * sqrt(1 - beta_2^t) / (1 - beta_1^t):
//   m = m + (grad - m) * b1
//   v = v + (grad * grad - v) * b2
//   v_hat = max(v_hat, v)  (amsgrad, when v_hat is not null; NaN wins), then v_hat replaces v
//   var = var - (m * step_size) / (sqrt(v) + epsilon)
template <class T>
void adam_update(T* var, const T* grad, T* m, T* v, T* v_hat, int64_t n, T step_size, T b1, T b2,
                 T epsilon);

}  // namespace cnnkit

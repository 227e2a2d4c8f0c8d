#include "optimizer.hpp"

#include <algorithm>
#include <cmath>

#include "parallel.hpp"

namespace cnnkit {

namespace {

// Splits [0, n) into one contiguous chunk per thread. The updates are memory
// bound and run once per variable per step, so a team is only worth
// starting for large variables (a Dense layer's weights, not its bias).
template <class F>
void for_chunks(int64_t n, F&& f) {
  const int nt = threads_for(n, int64_t(1) << 16);
  if (nt <= 1) return f(int64_t(0), n);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int t = 0; t < nt; ++t) f(n * t / nt, n * (t + 1) / nt);
}

}  // namespace

template <class T>
void sgd_update(T* __restrict var, const T* __restrict grad, T* __restrict velocity, int64_t n,
                T lr, T momentum, bool nesterov) {
  if (n <= 0) return;
  if (momentum == T(0) || velocity == nullptr) {
    for_chunks(n, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) var[i] = var[i] - lr * grad[i];
    });
    return;
  }
  for_chunks(n, [&](int64_t lo, int64_t hi) {
    if (nesterov) {
      for (int64_t i = lo; i < hi; ++i) {
        const T step = lr * grad[i];
        const T m = velocity[i] * momentum - step;
        velocity[i] = m;
        var[i] = var[i] + (momentum * m - step);
      }
    } else {
      for (int64_t i = lo; i < hi; ++i) {
        const T m = velocity[i] * momentum - lr * grad[i];
        velocity[i] = m;
        var[i] = var[i] + m;
      }
    }
  });
}

template <class T>
void adam_update(T* __restrict var, const T* __restrict grad, T* __restrict m, T* __restrict v,
                 T* __restrict v_hat, int64_t n, T step_size, T b1, T b2, T epsilon) {
  if (n <= 0) return;
  for_chunks(n, [&](int64_t lo, int64_t hi) {
    if (v_hat == nullptr) {
      for (int64_t i = lo; i < hi; ++i) {
        const T g = grad[i];
        const T mi = m[i] + (g - m[i]) * b1;
        const T vi = v[i] + (g * g - v[i]) * b2;
        m[i] = mi;
        v[i] = vi;
        var[i] = var[i] - (mi * step_size) / (std::sqrt(vi) + epsilon);
      }
    } else {
      for (int64_t i = lo; i < hi; ++i) {
        const T g = grad[i];
        const T mi = m[i] + (g - m[i]) * b1;
        const T vi = v[i] + (g * g - v[i]) * b2;
        const T old = v_hat[i];
        // NumPy's maximum: a NaN on either side is the result.
        const T hi_v = (vi > old || vi != vi) ? vi : old;
        m[i] = mi;
        v[i] = vi;
        v_hat[i] = hi_v;
        var[i] = var[i] - (mi * step_size) / (std::sqrt(hi_v) + epsilon);
      }
    }
  });
}

#define CNNKIT_INSTANTIATE(T)                                                      \
  template void sgd_update<T>(T*, const T*, T*, int64_t, T, T, bool);              \
  template void adam_update<T>(T*, const T*, T*, T*, T*, int64_t, T, T, T, T);
CNNKIT_INSTANTIATE(float)
CNNKIT_INSTANTIATE(double)
#undef CNNKIT_INSTANTIATE

}  // namespace cnnkit

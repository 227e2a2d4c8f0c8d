// The direct convolution loops (see conv_direct.hpp), compiled once per
// instruction set: conv_direct.cpp includes this with CNNKIT_ISA_NS=baseline,
// conv_direct_avx2.cpp with CNNKIT_ISA_NS=avx2 and -mavx2 -mfma. Everything
// here lives in the ISA's namespace (the lambdas handed to conv_taps.hpp's
// templates too), so no function is emitted twice under one name with
// different instruction sets.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "conv_direct.hpp"
#include "conv_few_impl.hpp"
#include "conv_taps.hpp"
#include "interrupt.hpp"
#include "parallel.hpp"

namespace cnnkit::detail::CNNKIT_ISA_NS {


namespace {

// 32-byte vectors (GCC/Clang vector extension; two SSE registers on the
// baseline path). A dependent type cannot carry vector_size, hence the traits.
template <class T>
struct Vector;
template <>
struct Vector<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct Vector<double> {
  typedef double type __attribute__((vector_size(32)));
};


// out[c * mult + j] += a[c] * b[c * mult + j]; the common multiplier 1 gets
// its own loop, which the compiler vectorises.
template <class T>
inline void multiply_add(const T* __restrict a, const T* __restrict b, T* __restrict out,
                         int64_t channels, int64_t mult) {
  if (mult == 1) {
    for (int64_t c = 0; c < channels; ++c) out[c] += a[c] * b[c];
    return;
  }
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t j = 0; j < mult; ++j) out[c * mult + j] += a[c] * b[c * mult + j];
}

}  // namespace

template <class T>
void depthwise_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y) {
  const int64_t cin = p.in_channels, cout = p.out_channels, mult = cout / cin;
  const int64_t positions = p.g.out_size(), rows = p.rows();
  const int nt = threads_for(rows * p.g.kernel_size() * cout);
  const Taps taps(p.g);
  const StopToken stop;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t r = 0; r < rows; ++r) {
    if (stop) continue;
    T* out = y + r * cout;
    std::fill_n(out, cout, T(0));
    taps.for_each(r / positions, r % positions, [&](int64_t k, int64_t i) {
      multiply_add(x + i * cin, w + k * cout, out, cin, mult);
    });
    if (b)
      for (int64_t c = 0; c < cout; ++c) out[c] += b[c];
  }
}

template <class T>
void depthwise_backward_input(const ConvProblem& p, const T* w, const T* dy, T* dx) {
  const int64_t cin = p.in_channels, cout = p.out_channels, mult = cout / cin;
  const int64_t positions = p.g.in_size(), rows = p.batch * positions;
  const int nt = threads_for(rows * p.g.kernel_size() * cout);
  const StopToken stop;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t r = 0; r < rows; ++r) {
    if (stop) continue;
    T* out = dx + r * cin;
    std::fill_n(out, cin, T(0));
    for_each_reader(p.g, r / positions, r % positions, [&](int64_t k, int64_t o) {
      const T* grad = dy + o * cout;
      const T* wk = w + k * cout;
      if (mult == 1) {
        for (int64_t c = 0; c < cin; ++c) out[c] += grad[c] * wk[c];
        return;
      }
      for (int64_t c = 0; c < cin; ++c)
        for (int64_t j = 0; j < mult; ++j) out[c] += grad[c * mult + j] * wk[c * mult + j];
    });
  }
}

template <class T>
void depthwise_backward_weight(const ConvProblem& p, const T* x, const T* dy, T* dw) {
  const int64_t cin = p.in_channels, cout = p.out_channels, mult = cout / cin;
  const int64_t positions = p.g.out_size(), rows = p.rows();
  std::fill_n(dw, p.g.kernel_size() * cout, T(0));
  // Threads split the channels; each dw element sums the rows in order.
  const int nt = int(std::min<int64_t>(threads_for(rows * p.g.kernel_size() * cout), cin));
  const Taps taps(p.g);
  const StopToken stop;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int64_t parts = omp_get_num_threads(), part = omp_get_thread_num();
    const int64_t c0 = cin * part / parts, c1 = cin * (part + 1) / parts;
    for (int64_t r = 0; r < rows && !stop; ++r) {
      const T* grad = dy + r * cout;
      taps.for_each(r / positions, r % positions, [&](int64_t k, int64_t i) {
          multiply_add(x + i * cin + c0, grad + c0 * mult, dw + k * cout + c0 * mult, c1 - c0, mult);
      });
    }
  }
}

// The input gradient of a strided few-channel convolution, gathered per
// input position over the outputs that read it (few::backward_input covers
// stride 1).
template <class T>
void few_channels_backward_input_strided(const ConvProblem& p, const T* w, const T* dy, T* dx) {
  using V = typename Vector<T>::type;
  constexpr int64_t width = int64_t(sizeof(V) / sizeof(T));
  const int64_t cin = p.in_channels, cout = p.out_channels;
  const int64_t blocked = cout - cout % width;
  const int64_t positions = p.g.in_size(), rows = p.batch * positions;
  const int nt = threads_for(rows * p.patch_size() * cout);
  const StopToken stop;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t r = 0; r < rows; ++r) {
    if (stop) continue;
    // dx[r, ci] is a dot product of dy rows with weight rows over the output
    // channels: four vector partial sums (independent chains, so the adds
    // overlap), reduced once at the end.
    for (int64_t ci = 0; ci < cin; ++ci) {
      V acc[4] = {};
      T tail = 0;
      for_each_reader(p.g, r / positions, r % positions, [&](int64_t k, int64_t o) {
        const T* grad = dy + o * cout;
        const T* wk = w + (k * cin + ci) * cout;
        for (int64_t co = 0; co < blocked; co += width) {
          V g, wv;
          std::memcpy(&g, grad + co, sizeof(V));
          std::memcpy(&wv, wk + co, sizeof(V));
          acc[(co / width) % 4] += g * wv;
        }
        for (int64_t co = blocked; co < cout; ++co) tail += grad[co] * wk[co];
      });
      const V total = (acc[0] + acc[1]) + (acc[2] + acc[3]);
      T sum = 0;
      for (int64_t j = 0; j < width; ++j) sum += total[j];
      dx[r * cin + ci] = sum + tail;
    }
  }
}

template <class T>
void few_channels_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y,
                          bool relu) {
  few::forward(p, x, w, b, y, relu);
}

template <class T>
void few_channels_backward_input(const ConvProblem& p, const T* w, const T* dy, T* dx) {
  const Geometry& g = p.g;
  if (g.stride[0] == 1 && g.stride[1] == 1 && g.stride[2] == 1)
    return few::backward_input(p, w, dy, dx);
  few_channels_backward_input_strided(p, w, dy, dx);
}

template <class T>
void few_channels_backward_weight(const ConvProblem& p, const T* x, const T* dy, T* dw,
                                  const FusedWeightGradient<T>& fused) {
  few::backward_weight(p, x, dy, dw, fused);
}

CNNKIT_INSTANTIATE_DIRECT(float)
CNNKIT_INSTANTIATE_DIRECT(double)

}  // namespace cnnkit::detail::CNNKIT_ISA_NS

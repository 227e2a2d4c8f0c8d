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
#include "conv_taps.hpp"
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
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t r = 0; r < rows; ++r) {
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
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t r = 0; r < rows; ++r) {
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
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int64_t parts = omp_get_num_threads(), part = omp_get_thread_num();
    const int64_t c0 = cin * part / parts, c1 = cin * (part + 1) / parts;
    for (int64_t r = 0; r < rows; ++r) {
      const T* grad = dy + r * cout;
      taps.for_each(r / positions, r % positions, [&](int64_t k, int64_t i) {
          multiply_add(x + i * cin + c0, grad + c0 * mult, dw + k * cout + c0 * mult, c1 - c0, mult);
      });
    }
  }
}

// out[q][c0 .. c0 + lanes) for `count` rows at once. visit(fn) calls
// fn(k, at) for each kernel offset k, with at[q] the input position row q
// reads through it. Rows done together have independent accumulators (hiding
// the add latency) and share each weight load.
template <class T, int count, class Visit>
inline void few_channels_block(const T* x, const T* w, const T* b, int64_t cin, int64_t cout,
                               int64_t c0, T* const* out, Visit&& visit) {
  using V = typename Vector<T>::type;
  constexpr int64_t half = int64_t(sizeof(V) / sizeof(T));
  V acc[count][2] = {};
  visit([&](int64_t k, const int64_t* at) {
    for (int64_t ci = 0; ci < cin; ++ci) {
      const T* wk = w + (k * cin + ci) * cout + c0;
      V w0, w1;
      std::memcpy(&w0, wk, sizeof(V));
      std::memcpy(&w1, wk + half, sizeof(V));
      for (int q = 0; q < count; ++q) {
        const T v = x[at[q] * cin + ci];
        acc[q][0] += v * w0;
        acc[q][1] += v * w1;
      }
    }
  });
  for (int q = 0; q < count; ++q) {
    if (b) {
      V b0, b1;
      std::memcpy(&b0, b + c0, sizeof(V));
      std::memcpy(&b1, b + c0 + half, sizeof(V));
      acc[q][0] += b0, acc[q][1] += b1;
    }
    std::memcpy(out[q] + c0, &acc[q][0], sizeof(V));
    std::memcpy(out[q] + c0 + half, &acc[q][1], sizeof(V));
  }
}

template <class T>
void few_channels_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y) {
  using V = typename Vector<T>::type;
  constexpr int64_t lanes = 2 * int64_t(sizeof(V) / sizeof(T));  // outputs per block
  constexpr int kRows = 6;
  const int64_t cin = p.in_channels, cout = p.out_channels;
  const int64_t positions = p.g.out_size(), rows = p.rows();
  const int64_t blocked = cout - cout % lanes;  // channels done in register blocks
  const int nt = threads_for(rows * p.patch_size() * cout);
  const Taps taps(p.g);
  const int64_t groups = (rows + kRows - 1) / kRows;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t gi = 0; gi < groups; ++gi) {
    const int64_t r0 = gi * kRows, count = std::min<int64_t>(kRows, rows - r0);
    int64_t first[kRows];
    T* out[kRows];
    taps.interior_starts(r0, count, first);
    bool interior = count == kRows;
    for (int64_t q = 0; q < count; ++q) {
      interior = interior && first[q] >= 0;
      out[q] = y + (r0 + q) * cout;
    }
    for (int64_t q = 0; q < count; ++q) {
      const int64_t r = r0 + q;
      // Tap k of an interior row q reads first[q] + delta[k]; rows are done in
      // groups when all of them are interior, else one at a time, border rows
      // through the general tap walk.
      const std::vector<int64_t>& delta = taps.deltas();
      auto interior_taps = [&](const int64_t* rows_first, int n_rows) {
        return [&delta, rows_first, n_rows](auto&& fn) {
          int64_t at[kRows];
          for (size_t k = 0; k < delta.size(); ++k) {
            for (int q2 = 0; q2 < n_rows; ++q2) at[q2] = rows_first[q2] + delta[k];
            fn(int64_t(k), at);
          }
        };
      };
      for (int64_t c0 = 0; c0 < blocked; c0 += lanes) {
        if (interior) {
          if (q == 0) few_channels_block<T, kRows>(x, w, b, cin, cout, c0, out, interior_taps(first, kRows));
        } else if (first[q] >= 0) {
          few_channels_block<T, 1>(x, w, b, cin, cout, c0, &out[q], interior_taps(&first[q], 1));
        } else {
          few_channels_block<T, 1>(x, w, b, cin, cout, c0, &out[q], [&](auto&& fn) {
            taps.for_each(r / positions, r % positions, [&](int64_t k, int64_t i) { fn(k, &i); });
          });
        }
      }
      if (blocked == cout) continue;
      std::fill(out[q] + blocked, out[q] + cout, T(0));
      taps.for_each(r / positions, r % positions, [&](int64_t k, int64_t i) {
        for (int64_t ci = 0; ci < cin; ++ci) {
          const T v = x[i * cin + ci];
          const T* wk = w + (k * cin + ci) * cout;
          for (int64_t co = blocked; co < cout; ++co) out[q][co] += v * wk[co];
        }
      });
      if (b)
        for (int64_t co = blocked; co < cout; ++co) out[q][co] += b[co];
    }
  }
}

template <class T>
void few_channels_backward_input(const ConvProblem& p, const T* w, const T* dy, T* dx) {
  using V = typename Vector<T>::type;
  constexpr int64_t width = int64_t(sizeof(V) / sizeof(T));
  const int64_t cin = p.in_channels, cout = p.out_channels;
  const int64_t blocked = cout - cout % width;
  const int64_t positions = p.g.in_size(), rows = p.batch * positions;
  const int nt = threads_for(rows * p.patch_size() * cout);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t r = 0; r < rows; ++r) {
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
void few_channels_backward_weight(const ConvProblem& p, const T* x, const T* dy, T* dw) {
  const int64_t cin = p.in_channels, cout = p.out_channels, offsets = p.g.kernel_size();
  const int64_t positions = p.g.out_size(), rows = p.rows();
  std::fill_n(dw, p.patch_size() * cout, T(0));
  // Threads split the kernel offsets; each dw element sums the rows in order.
  const int nt = int(std::min<int64_t>(threads_for(rows * p.patch_size() * cout), offsets));
  const Taps taps(p.g);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int64_t parts = omp_get_num_threads(), part = omp_get_thread_num();
    const int64_t k0 = offsets * part / parts, k1 = offsets * (part + 1) / parts;
    for (int64_t r = 0; r < rows; ++r) {
      const T* __restrict grad = dy + r * cout;
      taps.for_each(r / positions, r % positions, [&](int64_t k, int64_t i) {
        if (k < k0 || k >= k1) return;
        for (int64_t ci = 0; ci < cin; ++ci) {
          const T v = x[i * cin + ci];
          T* __restrict dwk = dw + (k * cin + ci) * cout;
          for (int64_t co = 0; co < cout; ++co) dwk[co] += v * grad[co];
        }
      });
    }
  }
}

CNNKIT_INSTANTIATE_DIRECT(float)
CNNKIT_INSTANTIATE_DIRECT(double)

}  // namespace cnnkit::detail::CNNKIT_ISA_NS

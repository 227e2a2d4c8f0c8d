// Local response normalization, one row of channels at a time.
//
// A window holds a handful of channels (5 in AlexNet and GoogLeNet), so each
// sum is taken directly rather than as a running sum: a running sum would
// subtract what it added and drift in float32, and the direct one fixes the
// order of every addition. Rows are shared out statically over threads; a
// thread keeps its scratch row (the window sums) across its rows.
#include "lrn.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "parallel.hpp"

namespace cnnkit {

namespace {

// s[c] = bias + alpha / size * sum of x^2 over c's window, in double for the
// sum of squares of float inputs (exact enough to make the order moot).
template <class T>
void window_scale(const T* x, int64_t channels, int64_t lo, int64_t hi, double k, double bias,
                  double* s) {
  for (int64_t c = 0; c < channels; ++c) {
    const int64_t a = std::max<int64_t>(c - lo, 0), b = std::min<int64_t>(c + hi, channels - 1);
    double sum = 0;
    for (int64_t j = a; j <= b; ++j) sum += double(x[j]) * double(x[j]);
    s[c] = bias + k * sum;
  }
}

template <class Row>
void for_rows(int64_t rows, int64_t channels, int64_t size, Row&& row) {
  const int nt = threads_for(rows * channels * (size + 4));
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    std::vector<double> scratch(static_cast<size_t>(2 * channels));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) row(r, scratch.data());
  }
}

}  // namespace

template <class T>
void lrn(const T* x, int64_t rows, int64_t channels, int64_t size, double alpha, double beta,
         double bias, T* y) {
  const int64_t lo = (size - 1) / 2, hi = size / 2;
  const double k = alpha / double(size);
  for_rows(rows, channels, size, [&](int64_t r, double* s) {
    const T* xr = x + r * channels;
    T* yr = y + r * channels;
    window_scale(xr, channels, lo, hi, k, bias, s);
    for (int64_t c = 0; c < channels; ++c) yr[c] = T(double(xr[c]) * std::pow(s[c], -beta));
  });
}

template <class T>
void lrn_backward(const T* x, const T* dy, int64_t rows, int64_t channels, int64_t size,
                  double alpha, double beta, double bias, T* dx) {
  const int64_t lo = (size - 1) / 2, hi = size / 2;
  const double k = alpha / double(size);
  for_rows(rows, channels, size, [&](int64_t r, double* s) {
    const T* xr = x + r * channels;
    const T* gr = dy + r * channels;
    T* out = dx + r * channels;
    double* q = s + channels;  // q[j] = dy[j] x[j] s[j]^(-beta-1)
    window_scale(xr, channels, lo, hi, k, bias, s);
    for (int64_t j = 0; j < channels; ++j) q[j] = double(gr[j]) * double(xr[j]) * std::pow(s[j], -beta - 1);
    for (int64_t c = 0; c < channels; ++c) {
      // The windows holding c are those of j in [c - hi, c + lo].
      const int64_t a = std::max<int64_t>(c - hi, 0), b = std::min<int64_t>(c + lo, channels - 1);
      double sum = 0;
      for (int64_t j = a; j <= b; ++j) sum += q[j];
      out[c] = T(double(gr[c]) * std::pow(s[c], -beta) - 2 * beta * k * double(xr[c]) * sum);
    }
  });
}

template void lrn<float>(const float*, int64_t, int64_t, int64_t, double, double, double, float*);
template void lrn<double>(const double*, int64_t, int64_t, int64_t, double, double, double,
                          double*);
template void lrn_backward<float>(const float*, const float*, int64_t, int64_t, int64_t, double,
                                  double, double, float*);
template void lrn_backward<double>(const double*, const double*, int64_t, int64_t, int64_t,
                                   double, double, double, double*);

}  // namespace cnnkit

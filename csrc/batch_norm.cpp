// Batch normalisation: the per-channel constants in double, the row loops of
// the active instruction set (batch_norm_rows_impl.hpp) over row chunks.
//
// The variance is one pass of shifted sums: with k = the first row, s = sum
// (x - k) and q = sum (x - k)^2 give var = q / n - (s / n)^2. Shifting by a
// sample keeps the cancellation of E[x^2] - mean^2 small (|mean - k| is of the
// order of the standard deviation) where unshifted sums lose every digit once
// |mean| is a thousand standard deviations; the sums are double for float32
// too, so a second pass over x would buy nothing measurable.
#define CNNKIT_ISA_NS baseline
#include "batch_norm_rows_impl.hpp"
#undef CNNKIT_ISA_NS

#include <algorithm>
#include <cmath>
#include <vector>

#include "batch_norm.hpp"
#include "cpu.hpp"
#include "parallel.hpp"

namespace cnnkit {

namespace {

template <class T>
batch_norm_impl::Rows<T> row_loops() {
  batch_norm_impl::Rows<T> rows;
#ifdef CNNKIT_HAVE_AVX512
  if (active_isa() == Isa::avx512) {
    batch_norm_impl::avx512::get(rows);
    return rows;
  }
#endif
#ifdef CNNKIT_HAVE_AVX2
  if (active_isa() == Isa::avx2) {
    batch_norm_impl::avx2::get(rows);
    return rows;
  }
#endif
  batch_norm_impl::baseline::get(rows);
  return rows;
}

// The row chunks of a reduction: a count fixed by the shape alone (never by
// the thread count), so that the order of every addition is too. 64 chunks
// share well over any thread count this library meets; each is at least a
// few thousand elements, so the partial sums cost nothing beside the pass.
struct Chunks {
  int64_t count, rows;
  int64_t begin(int64_t i) const { return rows * i / count; }
  int64_t end(int64_t i) const { return rows * (i + 1) / count; }
};

Chunks chunks_of(int64_t rows, int64_t channels) {
  const int64_t by_size = std::max<int64_t>(1, rows * channels / 4096);
  return {std::min<int64_t>({int64_t(64), by_size, rows}), rows};
}

// f(lo, hi) over row ranges covering [0, rows), in parallel. For passes whose
// elements are independent: any split gives the same bits.
template <class F>
void for_rows(int64_t rows, int64_t channels, F&& f) {
  const int nt = threads_for(rows * channels);
  if (nt <= 1) return f(int64_t(0), rows);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int t = 0; t < nt; ++t) f(rows * t / nt, rows * (t + 1) / nt);
}

// Column sums (two per channel) of a row pass: part(lo, hi, s, q) adds rows
// [lo, hi) into zeroed s and q; the chunks' sums are combined in chunk order.
template <class Part>
void column_sums(int64_t rows, int64_t channels, Part&& part, std::vector<double>& s,
                 std::vector<double>& q) {
  const Chunks ch = chunks_of(rows, channels);
  const size_t c = size_t(channels);
  std::vector<double> partial(size_t(ch.count) * 2 * c, 0.0);
  const int nt = std::min<int64_t>(threads_for(rows * channels), ch.count);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t i = 0; i < ch.count; ++i) {
    double* p = partial.data() + size_t(i) * 2 * c;
    part(ch.begin(i), ch.end(i), p, p + c);
  }
  s.assign(c, 0.0);
  q.assign(c, 0.0);
  for (int64_t i = 0; i < ch.count; ++i) {
    const double* p = partial.data() + size_t(i) * 2 * c;
    for (size_t j = 0; j < c; ++j) {
      s[j] += p[j];
      q[j] += p[c + j];
    }
  }
}

inline double inv_std_of(double var, double epsilon) { return 1.0 / std::sqrt(var + epsilon); }

// The vector pass scales by a = gamma / std rounded to T, which overflows
// when gamma is near T's largest value and std < 1, although
// gamma (x - mean) / std, as the formula (and cnnkit.reference) reads, need
// not: 3e38 times a deviation of 0.9 standard deviations is finite in float.
// It loses its precision as a subnormal (gamma 1e-30 over a std of 1e15),
// though x - mean may bring the product back to normal numbers. Such
// channels (rare: a scale beyond T's normal range) are redone in double.
template <class T>
void redo_scales_out_of_range(const T* x, int64_t rows, int64_t channels, const T* gamma,
                            const T* beta, const T* mean, const double* var, double epsilon,
                            const T* a, T* y) {
  for (int64_t j = 0; j < channels; ++j) {
    const double g = double(gamma[j]), sd = std::sqrt(var[j] + epsilon);
    const double scale = g / sd;
    if (std::fpclassify(a[j]) == FP_NORMAL || !std::isfinite(scale) || scale == 0.0) continue;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t at = r * channels + j;
      y[at] = T(g * (double(x[at]) - double(mean[j])) / sd + double(beta[j]));
    }
  }
}

}  // namespace

template <class T>
void batch_norm(const T* x, int64_t rows, int64_t channels, const T* gamma, const T* beta,
                double epsilon, T* y, T* mean, T* var) {
  if (rows <= 0 || channels <= 0) return;
  const auto loops = row_loops<T>();
  const size_t c = size_t(channels);
  std::vector<double> k(c), s, q;
  // An infinite first value would turn every x - k into NaN (and inf - inf), so the mean of a
  // channel holding +inf came out NaN instead of inf; such a channel's sums need no shift.
  for (size_t j = 0; j < c; ++j) k[j] = std::isfinite(double(x[j])) ? double(x[j]) : 0.0;
  column_sums(
      rows, channels,
      [&](int64_t lo, int64_t hi, double* ps, double* pq) {
        loops.moments(x, lo, hi, channels, k.data(), ps, pq);
      },
      s, q);
  const double n = double(rows);
  std::vector<T> m(c), a(c);
  std::vector<double> vs(c);
  for (size_t j = 0; j < c; ++j) {
    const double shift = s[j] / n;
    // Rounding can make the difference slightly negative; a NaN (from a NaN in x) must stay
    // NaN, which std::max(0.0, v) would turn into 0.
    const double raw = q[j] / n - shift * shift;
    const double v = raw < 0.0 ? 0.0 : raw;
    mean[j] = m[j] = T(k[j] + shift);
    var[j] = T(v);
    vs[j] = v;
    a[j] = T(double(gamma[j]) * inv_std_of(v, epsilon));
  }
  for_rows(rows, channels, [&](int64_t lo, int64_t hi) {
    loops.normalise(x, lo, hi, channels, m.data(), a.data(), beta, y);
  });
  redo_scales_out_of_range(x, rows, channels, gamma, beta, m.data(), vs.data(), epsilon, a.data(), y);
}

template <class T>
void batch_norm_backward(const T* x, const T* dy, int64_t rows, int64_t channels, const T* gamma,
                         const T* mean, const T* var, double epsilon, T* dx, T* dgamma,
                         T* dbeta) {
  if (rows <= 0 || channels <= 0) return;
  const auto loops = row_loops<T>();
  const size_t c = size_t(channels);
  std::vector<double> md(c), s, q;
  for (size_t j = 0; j < c; ++j) md[j] = double(mean[j]);
  column_sums(
      rows, channels,
      [&](int64_t lo, int64_t hi, double* ps, double* pq) {
        loops.grad_moments(x, dy, lo, hi, channels, md.data(), ps, pq);
      },
      s, q);
  const double n = double(rows);
  std::vector<T> a(c), b(c), d(c);
  for (size_t j = 0; j < c; ++j) {
    const double inv_std = inv_std_of(double(var[j]), epsilon);
    const double dg = q[j] * inv_std;  // sum dy * xhat
    dbeta[j] = T(s[j]);
    dgamma[j] = T(dg);
    // dx = (dy - dbeta / n - (x - mean) inv_std dgamma / n) gamma inv_std: gamma
    // last, as in the formula, so that a non-finite gamma gives what NumPy's does.
    a[j] = T(double(gamma[j]) * inv_std);
    b[j] = T(inv_std * dg / n);
    d[j] = T(s[j] / n);
  }
  if (dx == nullptr) return;
  for_rows(rows, channels, [&](int64_t lo, int64_t hi) {
    loops.grad_input(x, dy, lo, hi, channels, mean, a.data(), b.data(), d.data(), dx);
  });
}

template <class T>
void batch_norm_inference(const T* x, int64_t rows, int64_t channels, const T* gamma,
                          const T* beta, const T* mean, const T* var, double epsilon, T* y) {
  if (rows <= 0 || channels <= 0) return;
  const auto loops = row_loops<T>();
  const size_t c = size_t(channels);
  std::vector<T> a(c);
  std::vector<double> vs(c);
  for (size_t j = 0; j < c; ++j) {
    vs[j] = double(var[j]);
    a[j] = T(double(gamma[j]) * inv_std_of(vs[j], epsilon));
  }
  for_rows(rows, channels, [&](int64_t lo, int64_t hi) {
    loops.normalise(x, lo, hi, channels, mean, a.data(), beta, y);
  });
  redo_scales_out_of_range(x, rows, channels, gamma, beta, mean, vs.data(), epsilon, a.data(), y);
}

#define CNNKIT_INSTANTIATE(T)                                                                   \
  template void batch_norm<T>(const T*, int64_t, int64_t, const T*, const T*, double, T*, T*,  \
                              T*);                                                              \
  template void batch_norm_backward<T>(const T*, const T*, int64_t, int64_t, const T*,         \
                                       const T*, const T*, double, T*, T*, T*);                \
  template void batch_norm_inference<T>(const T*, int64_t, int64_t, const T*, const T*,      \
                                        const T*, const T*, double, T*);
CNNKIT_INSTANTIATE(float)
CNNKIT_INSTANTIATE(double)
#undef CNNKIT_INSTANTIATE

}  // namespace cnnkit

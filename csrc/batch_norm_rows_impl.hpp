// The row loops of batch normalisation, compiled once per instruction set:
// batch_norm.cpp includes this with CNNKIT_ISA_NS=baseline, batch_norm_avx2.cpp
// and batch_norm_avx512.cpp with their flags. Every loop runs across the
// channels of a row (contiguous), one row after another, so the compiler
// vectorises across channels and each channel's sum still adds its rows in
// row order: the same bits on every path.
#pragma once

#include <cstdint>

namespace cnnkit::batch_norm_impl {

// The loops for one element type; rows [r0, r1) of a (rows, c) array.
template <class T>
struct Rows {
  // s[j] += x - k[j], q[j] += (x - k[j])^2 over the rows, in double.
  void (*moments)(const T* x, int64_t r0, int64_t r1, int64_t c, const double* k, double* s,
                  double* q);
  // y = (x - m) * a + b.
  void (*normalise)(const T* x, int64_t r0, int64_t r1, int64_t c, const T* m, const T* a,
                    const T* b, T* y);
  // s[j] += g, q[j] += g * (x - m[j]) over the rows, in double.
  void (*grad_moments)(const T* x, const T* g, int64_t r0, int64_t r1, int64_t c,
                       const double* m, double* s, double* q);
  // dx = ((g - d) - (x - m) * b) * a.
  void (*grad_input)(const T* x, const T* g, int64_t r0, int64_t r1, int64_t c, const T* m,
                     const T* a, const T* b, const T* d, T* dx);
};

#define CNNKIT_DECLARE_BATCH_NORM_ROWS(ns) \
  namespace ns {                           \
  void get(Rows<float>& rows);             \
  void get(Rows<double>& rows);            \
  }

CNNKIT_DECLARE_BATCH_NORM_ROWS(baseline)
CNNKIT_DECLARE_BATCH_NORM_ROWS(avx2)
CNNKIT_DECLARE_BATCH_NORM_ROWS(avx512)
#undef CNNKIT_DECLARE_BATCH_NORM_ROWS

#ifdef CNNKIT_ISA_NS
namespace CNNKIT_ISA_NS {

namespace {

template <class T>
void moments(const T* __restrict x, int64_t r0, int64_t r1, int64_t c, const double* __restrict k,
             double* __restrict s, double* __restrict q) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* __restrict xr = x + r * c;
    for (int64_t j = 0; j < c; ++j) {
      const double d = double(xr[j]) - k[j];
      s[j] += d;
      q[j] += d * d;
    }
  }
}

template <class T>
void normalise(const T* __restrict x, int64_t r0, int64_t r1, int64_t c, const T* __restrict m,
               const T* __restrict a, const T* __restrict b, T* __restrict y) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* __restrict xr = x + r * c;
    T* __restrict yr = y + r * c;
    for (int64_t j = 0; j < c; ++j) yr[j] = (xr[j] - m[j]) * a[j] + b[j];
  }
}

template <class T>
void grad_moments(const T* __restrict x, const T* __restrict g, int64_t r0, int64_t r1, int64_t c,
                  const double* __restrict m, double* __restrict s, double* __restrict q) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* __restrict xr = x + r * c;
    const T* __restrict gr = g + r * c;
    for (int64_t j = 0; j < c; ++j) {
      const double gj = double(gr[j]);
      s[j] += gj;
      q[j] += gj * (double(xr[j]) - m[j]);
    }
  }
}

template <class T>
void grad_input(const T* __restrict x, const T* __restrict g, int64_t r0, int64_t r1, int64_t c,
                const T* __restrict m, const T* __restrict a, const T* __restrict b,
                const T* __restrict d, T* __restrict dx) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* __restrict xr = x + r * c;
    const T* __restrict gr = g + r * c;
    T* __restrict out = dx + r * c;
    for (int64_t j = 0; j < c; ++j) out[j] = ((gr[j] - d[j]) - (xr[j] - m[j]) * b[j]) * a[j];
  }
}

template <class T>
void fill(Rows<T>& rows) {
  rows.moments = &moments<T>;
  rows.normalise = &normalise<T>;
  rows.grad_moments = &grad_moments<T>;
  rows.grad_input = &grad_input<T>;
}

}  // namespace

void get(Rows<float>& rows) { fill(rows); }
void get(Rows<double>& rows) { fill(rows); }

}  // namespace CNNKIT_ISA_NS
#endif

}  // namespace cnnkit::batch_norm_impl

// Elementwise max(a + b, 0) in contiguous chunks, one per thread.
#include "add_relu.hpp"

#include <omp.h>

#include <algorithm>

#include "parallel.hpp"

namespace cnnkit {

template <class T>
void add_relu(const T* a, const T* b, int64_t n, T* out) {
  if (n <= 0) return;
  // Chunks of whole cache lines (16 floats), so no two threads write one line.
  constexpr int64_t kLine = 64 / int64_t(sizeof(T));
  const int nt = threads_for(n, 1 << 15);
  // The loop vectorised for the build's baseline ISA: the pass is bound by
  // memory, not by the width of the vectors.
  if (nt <= 1) return add_relu_span(a, b, n, out);
  const int64_t lines = (n + kLine - 1) / kLine;
#pragma omp parallel num_threads(nt)
  {
    const int64_t t = omp_get_thread_num(), count = omp_get_num_threads();
    const int64_t i0 = std::min(n, lines * t / count * kLine);
    const int64_t i1 = std::min(n, lines * (t + 1) / count * kLine);
    add_relu_span(a + i0, b + i0, i1 - i0, out + i0);
  }
}

template void add_relu<float>(const float*, const float*, int64_t, float*);
template void add_relu<double>(const double*, const double*, int64_t, double*);

}  // namespace cnnkit

// The concatenation copy, in blocks of whole output rows, one per thread.
#include "concat.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "parallel.hpp"

namespace cnnkit {

namespace {

// Rows [r0, r1): every input's piece of a row in turn, so the output is
// written once, in order.
void copy_rows(int64_t r0, int64_t r1, int64_t count, const char* const* inputs,
               const int64_t* widths, int64_t row_bytes, char* out) {
  for (int64_t r = r0; r < r1; ++r) {
    char* dst = out + r * row_bytes;
    for (int64_t i = 0; i < count; ++i) {
      std::memcpy(dst, inputs[i] + r * widths[i], size_t(widths[i]));
      dst += widths[i];
    }
  }
}

}  // namespace

void concat(int64_t outer, int64_t count, const char* const* inputs, const int64_t* widths,
            char* out) {
  int64_t row_bytes = 0;
  for (int64_t i = 0; i < count; ++i) row_bytes += widths[i];
  if (outer <= 0 || row_bytes == 0) return;
  // One work unit per byte copied; two threads from 128 KiB of output on.
  const int nt = threads_for(outer * row_bytes, int64_t(1) << 16);
  if (nt <= 1) return copy_rows(0, outer, count, inputs, widths, row_bytes, out);
#pragma omp parallel num_threads(nt)
  {
    const int64_t t = omp_get_thread_num(), n = omp_get_num_threads();
    copy_rows(outer * t / n, outer * (t + 1) / n, count, inputs, widths, row_bytes, out);
  }
}

}  // namespace cnnkit

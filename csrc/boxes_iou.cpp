// Portable IoU loops plus the dispatcher that prepares columns, splits the
// work over threads and picks the instruction-set path.
#define CNNKIT_ISA_NS baseline
#include "boxes_iou_impl.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu.hpp"
#include "interrupt.hpp"
#include "parallel.hpp"

namespace cnnkit {

namespace {

template <class T>
struct ColumnStore {
  std::vector<T> data;
  iou_impl::Columns<T> cols{};

  ColumnStore(const T* boxes, int64_t n, bool need_angle) : data(8 * static_cast<size_t>(n)) {
    iou_impl::baseline::fill_columns(boxes, n, need_angle, data.data());
    cols = iou_impl::Columns<T>::at(data.data(), n);
  }
};

template <class T>
auto pairwise_loop() {
#ifdef CNNKIT_HAVE_AVX512
  if (active_isa() == Isa::avx512) return &iou_impl::avx512::pairwise_rows<T>;
#endif
#ifdef CNNKIT_HAVE_AVX2
  if (active_isa() == Isa::avx2) return &iou_impl::avx2::pairwise_rows<T>;
#endif
  return &iou_impl::baseline::pairwise_rows<T>;
}

template <class T>
auto aligned_loop() {
#ifdef CNNKIT_HAVE_AVX512
  if (active_isa() == Isa::avx512) return &iou_impl::avx512::aligned_rows<T>;
#endif
#ifdef CNNKIT_HAVE_AVX2
  if (active_isa() == Isa::avx2) return &iou_impl::avx2::aligned_rows<T>;
#endif
  return &iou_impl::baseline::aligned_rows<T>;
}

}  // namespace

template <class T>
void pairwise_iou(IouKind kind, const T* a, int64_t n, const T* b, int64_t m, T* out) {
  if (n == 0 || m == 0) return;
  const bool angle = kind == IouKind::ciou;
  const ColumnStore<T> ca(a, n, angle), cb(b, m, angle);
  const auto loop = pairwise_loop<T>();
  const int nt = threads_for(n * m);
  // Contiguous row blocks per thread: each output element is computed by one
  // thread from the same inputs, so results do not depend on the thread count.
  const StopToken stop;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t i = 0; i < n; ++i)
    if (!stop) loop(kind, ca.cols, i, i + 1, cb.cols, m, out);
}

template <class T>
void aligned_iou(IouKind kind, const T* a, const T* b, int64_t n, T* out) {
  if (n == 0) return;
  const auto loop = aligned_loop<T>();
  constexpr int64_t kBlock = 4096;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  const int nt = threads_for(n);
  const StopToken stop;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t i0 = blk * kBlock;
    if (!stop) loop(kind, a + 4 * i0, b + 4 * i0, std::min(n - i0, kBlock), out + i0);
  }
}

template void pairwise_iou<float>(IouKind, const float*, int64_t, const float*, int64_t, float*);
template void pairwise_iou<double>(IouKind, const double*, int64_t, const double*, int64_t,
                                   double*);
template void aligned_iou<float>(IouKind, const float*, const float*, int64_t, float*);
template void aligned_iou<double>(IouKind, const double*, const double*, int64_t, double*);

}  // namespace cnnkit

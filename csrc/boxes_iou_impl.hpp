// IoU-family loops, compiled once per instruction set: boxes_iou.cpp includes
// this with CNNKIT_ISA_NS=baseline, boxes_iou_avx2.cpp with CNNKIT_ISA_NS=avx2
// and -mavx2 -mfma. The loops are written branch-free over columns (struct of
// arrays) so that the compiler vectorises them for the target of each unit.
#pragma once

#include <cstdint>

#include "boxes.hpp"
#include "iou_scalar.hpp"

namespace cnnkit::iou_impl {

// Boxes as columns, with what the IoU variants need precomputed once per box.
template <class T>
struct Columns {
  const T *x1, *y1, *x2, *y2, *area, *cx, *cy, *angle;

  // The eight columns of n boxes laid out one after another from p (always
  // inlined, as iou_scalar.hpp says why).
  [[gnu::always_inline]] static Columns at(const T* p, int64_t n) {
    return {p, p + n, p + 2 * n, p + 3 * n, p + 4 * n, p + 5 * n, p + 6 * n, p + 7 * n};
  }
};

#define CNNKIT_DECLARE_IOU_LOOPS(ns)                                                          \
  namespace ns {                                                                             \
  template <class T>                                                                         \
  void pairwise_rows(IouKind kind, const Columns<T>& a, int64_t i0, int64_t i1,              \
                     const Columns<T>& b, int64_t m, T* out);                                \
  template <class T>                                                                         \
  void aligned_rows(IouKind kind, const T* a, const T* b, int64_t n, T* out);                \
  template <class T>                                                                         \
  void fill_columns(const T* boxes, int64_t n, bool angle, T* columns);                      \
  }
CNNKIT_DECLARE_IOU_LOOPS(baseline)
CNNKIT_DECLARE_IOU_LOOPS(avx2)
CNNKIT_DECLARE_IOU_LOOPS(avx512)
#undef CNNKIT_DECLARE_IOU_LOOPS

#ifdef CNNKIT_ISA_NS
namespace CNNKIT_ISA_NS {

// The value of IoU variant K for one pair (a, b).
template <IouKind K, class T>
inline T pair_value(T ax1, T ay1, T ax2, T ay2, T aarea, T acx, T acy, T aang, T bx1, T by1,
                    T bx2, T by2, T barea, T bcx, T bcy, T bang) {
  const T inter = intersection_area(ax1, ay1, ax2, ay2, bx1, by1, bx2, by2);
  const T iou = iou_from_parts(inter, aarea, barea);
  if constexpr (K == IouKind::iou) {
    return iou;
  } else {
    // The smallest box enclosing both.
    const T cw = (ax2 > bx2 ? ax2 : bx2) - (ax1 < bx1 ? ax1 : bx1);
    const T ch = (ay2 > by2 ? ay2 : by2) - (ay1 < by1 ? ay1 : by1);
    if constexpr (K == IouKind::giou) {
      // A zero enclosing area means both boxes are empty: no penalty.
      const T enclosing = cw * ch;
      const T uni = (aarea + barea) - inter;
      return iou - (enclosing - uni) / (enclosing > T(0) ? enclosing : T(1));
    } else {
      const T diag = cw * cw + ch * ch;
      const T dx = acx - bcx, dy = acy - bcy;
      const T diou = iou - (dx * dx + dy * dy) / (diag > T(0) ? diag : T(1));
      if constexpr (K == IouKind::diou) {
        return diou;
      } else {
        const T da = aang - bang;
        const T v = T(0.40528473456935108578) * (da * da);  // 4 / pi^2
        const T denom = (T(1) - iou) + v;
        const T alpha = v / (denom > T(0) ? denom : T(1));
        return diou - alpha * v;
      }
    }
  }
}

template <IouKind K, class T>
void pairwise_rows_k(const Columns<T>& a, int64_t i0, int64_t i1, const Columns<T>& b,
                     int64_t m, T* out) {
  const T *__restrict bx1 = b.x1, *__restrict by1 = b.y1, *__restrict bx2 = b.x2,
                      *__restrict by2 = b.y2, *__restrict barea = b.area, *__restrict bcx = b.cx,
                      *__restrict bcy = b.cy, *__restrict bang = b.angle;
  for (int64_t i = i0; i < i1; ++i) {
    const T ax1 = a.x1[i], ay1 = a.y1[i], ax2 = a.x2[i], ay2 = a.y2[i], aarea = a.area[i];
    const T acx = a.cx[i], acy = a.cy[i], aang = a.angle[i];
    T* __restrict row = out + i * m;
    for (int64_t j = 0; j < m; ++j)
      row[j] = pair_value<K>(ax1, ay1, ax2, ay2, aarea, acx, acy, aang, bx1[j], by1[j], bx2[j],
                             by2[j], barea[j], bcx[j], bcy[j], bang[j]);
  }
}

template <IouKind K, class T>
void aligned_range_k(const Columns<T>& a, const Columns<T>& b, int64_t n, T* __restrict out) {
  for (int64_t i = 0; i < n; ++i)
    out[i] = pair_value<K>(a.x1[i], a.y1[i], a.x2[i], a.y2[i], a.area[i], a.cx[i], a.cy[i],
                           a.angle[i], b.x1[i], b.y1[i], b.x2[i], b.y2[i], b.area[i], b.cx[i],
                           b.cy[i], b.angle[i]);
}

// Separate __restrict columns (pointers derived from one buffer do not tell the
// compiler they never overlap): the loops vectorise.
template <class T>
void fill_columns_to(const T* __restrict r, int64_t n, bool angle, T* __restrict x1,
                     T* __restrict y1, T* __restrict x2, T* __restrict y2, T* __restrict area,
                     T* __restrict cx, T* __restrict cy, T* __restrict ang) {
  for (int64_t i = 0; i < n; ++i) {
    x1[i] = r[4 * i], y1[i] = r[4 * i + 1], x2[i] = r[4 * i + 2], y2[i] = r[4 * i + 3];
    area[i] = box_area_of(x1[i], y1[i], x2[i], y2[i]);
    cx[i] = (x1[i] + x2[i]) * T(0.5), cy[i] = (y1[i] + y2[i]) * T(0.5);
  }
  if (angle)
    for (int64_t i = 0; i < n; ++i) ang[i] = box_angle(x2[i] - x1[i], y2[i] - y1[i]);
  else
    for (int64_t i = 0; i < n; ++i) ang[i] = T(0);
}

template <class T>
void fill_columns(const T* boxes, int64_t n, bool angle, T* columns) {
  fill_columns_to(boxes, n, angle, columns, columns + n, columns + 2 * n, columns + 3 * n,
                  columns + 4 * n, columns + 5 * n, columns + 6 * n, columns + 7 * n);
}

template <class T>
void pairwise_rows(IouKind kind, const Columns<T>& a, int64_t i0, int64_t i1,
                   const Columns<T>& b, int64_t m, T* out) {
  switch (kind) {
    case IouKind::iou: return pairwise_rows_k<IouKind::iou>(a, i0, i1, b, m, out);
    case IouKind::giou: return pairwise_rows_k<IouKind::giou>(a, i0, i1, b, m, out);
    case IouKind::diou: return pairwise_rows_k<IouKind::diou>(a, i0, i1, b, m, out);
    case IouKind::ciou: return pairwise_rows_k<IouKind::ciou>(a, i0, i1, b, m, out);
  }
}

template <class T>
void aligned_rows(IouKind kind, const T* a, const T* b, int64_t n, T* out) {
  // Columns for a block of pairs at a time, built where they stay in L1.
  constexpr int64_t kBlock = 256;
  alignas(64) T ca[8 * kBlock], cb[8 * kBlock];
  for (int64_t i0 = 0; i0 < n; i0 += kBlock) {
    const int64_t m = n - i0 < kBlock ? n - i0 : kBlock;
    fill_columns(a + 4 * i0, m, kind == IouKind::ciou, ca);
    fill_columns(b + 4 * i0, m, kind == IouKind::ciou, cb);
    const Columns<T> xa = Columns<T>::at(ca, m), xb = Columns<T>::at(cb, m);
    T* o = out + i0;
    switch (kind) {
      case IouKind::iou: aligned_range_k<IouKind::iou>(xa, xb, m, o); break;
      case IouKind::giou: aligned_range_k<IouKind::giou>(xa, xb, m, o); break;
      case IouKind::diou: aligned_range_k<IouKind::diou>(xa, xb, m, o); break;
      case IouKind::ciou: aligned_range_k<IouKind::ciou>(xa, xb, m, o); break;
    }
  }
}

template void pairwise_rows<float>(IouKind, const Columns<float>&, int64_t, int64_t,
                                   const Columns<float>&, int64_t, float*);
template void pairwise_rows<double>(IouKind, const Columns<double>&, int64_t, int64_t,
                                    const Columns<double>&, int64_t, double*);
template void aligned_rows<float>(IouKind, const float*, const float*, int64_t, float*);
template void aligned_rows<double>(IouKind, const double*, const double*, int64_t, double*);
template void fill_columns<float>(const float*, int64_t, bool, float*);
template void fill_columns<double>(const double*, int64_t, bool, double*);

}  // namespace CNNKIT_ISA_NS
#endif  // CNNKIT_ISA_NS

}  // namespace cnnkit::iou_impl

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
};

#define CNNKIT_DECLARE_IOU_LOOPS(ns)                                                          \
  namespace ns {                                                                             \
  template <class T>                                                                         \
  void pairwise_rows(IouKind kind, const Columns<T>& a, int64_t i0, int64_t i1,              \
                     const Columns<T>& b, int64_t m, T* out);                                \
  template <class T>                                                                         \
  void aligned_range(IouKind kind, const Columns<T>& a, const Columns<T>& b, int64_t i0,     \
                     int64_t i1, T* out);                                                    \
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
void aligned_range_k(const Columns<T>& a, const Columns<T>& b, int64_t i0, int64_t i1,
                     T* __restrict out) {
  for (int64_t i = i0; i < i1; ++i)
    out[i] = pair_value<K>(a.x1[i], a.y1[i], a.x2[i], a.y2[i], a.area[i], a.cx[i], a.cy[i],
                           a.angle[i], b.x1[i], b.y1[i], b.x2[i], b.y2[i], b.area[i], b.cx[i],
                           b.cy[i], b.angle[i]);
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
void aligned_range(IouKind kind, const Columns<T>& a, const Columns<T>& b, int64_t i0,
                   int64_t i1, T* out) {
  switch (kind) {
    case IouKind::iou: return aligned_range_k<IouKind::iou>(a, b, i0, i1, out);
    case IouKind::giou: return aligned_range_k<IouKind::giou>(a, b, i0, i1, out);
    case IouKind::diou: return aligned_range_k<IouKind::diou>(a, b, i0, i1, out);
    case IouKind::ciou: return aligned_range_k<IouKind::ciou>(a, b, i0, i1, out);
  }
}

template void pairwise_rows<float>(IouKind, const Columns<float>&, int64_t, int64_t,
                                   const Columns<float>&, int64_t, float*);
template void pairwise_rows<double>(IouKind, const Columns<double>&, int64_t, int64_t,
                                    const Columns<double>&, int64_t, double*);
template void aligned_range<float>(IouKind, const Columns<float>&, const Columns<float>&, int64_t,
                                   int64_t, float*);
template void aligned_range<double>(IouKind, const Columns<double>&, const Columns<double>&,
                                    int64_t, int64_t, double*);

}  // namespace CNNKIT_ISA_NS
#endif  // CNNKIT_ISA_NS

}  // namespace cnnkit::iou_impl

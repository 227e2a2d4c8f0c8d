// The one definition of IoU arithmetic. The pairwise kernels, the aligned
// kernels and NMS all inline these, with the same operation order, so that a
// pair's IoU is bit-identical whichever kernel computed it: NMS's decisions
// then agree exactly with box_iou on the same pair.
#pragma once

namespace cnnkit {

template <class T>
inline T positive_part(T v) noexcept {
  return v > T(0) ? v : T(0);
}

template <class T>
inline T box_area_of(T x1, T y1, T x2, T y2) noexcept {
  return (x2 - x1) * (y2 - y1);
}

template <class T>
inline T intersection_area(T ax1, T ay1, T ax2, T ay2, T bx1, T by1, T bx2, T by2) noexcept {
  const T iw = positive_part((ax2 < bx2 ? ax2 : bx2) - (ax1 > bx1 ? ax1 : bx1));
  const T ih = positive_part((ay2 < by2 ? ay2 : by2) - (ay1 > by1 ? ay1 : by1));
  return iw * ih;
}

// inter <= min(area_a, area_b) holds in floating point too (rounding is
// monotone), so a zero union implies a zero intersection and the guarded
// division yields 0 instead of NaN for two empty boxes.
template <class T>
inline T iou_from_parts(T inter, T area_a, T area_b) noexcept {
  const T uni = (area_a + area_b) - inter;
  return inter / (uni > T(0) ? uni : T(1));
}

}  // namespace cnnkit

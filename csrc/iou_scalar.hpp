// The one definition of IoU arithmetic. The pairwise kernels, the aligned
// kernels and NMS all inline these, with the same operation order, so that a
// pair's IoU is bit-identical whichever kernel computed it: NMS's decisions
// then agree exactly with box_iou on the same pair.
//
// Every function here is always inlined: the headers are compiled into the
// baseline, AVX2 and AVX-512 units alike, and an out-of-line copy of one, with
// the linker free to keep any unit's, could hand AVX-512 code to the
// baseline path.
#pragma once

namespace cnnkit {

template <class T>
[[gnu::always_inline]] inline T positive_part(T v) noexcept {
  return v > T(0) ? v : T(0);
}

template <class T>
[[gnu::always_inline]] inline T box_area_of(T x1, T y1, T x2, T y2) noexcept {
  return (x2 - x1) * (y2 - y1);
}

template <class T>
[[gnu::always_inline]] inline T intersection_area(T ax1, T ay1, T ax2, T ay2, T bx1, T by1, T bx2,
                                                  T by2) noexcept {
  const T iw = positive_part((ax2 < bx2 ? ax2 : bx2) - (ax1 > bx1 ? ax1 : bx1));
  const T ih = positive_part((ay2 < by2 ? ay2 : by2) - (ay1 > by1 ? ay1 : by1));
  return iw * ih;
}

// inter <= min(area_a, area_b) holds in floating point too (rounding is
// monotone), so a zero union implies a zero intersection and the guarded
// division yields 0 instead of NaN for two empty boxes.
template <class T>
[[gnu::always_inline]] inline T iou_from_parts(T inter, T area_a, T area_b) noexcept {
  const T uni = (area_a + area_b) - inter;
  return inter / (uni > T(0) ? uni : T(1));
}

// atan2(w, h) of a box's width w >= 0 and height h >= 0 (finite), the angle
// CIoU compares: in [0, pi/2], 0 for an empty box. It is written without
// branches, so that loops over boxes vectorise (std::atan2, a scalar library
// call, took most of an aligned CIoU's time), and with the same operations on
// every instruction set, so every path gives the same bits. Within about 2 ulp
// of std::atan2: the argument is reduced to |u| <= tan(pi/8) and atan(u) =
// u + u^3 g(u^2), with g a Chebyshev fit of degree 4 (float, error 1.6e-8) or
// 10 (double, 3.2e-17) made with mpmath.
template <class T>
[[gnu::always_inline]] inline T box_angle(T w, T h) noexcept {
  const bool swap = w > h;
  const T num = swap ? h : w, den = swap ? w : h;
  const T t = den > T(0) ? num / den : T(0);  // in [0, 1]
  const bool big = t > T(0.41421356237309504880);
  const T u = big ? (t - T(1)) / (t + T(1)) : t;
  const T s = u * u;
  T g;
  if constexpr (sizeof(T) == 4) {
    g = T(-0.06451928208121748758);
    g = g * s + T(0.10743731490791083043);
    g = g * s + T(-0.14263955597984639199);
    g = g * s + T(0.19999540483648963445);
    g = g * s + T(-0.33333331761168519851);
  } else {
    g = T(-0.019176887119062258989);
    g = g * s + T(0.039231658295587191303);
    g = g * s + T(-0.050854497379402598613);
    g = g * s + T(0.058581489128022098816);
    g = g * s + T(-0.066645114473819480001);
    g = g * s + T(0.076921831908260865637);
    g = g * s + T(-0.090909045781239018905);
    g = g * s + T(0.11111111015256361727);
    g = g * s + T(-0.14285714284666542922);
    g = g * s + T(0.19999999999995520678);
    g = g * s + T(-0.3333333333333333016);
  }
  const T a = (big ? T(0.78539816339744830962) : T(0)) + (u + u * (s * g));
  return swap ? T(1.5707963267948966192) - a : a;
}

}  // namespace cnnkit

#include "boxes.hpp"

#include <cmath>

#include "iou_scalar.hpp"

namespace cnnkit {

template <class T>
int64_t first_row_beyond(const T* boxes, int64_t n, T limit) noexcept {
  for (int64_t i = 0; i < n; ++i) {
    const T* r = boxes + 4 * i;
    // Written so that NaN fails the test too.
    if (!(std::fabs(r[0]) <= limit && std::fabs(r[1]) <= limit && std::fabs(r[2]) <= limit &&
          std::fabs(r[3]) <= limit))
      return i;
  }
  return -1;
}

template <class T>
int64_t first_invalid_row(const T* boxes, int64_t n, BoxFormat fmt) noexcept {
  for (int64_t i = 0; i < n; ++i) {
    const T* r = boxes + 4 * i;
    const bool bad = fmt == BoxFormat::xyxy ? (r[2] < r[0] || r[3] < r[1]) : (r[2] < 0 || r[3] < 0);
    if (bad) return i;
  }
  return -1;
}

template <class T>
void box_convert(const T* in, T* out, int64_t n, BoxFormat from, BoxFormat to) noexcept {
  for (int64_t i = 0; i < n; ++i) {
    const T* r = in + 4 * i;
    T x1, y1, x2, y2;
    switch (from) {
      case BoxFormat::xyxy:
        x1 = r[0], y1 = r[1], x2 = r[2], y2 = r[3];
        break;
      case BoxFormat::xywh:
        x1 = r[0], y1 = r[1], x2 = r[0] + r[2], y2 = r[1] + r[3];
        break;
      case BoxFormat::cxcywh:
        x1 = r[0] - T(0.5) * r[2], y1 = r[1] - T(0.5) * r[3];
        x2 = r[0] + T(0.5) * r[2], y2 = r[1] + T(0.5) * r[3];
        break;
    }
    T* o = out + 4 * i;
    if (from == to) {  // exact copy: no round trip through xyxy
      o[0] = r[0], o[1] = r[1], o[2] = r[2], o[3] = r[3];
      continue;
    }
    switch (to) {
      case BoxFormat::xyxy:
        o[0] = x1, o[1] = y1, o[2] = x2, o[3] = y2;
        break;
      case BoxFormat::xywh:
        if (from == BoxFormat::cxcywh) {  // keep the given size exactly
          o[0] = x1, o[1] = y1, o[2] = r[2], o[3] = r[3];
        } else {
          o[0] = x1, o[1] = y1, o[2] = x2 - x1, o[3] = y2 - y1;
        }
        break;
      case BoxFormat::cxcywh:
        if (from == BoxFormat::xywh) {
          o[0] = r[0] + T(0.5) * r[2], o[1] = r[1] + T(0.5) * r[3], o[2] = r[2], o[3] = r[3];
        } else {
          o[0] = T(0.5) * (x1 + x2), o[1] = T(0.5) * (y1 + y2), o[2] = x2 - x1, o[3] = y2 - y1;
        }
        break;
    }
  }
}

template <class T>
void box_area(const T* boxes, T* out, int64_t n) noexcept {
  for (int64_t i = 0; i < n; ++i) {
    const T* r = boxes + 4 * i;
    out[i] = box_area_of(r[0], r[1], r[2], r[3]);
  }
}

template <class T>
void clip_boxes(const T* boxes, T* out, int64_t n, T height, T width) noexcept {
  auto clamp = [](T v, T hi) { return v < T(0) ? T(0) : (v > hi ? hi : v); };
  for (int64_t i = 0; i < n; ++i) {
    const T* r = boxes + 4 * i;
    T* o = out + 4 * i;
    o[0] = clamp(r[0], width), o[1] = clamp(r[1], height);
    o[2] = clamp(r[2], width), o[3] = clamp(r[3], height);
  }
}

template <class T>
int64_t remove_small_boxes(const T* boxes, int64_t n, T min_size, int64_t* keep) noexcept {
  int64_t k = 0;
  for (int64_t i = 0; i < n; ++i) {
    const T* r = boxes + 4 * i;
    if (r[2] - r[0] >= min_size && r[3] - r[1] >= min_size) keep[k++] = i;
  }
  return k;
}

#define CNNKIT_INSTANTIATE(T)                                                                \
  template int64_t first_row_beyond<T>(const T*, int64_t, T) noexcept;                       \
  template int64_t first_invalid_row<T>(const T*, int64_t, BoxFormat) noexcept;              \
  template void box_convert<T>(const T*, T*, int64_t, BoxFormat, BoxFormat) noexcept;        \
  template void box_area<T>(const T*, T*, int64_t) noexcept;                                 \
  template void clip_boxes<T>(const T*, T*, int64_t, T, T) noexcept;                         \
  template int64_t remove_small_boxes<T>(const T*, int64_t, T, int64_t*) noexcept;
CNNKIT_INSTANTIATE(float)
CNNKIT_INSTANTIATE(double)
#undef CNNKIT_INSTANTIATE

}  // namespace cnnkit

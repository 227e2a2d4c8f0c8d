// Box kernels: formats, areas, clipping, and the IoU family (IoU, GIoU, DIoU,
// CIoU) in pairwise (N x M) and aligned (N) form. Boxes are rows of 4 values,
// contiguous; xyxy unless a BoxFormat says otherwise.
#pragma once

#include <cstdint>

namespace cnnkit {

enum class BoxFormat { xyxy, xywh, cxcywh };
enum class IouKind { iou, giou, diou, ciou };

// The largest coordinate magnitude for which areas, unions and squared
// enclosing diagonals of boxes cannot overflow T: 1e18 for float, 1e150 for double.
template <class T>
constexpr T max_box_coordinate() noexcept {
  return sizeof(T) == 4 ? T(1e18) : T(1e150);
}
// True when no row holds a NaN or a value of magnitude > limit and every row
// is a valid box of `fmt` (see below); the two scans below say which row is not.
template <class T>
bool all_boxes_valid(const T* boxes, int64_t n, T limit, BoxFormat fmt) noexcept;
// Index of the first row holding a NaN or a value of magnitude > limit, or -1.
template <class T>
int64_t first_row_beyond(const T* boxes, int64_t n, T limit) noexcept;
// Index of the first row that is not a valid box of `fmt` (xyxy: x2 < x1 or
// y2 < y1; xywh and cxcywh: negative width or height), or -1.
template <class T>
int64_t first_invalid_row(const T* boxes, int64_t n, BoxFormat fmt) noexcept;

template <class T>
void box_convert(const T* in, T* out, int64_t n, BoxFormat from, BoxFormat to) noexcept;
template <class T>
void box_area(const T* boxes, T* out, int64_t n) noexcept;
// Clamps x to [0, width] and y to [0, height].
template <class T>
void clip_boxes(const T* boxes, T* out, int64_t n, T height, T width) noexcept;
// Writes the indices of boxes with width >= min_size and height >= min_size
// into keep (room for n) and returns how many. Throws std::bad_alloc (it
// allocates a count per block of rows).
template <class T>
int64_t remove_small_boxes(const T* boxes, int64_t n, T min_size, int64_t* keep);

// out[i * m + j] = kind(a[i], b[j]).
template <class T>
void pairwise_iou(IouKind kind, const T* a, int64_t n, const T* b, int64_t m, T* out);
// out[i] = kind(a[i], b[i]).
template <class T>
void aligned_iou(IouKind kind, const T* a, const T* b, int64_t n, T* out);

}  // namespace cnnkit

#include "boxes.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "iou_scalar.hpp"
#include "parallel.hpp"

namespace cnnkit {

namespace {

// Rows per unit of parallel work: 16 KiB of float32 boxes, enough to amortise
// a thread team's start-up and small enough to split 100,000 boxes evenly.
constexpr int64_t kRows = 1024;

// Runs body(i0, i1) over [0, n) in kRows blocks on up to threads_for(n) threads.
// Every row is written by one thread from its own inputs, so results do not
// depend on the thread count.
template <class Body>
void for_row_blocks(int64_t n, Body&& body) {
  const int64_t blocks = (n + kRows - 1) / kRows;
  const int nt = threads_for(n);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t b = 0; b < blocks; ++b) body(b * kRows, std::min(n, (b + 1) * kRows));
}

template <class T>
inline int beyond(const T* r, T limit) noexcept {
  // Written so that NaN fails the test too.
  return !(std::fabs(r[0]) <= limit) | !(std::fabs(r[1]) <= limit) |
         !(std::fabs(r[2]) <= limit) | !(std::fabs(r[3]) <= limit);
}

template <class T>
inline int invalid(const T* r, bool xyxy) noexcept {
  return xyxy ? (r[2] < r[0]) | (r[3] < r[1]) : (r[2] < T(0)) | (r[3] < T(0));
}

// The row loops below take their own __restrict pointers (lambda captures do
// not carry it) and have no early exit: that is what lets them vectorise.
template <bool Xyxy, class T>
int any_bad_row(const T* __restrict boxes, int64_t n, T limit) noexcept {
  int bad = 0;
  for (int64_t i = 0; i < n; ++i)
    bad |= beyond(boxes + 4 * i, limit) | invalid(boxes + 4 * i, Xyxy);
  return bad;
}

template <class T>
void area_rows(const T* __restrict boxes, T* __restrict out, int64_t n) noexcept {
  for (int64_t i = 0; i < n; ++i) {
    const T* r = boxes + 4 * i;
    out[i] = box_area_of(r[0], r[1], r[2], r[3]);
  }
}

template <class T>
void clip_rows(const T* __restrict boxes, T* __restrict out, int64_t n, T height,
               T width) noexcept {
  const auto clamp = [](T v, T hi) { return v < T(0) ? T(0) : (v > hi ? hi : v); };
  for (int64_t i = 0; i < n; ++i) {
    const T* r = boxes + 4 * i;
    T* o = out + 4 * i;
    o[0] = clamp(r[0], width), o[1] = clamp(r[1], height);
    o[2] = clamp(r[2], width), o[3] = clamp(r[3], height);
  }
}

template <class T>
inline bool big_enough(const T* r, T min_size) noexcept {
  return (r[2] - r[0] >= min_size) & (r[3] - r[1] >= min_size);
}

// Writes first + (index of each row at least min_size wide and high) to keep
// and returns how many.
template <class T>
int64_t kept_rows(const T* boxes, int64_t n, T min_size, int64_t first, int64_t* keep) noexcept {
  int64_t k = 0;
  for (int64_t i = 0; i < n; ++i) {
    keep[k] = first + i;  // written always, counted when kept: no branch to mispredict
    k += big_enough(boxes + 4 * i, min_size);
  }
  return k;
}

}  // namespace

template <class T>
bool all_boxes_valid(const T* boxes, int64_t n, T limit, BoxFormat fmt) noexcept {
  std::atomic<bool> ok{true};
  for_row_blocks(n, [&](int64_t i0, int64_t i1) {
    const T* rows = boxes + 4 * i0;
    const int bad = fmt == BoxFormat::xyxy ? any_bad_row<true>(rows, i1 - i0, limit)
                                           : any_bad_row<false>(rows, i1 - i0, limit);
    if (bad) ok.store(false, std::memory_order_relaxed);
  });
  return ok.load(std::memory_order_relaxed);
}

template <class T>
int64_t first_row_beyond(const T* boxes, int64_t n, T limit) noexcept {
  for (int64_t i = 0; i < n; ++i)
    if (beyond(boxes + 4 * i, limit)) return i;
  return -1;
}

template <class T>
int64_t first_invalid_row(const T* boxes, int64_t n, BoxFormat fmt) noexcept {
  for (int64_t i = 0; i < n; ++i)
    if (invalid(boxes + 4 * i, fmt == BoxFormat::xyxy)) return i;
  return -1;
}

namespace {

// One (from, to) pair per instantiation, so that the row loop has no branches
// and vectorises.
template <BoxFormat From, BoxFormat To, class T>
void convert_rows(const T* __restrict in, T* __restrict out, int64_t n) noexcept {
  for (int64_t i = 0; i < n; ++i) {
    const T* r = in + 4 * i;
    T* o = out + 4 * i;
    if constexpr (From == To) {  // exact copy: no round trip through xyxy
      o[0] = r[0], o[1] = r[1], o[2] = r[2], o[3] = r[3];
    } else if constexpr (From == BoxFormat::cxcywh && To == BoxFormat::xywh) {
      // keep the given size exactly
      o[0] = r[0] - T(0.5) * r[2], o[1] = r[1] - T(0.5) * r[3], o[2] = r[2], o[3] = r[3];
    } else if constexpr (From == BoxFormat::xywh && To == BoxFormat::cxcywh) {
      o[0] = r[0] + T(0.5) * r[2], o[1] = r[1] + T(0.5) * r[3], o[2] = r[2], o[3] = r[3];
    } else {
      T x1, y1, x2, y2;
      if constexpr (From == BoxFormat::xyxy) {
        x1 = r[0], y1 = r[1], x2 = r[2], y2 = r[3];
      } else if constexpr (From == BoxFormat::xywh) {
        x1 = r[0], y1 = r[1], x2 = r[0] + r[2], y2 = r[1] + r[3];
      } else {
        x1 = r[0] - T(0.5) * r[2], y1 = r[1] - T(0.5) * r[3];
        x2 = r[0] + T(0.5) * r[2], y2 = r[1] + T(0.5) * r[3];
      }
      if constexpr (To == BoxFormat::xyxy) {
        o[0] = x1, o[1] = y1, o[2] = x2, o[3] = y2;
      } else if constexpr (To == BoxFormat::xywh) {
        o[0] = x1, o[1] = y1, o[2] = x2 - x1, o[3] = y2 - y1;
      } else {
        o[0] = T(0.5) * (x1 + x2), o[1] = T(0.5) * (y1 + y2), o[2] = x2 - x1, o[3] = y2 - y1;
      }
    }
  }
}

template <BoxFormat From, class T>
void convert_from(const T* in, T* out, int64_t n, BoxFormat to) {
  switch (to) {
    case BoxFormat::xyxy:
      return for_row_blocks(n, [&](int64_t i0, int64_t i1) {
        convert_rows<From, BoxFormat::xyxy>(in + 4 * i0, out + 4 * i0, i1 - i0);
      });
    case BoxFormat::xywh:
      return for_row_blocks(n, [&](int64_t i0, int64_t i1) {
        convert_rows<From, BoxFormat::xywh>(in + 4 * i0, out + 4 * i0, i1 - i0);
      });
    case BoxFormat::cxcywh:
      return for_row_blocks(n, [&](int64_t i0, int64_t i1) {
        convert_rows<From, BoxFormat::cxcywh>(in + 4 * i0, out + 4 * i0, i1 - i0);
      });
  }
}

}  // namespace

template <class T>
void box_convert(const T* in, T* out, int64_t n, BoxFormat from, BoxFormat to) noexcept {
  switch (from) {
    case BoxFormat::xyxy: return convert_from<BoxFormat::xyxy>(in, out, n, to);
    case BoxFormat::xywh: return convert_from<BoxFormat::xywh>(in, out, n, to);
    case BoxFormat::cxcywh: return convert_from<BoxFormat::cxcywh>(in, out, n, to);
  }
}

template <class T>
void box_area(const T* boxes, T* out, int64_t n) noexcept {
  for_row_blocks(n, [&](int64_t i0, int64_t i1) { area_rows(boxes + 4 * i0, out + i0, i1 - i0); });
}

template <class T>
void clip_boxes(const T* boxes, T* out, int64_t n, T height, T width) noexcept {
  for_row_blocks(n, [&](int64_t i0, int64_t i1) {
    clip_rows(boxes + 4 * i0, out + 4 * i0, i1 - i0, height, width);
  });
}

template <class T>
int64_t remove_small_boxes(const T* boxes, int64_t n, T min_size, int64_t* keep) {
  // Each block writes its kept indices from its own first slot (a block keeps at
  // most its length); the blocks are then closed up in order.
  const int64_t blocks = (n + kRows - 1) / kRows;
  std::vector<int64_t> kept(static_cast<size_t>(blocks));
  for_row_blocks(n, [&](int64_t i0, int64_t i1) {
    kept[static_cast<size_t>(i0 / kRows)] =
        kept_rows(boxes + 4 * i0, i1 - i0, min_size, i0, keep + i0);
  });
  int64_t total = 0;
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t k = kept[static_cast<size_t>(b)];
    if (total != b * kRows) std::memmove(keep + total, keep + b * kRows, k * sizeof(int64_t));
    total += k;
  }
  return total;
}

#define CNNKIT_INSTANTIATE(T)                                                                \
  template bool all_boxes_valid<T>(const T*, int64_t, T, BoxFormat) noexcept;              \
  template int64_t first_row_beyond<T>(const T*, int64_t, T) noexcept;                       \
  template int64_t first_invalid_row<T>(const T*, int64_t, BoxFormat) noexcept;              \
  template void box_convert<T>(const T*, T*, int64_t, BoxFormat, BoxFormat) noexcept;        \
  template void box_area<T>(const T*, T*, int64_t) noexcept;                                 \
  template void clip_boxes<T>(const T*, T*, int64_t, T, T) noexcept;                         \
  template int64_t remove_small_boxes<T>(const T*, int64_t, T, int64_t*);                
CNNKIT_INSTANTIATE(float)
CNNKIT_INSTANTIATE(double)
#undef CNNKIT_INSTANTIATE

}  // namespace cnnkit

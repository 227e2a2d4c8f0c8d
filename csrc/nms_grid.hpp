// The kept boxes of greedy NMS, indexed for the one question greedy NMS asks:
// "does any kept box have IoU > t with this candidate?". Internal to the NMS
// family (csrc/nms.cpp); Soft-NMS, which must visit every overlapping box
// once, keeps using BoxGrid.
//
// Why a second grid: BoxGrid lists each box in every cell it covers, as
// linked entries that point back into the box array, so a query chases
// pointers and skips duplicates one entry at a time. Here the grid is keyed by
// box centre, and each cell stores its kept boxes' coordinates and areas
// contiguously, in blocks of kLanes, so a query runs the IoU of a whole block
// without branches (the compiler vectorises it) and stops at the first block
// that suppresses.
//
// Which cells a query reads: IoU(a, b) > t >= 0 implies, along x, that the
// overlap width exceeds t * max(wa, wb) while it is at most
// (wa + wb) / 2 - |dx| (dx the centre distance), so
// |dx| < (1 - t) * max(wa, wb); likewise along y. With W the largest width of
// the "regular" candidates, a query looks (1 - t) * max(wa, W) around its
// centre (plus a relative margin for rounding, the exact IoU decides). Boxes
// much larger than the median (the "large" ones, which would blow up W) are
// kept in a separate list that every query scans.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "iou_scalar.hpp"

namespace cnnkit::detail {

template <class T>
class KeptGrid {
 public:
  static constexpr int kLanes = 8;

  // Sizes the grid for the candidates members[0..count) (indices into boxes,
  // areas[i] the area of box i) and the IoU threshold t >= 0.
  KeptGrid(const T* boxes, const T* areas, const int64_t* members, int64_t count, double t)
      : boxes_(boxes), areas_(areas) {
    // Suppression means double(iou) > t; for iou of type T that is iou > limit_,
    // the largest T not above t.
    limit_ = T(t);
    if (double(limit_) > t) limit_ = std::nextafter(limit_, T(-HUGE_VAL));
    reach_ = (1.0 - std::min(t, 1.0)) * (1.0 + 1e-3);
    if (count == 0) return;
    std::vector<double> widths, heights;
    widths.reserve(size_t(count)), heights.reserve(size_t(count));
    for (int64_t k = 0; k < count; ++k) {
      const T* r = boxes + 4 * members[k];
      widths.push_back(double(r[2]) - double(r[0]));
      heights.push_back(double(r[3]) - double(r[1]));
    }
    large_w_ = 4.0 * median(widths), large_h_ = 4.0 * median(heights);
    double lo_x = HUGE_VAL, lo_y = HUGE_VAL, hi_x = -HUGE_VAL, hi_y = -HUGE_VAL;
    for (int64_t k = 0; k < count; ++k) {
      const T* r = boxes + 4 * members[k];
      const double w = double(r[2]) - double(r[0]), h = double(r[3]) - double(r[1]);
      if (is_large(w, h)) continue;
      max_w_ = std::max(max_w_, w), max_h_ = std::max(max_h_, h);
      const double cx = centre(r[0], r[2]), cy = centre(r[1], r[3]);
      lo_x = std::min(lo_x, cx), hi_x = std::max(hi_x, cx);
      lo_y = std::min(lo_y, cy), hi_y = std::max(hi_y, cy);
    }
    if (!(lo_x <= hi_x)) return;  // every candidate is large
    // Cells about one query radius wide: a query then reads about 3 x 3
    // cells. Capped at 2 * count cells so that tiny radii cost no memory.
    const double ext_x = hi_x - lo_x, ext_y = hi_y - lo_y;
    const double cell_w = std::max(reach_ * max_w_, 1e-300), cell_h = std::max(reach_ * max_h_, 1e-300);
    double gx = std::max(1.0, std::ceil(ext_x / cell_w)), gy = std::max(1.0, std::ceil(ext_y / cell_h));
    const double max_cells = std::max(1.0, 2.0 * double(count));
    gx = std::min(gx, max_cells), gy = std::min(gy, max_cells);
    if (gx * gy > max_cells) {
      const double shrink = std::sqrt(gx * gy / max_cells);
      gx = std::max(1.0, std::floor(gx / shrink)), gy = std::max(1.0, std::floor(gy / shrink));
      gx = std::max(1.0, std::min(gx, std::floor(max_cells / gy)));
    }
    gx_ = int64_t(gx), gy_ = int64_t(gy);
    x0_ = lo_x, y0_ = lo_y;
    sx_ = ext_x > 0 ? gx / ext_x : 0.0, sy_ = ext_y > 0 ? gy / ext_y : 0.0;
    cells_.assign(size_t(gx_ * gy_), Cell{});
  }

  void insert(int64_t box) {
    const T* r = boxes_ + 4 * box;
    const double w = double(r[2]) - double(r[0]), h = double(r[3]) - double(r[1]);
    if (is_large(w, h) || cells_.empty()) {
      append(large_, r, areas_[box]);
      return;
    }
    const int64_t cx = cell(centre(r[0], r[2]), x0_, sx_, gx_);
    const int64_t cy = cell(centre(r[1], r[3]), y0_, sy_, gy_);
    append(cells_[size_t(cy * gx_ + cx)], r, areas_[box]);
  }

  // Whether a kept box has IoU > t with `box`.
  bool suppresses(int64_t box) const {
    const T* r = boxes_ + 4 * box;
    const T area = areas_[box];
    if (hits(large_, r, area)) return true;
    if (cells_.empty()) return false;
    const double w = double(r[2]) - double(r[0]), h = double(r[3]) - double(r[1]);
    const double rx = reach_ * std::max(w, max_w_), ry = reach_ * std::max(h, max_h_);
    const double cx = centre(r[0], r[2]), cy = centre(r[1], r[3]);
    const int64_t x0 = cell(cx - rx, x0_, sx_, gx_), x1 = cell(cx + rx, x0_, sx_, gx_);
    const int64_t y0 = cell(cy - ry, y0_, sy_, gy_), y1 = cell(cy + ry, y0_, sy_, gy_);
    for (int64_t y = y0; y <= y1; ++y)
      for (int64_t x = x0; x <= x1; ++x)
        if (hits(cells_[size_t(y * gx_ + x)], r, area)) return true;
    return false;
  }

 private:
  // kLanes boxes; unused lanes hold the empty box at the origin, whose IoU
  // with anything is 0.
  struct Block {
    T x1[kLanes] = {}, y1[kLanes] = {}, x2[kLanes] = {}, y2[kLanes] = {}, area[kLanes] = {};
  };
  struct Cell {
    std::vector<Block> blocks;
    int64_t size = 0;
  };

  static void append(Cell& c, const T* r, T area) {
    const int64_t lane = c.size % kLanes;
    if (lane == 0) c.blocks.emplace_back();
    Block& b = c.blocks.back();
    b.x1[lane] = r[0], b.y1[lane] = r[1], b.x2[lane] = r[2], b.y2[lane] = r[3];
    b.area[lane] = area;
    ++c.size;
  }

  // The same operations, in the same order, as pair_iou in nms.cpp and the
  // IoU kernels (iou_scalar.hpp), so decisions match box_iou bit for bit.
  bool hits(const Cell& c, const T* r, T area) const {
    const T ax1 = r[0], ay1 = r[1], ax2 = r[2], ay2 = r[3], limit = limit_;
    for (const Block& b : c.blocks) {
      int any = 0;
      for (int l = 0; l < kLanes; ++l) {
        const T inter =
            intersection_area(ax1, ay1, ax2, ay2, b.x1[l], b.y1[l], b.x2[l], b.y2[l]);
        any |= int(iou_from_parts(inter, area, b.area[l]) > limit);
      }
      if (any) return true;
    }
    return false;
  }

  bool is_large(double w, double h) const { return w > large_w_ || h > large_h_; }
  static double centre(T lo, T hi) { return 0.5 * (double(lo) + double(hi)); }
  static double median(std::vector<double>& v) {
    auto mid = v.begin() + v.size() / 2;
    std::nth_element(v.begin(), mid, v.end());
    return *mid;
  }
  static int64_t cell(double v, double origin, double scale, int64_t count) {
    const double c = std::floor((v - origin) * scale);
    return c <= 0 ? 0 : (c >= double(count - 1) ? count - 1 : int64_t(c));
  }

  const T* boxes_;
  const T* areas_;
  T limit_;
  double reach_ = 1.0, large_w_ = 0, large_h_ = 0, max_w_ = 0, max_h_ = 0;
  int64_t gx_ = 1, gy_ = 1;
  double x0_ = 0, y0_ = 0, sx_ = 0, sy_ = 0;
  std::vector<Cell> cells_;
  Cell large_;
};

}  // namespace cnnkit::detail

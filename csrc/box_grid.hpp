// A uniform grid over a set of xyxy boxes, used to find the boxes that may
// overlap a given one without scanning them all. Internal to the NMS family.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace cnnkit::detail {

template <class T>
class BoxGrid {
 public:
  // Sizes the grid for the boxes members[0..count) (indices into boxes); any
  // of them can be inserted later.
  BoxGrid(const T* boxes, const int64_t* members, int64_t count) : boxes_(boxes) {
    if (count == 0) return;
    double lo_x = HUGE_VAL, lo_y = HUGE_VAL, hi_x = -HUGE_VAL, hi_y = -HUGE_VAL;
    std::vector<double> widths(count), heights(count);
    for (int64_t k = 0; k < count; ++k) {
      const T* r = boxes + 4 * members[k];
      lo_x = std::min<double>(lo_x, r[0]), lo_y = std::min<double>(lo_y, r[1]);
      hi_x = std::max<double>(hi_x, r[2]), hi_y = std::max<double>(hi_y, r[3]);
      widths[k] = double(r[2]) - double(r[0]), heights[k] = double(r[3]) - double(r[1]);
    }
    // Cells about the size of a typical box: most boxes then cover 1 to 4
    // cells and a cell holds few boxes when boxes are spread out.
    const double cell_w = median(widths), cell_h = median(heights);
    const double ext_x = hi_x - lo_x, ext_y = hi_y - lo_y;
    double gx = ext_x > 0 ? std::ceil(ext_x / std::max(cell_w, ext_x * 1e-6)) : 1.0;
    double gy = ext_y > 0 ? std::ceil(ext_y / std::max(cell_h, ext_y * 1e-6)) : 1.0;
    const double max_cells = std::max(1.0, 2.0 * double(count));
    if (gx * gy > max_cells) {
      const double shrink = std::sqrt(gx * gy / max_cells);
      gx = std::max(1.0, std::floor(gx / shrink)), gy = std::max(1.0, std::floor(gy / shrink));
    }
    gx_ = int64_t(gx), gy_ = int64_t(gy);
    x0_ = lo_x, y0_ = lo_y;
    sx_ = ext_x > 0 ? gx / ext_x : 0.0, sy_ = ext_y > 0 ? gy / ext_y : 0.0;
    head_.assign(size_t(gx_ * gy_), -1);
  }

  void insert(int64_t box) {
    inserted_.push_back(box);
    const Range r = range_of(box);
    if (r.cells() > kMaxCellsPerBox) {
      large_.push_back(box);
      return;
    }
    for (int64_t cy = r.y0; cy <= r.y1; ++cy)
      for (int64_t cx = r.x0; cx <= r.x1; ++cx) {
        int64_t& head = head_[size_t(cy * gx_ + cx)];
        entries_.push_back({box, head, r.x0, r.y0});
        head = int64_t(entries_.size()) - 1;
      }
  }

  // Calls visit(j) once for each inserted box j that may overlap `box` (a
  // superset of those that do) until visit returns true; returns whether one
  // did.
  template <class F>
  bool any_near(int64_t box, F&& visit) const {
    const Range r = range_of(box);
    if (r.cells() > kMaxCellsPerBox) {
      for (int64_t j : inserted_)
        if (visit(j)) return true;
      return false;
    }
    for (int64_t j : large_)
      if (visit(j)) return true;
    for (int64_t cy = r.y0; cy <= r.y1; ++cy)
      for (int64_t cx = r.x0; cx <= r.x1; ++cx)
        for (int64_t e = head_[size_t(cy * gx_ + cx)]; e >= 0; e = entries_[size_t(e)].next) {
          const Entry& entry = entries_[size_t(e)];
          // A box listed in several of the query's cells is visited only in
          // the first cell the two ranges share.
          if (cx != std::max(entry.x0, r.x0) || cy != std::max(entry.y0, r.y0)) continue;
          if (visit(entry.box)) return true;
        }
    return false;
  }

 private:
  static constexpr int64_t kMaxCellsPerBox = 64;
  struct Entry {
    int64_t box, next;
    int64_t x0, y0;  // the box's first cell
  };
  struct Range {
    int64_t x0, y0, x1, y1;
    int64_t cells() const { return (x1 - x0 + 1) * (y1 - y0 + 1); }
  };

  static double median(std::vector<double>& v) {
    auto mid = v.begin() + v.size() / 2;
    std::nth_element(v.begin(), mid, v.end());
    return *mid;
  }
  // Monotone in the coordinate, so boxes whose interiors overlap share a cell.
  static int64_t cell(double v, double origin, double scale, int64_t count) {
    const double c = std::floor((v - origin) * scale);
    return c <= 0 ? 0 : (c >= double(count - 1) ? count - 1 : int64_t(c));
  }
  Range range_of(int64_t box) const {
    const T* r = boxes_ + 4 * box;
    return {cell(r[0], x0_, sx_, gx_), cell(r[1], y0_, sy_, gy_), cell(r[2], x0_, sx_, gx_),
            cell(r[3], y0_, sy_, gy_)};
  }

  const T* boxes_;
  int64_t gx_ = 1, gy_ = 1;
  double x0_ = 0, y0_ = 0, sx_ = 0, sy_ = 0;
  std::vector<int64_t> head_{-1};
  std::vector<Entry> entries_;
  std::vector<int64_t> large_, inserted_;
};

}  // namespace cnnkit::detail

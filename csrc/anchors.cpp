#include "anchors.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "interrupt.hpp"
#include "parallel.hpp"

namespace cnnkit {

namespace {

// Where an object goes and what its row says; valid == false when it is skipped.
struct Placement {
  bool valid = false;
  int64_t slot = 0;  // (row * grid_w + column) * num_anchors + anchor
  double iou = 0, bx = 0, by = 0, bh = 0, bw = 0;
};

// One axis: the cell holding `centre` among `cells` cells over `extent`
// pixels, and the offset in it. An exact right/bottom edge goes to the last
// cell, at offset 1: centre * cells / extent can round to just above cells
// there (5.2387 * 7 / 5.2387 = 7.000000000000001), so the offset is capped.
void locate(double centre, int64_t cells, double extent, int64_t& cell, double& offset) {
  const double u = centre * static_cast<double>(cells) / extent;
  cell = std::min(static_cast<int64_t>(std::floor(u)), cells - 1);
  offset = std::min(u - static_cast<double>(cell), 1.0);
}

template <class T>
Placement place(const YoloLayout& g, const T* box) {
  Placement p;
  const double x1 = box[0], y1 = box[1], x2 = box[2], y2 = box[3];
  const double w = x2 - x1, h = y2 - y1;
  const double cx = (x1 + x2) * 0.5, cy = (y1 + y2) * 0.5;
  if (!(w > 0 && h > 0) || cx < 0 || cx > g.image_w || cy < 0 || cy > g.image_h) return p;
  int64_t row, col;
  locate(cx, g.grid_w, g.image_w, col, p.bx);
  locate(cy, g.grid_h, g.image_h, row, p.by);
  int64_t best = 0;
  double best_iou = -1;
  for (int64_t a = 0; a < g.num_anchors; ++a) {
    const double iou = centred_iou(w, h, g.anchors[2 * a], g.anchors[2 * a + 1]);
    if (iou > best_iou) best_iou = iou, best = a;
  }
  p.valid = true;
  p.slot = (row * g.grid_w + col) * g.num_anchors + best;
  p.iou = best_iou;
  p.bw = w * static_cast<double>(g.grid_w) / g.image_w;
  p.bh = h * static_cast<double>(g.grid_h) / g.image_h;
  return p;
}

template <class T>
int64_t encode_image(const YoloLayout& g, const T* boxes, const int64_t* classes, int64_t k, T* y,
                     std::vector<int64_t>& owner, std::vector<double>& owner_iou) {
  const int64_t slots = g.grid_h * g.grid_w * g.num_anchors;
  owner.assign(static_cast<size_t>(slots), -1);
  owner_iou.assign(static_cast<size_t>(slots), 0.0);
  std::vector<Placement> placed(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) {
    const Placement p = place(g, boxes + 4 * i);
    placed[size_t(i)] = p;
    if (!p.valid) continue;
    // Objects come in index order, so a strict comparison leaves ties to the lower index.
    int64_t& o = owner[size_t(p.slot)];
    if (o < 0 || p.iou > owner_iou[size_t(p.slot)]) {
      o = i;
      owner_iou[size_t(p.slot)] = p.iou;
    }
  }
  std::fill(y, y + g.image_size(), T(0));
  int64_t kept = 0;
  for (int64_t s = 0; s < slots; ++s) {
    const int64_t i = owner[size_t(s)];
    if (i < 0) continue;
    const Placement& p = placed[size_t(i)];
    T* row = y + s * g.row_size();
    row[0] = T(1);
    row[1] = static_cast<T>(p.bx);
    row[2] = static_cast<T>(p.by);
    row[3] = static_cast<T>(p.bh);
    row[4] = static_cast<T>(p.bw);
    row[5 + classes[i]] = T(1);
    ++kept;
  }
  return k - kept;
}

template <class T>
void decode_image(const YoloLayout& g, const T* y, double threshold, Detections<T>& out) {
  out = Detections<T>{};
  const int64_t rs = g.row_size();
  const double cell_w = g.image_w / static_cast<double>(g.grid_w);
  const double cell_h = g.image_h / static_cast<double>(g.grid_h);
  for (int64_t r = 0; r < g.grid_h; ++r)
    for (int64_t c = 0; c < g.grid_w; ++c)
      for (int64_t a = 0; a < g.num_anchors; ++a) {
        const T* row = y + ((r * g.grid_w + c) * g.num_anchors + a) * rs;
        int64_t cls = 0;
        for (int64_t j = 1; j < g.num_classes; ++j)
          if (row[5 + j] > row[5 + cls]) cls = j;
        const double score = static_cast<double>(row[0]) * static_cast<double>(row[5 + cls]);
        if (!(score >= threshold)) continue;
        const double cx = (static_cast<double>(c) + static_cast<double>(row[1])) * cell_w;
        const double cy = (static_cast<double>(r) + static_cast<double>(row[2])) * cell_h;
        const double half_h = static_cast<double>(row[3]) * cell_h * 0.5;
        const double half_w = static_cast<double>(row[4]) * cell_w * 0.5;
        out.boxes.insert(out.boxes.end(), {static_cast<T>(cx - half_w), static_cast<T>(cy - half_h),
                                           static_cast<T>(cx + half_w), static_cast<T>(cy + half_h)});
        out.scores.push_back(static_cast<T>(score));
        out.classes.push_back(cls);
      }
}

}  // namespace

template <class T>
void yolo_encode(const YoloLayout& layout, const T* boxes, const int64_t* classes,
                 const int64_t* offsets, int64_t n, T* y, int64_t* dropped) {
  const int64_t work = n * (layout.image_size() + 4 * layout.num_anchors);
  const int threads = static_cast<int>(std::min<int64_t>(threads_for(work, 1 << 14), n));
  const StopToken stop;
#pragma omp parallel num_threads(std::max(threads, 1)) if (threads > 1)
  {
    std::vector<int64_t> owner;
    std::vector<double> owner_iou;
#pragma omp for schedule(dynamic, 1)
    for (int64_t j = 0; j < n; ++j) {
      if (stop) continue;
      const int64_t begin = offsets[j];
      dropped[j] = encode_image(layout, boxes + 4 * begin, classes + begin, offsets[j + 1] - begin,
                                y + j * layout.image_size(), owner, owner_iou);
    }
  }
}

template <class T>
void yolo_decode(const YoloLayout& layout, const T* y, int64_t n, double threshold,
                 Detections<T>* out) {
  const int threads =
      static_cast<int>(std::min<int64_t>(threads_for(n * layout.image_size(), 1 << 15), n));
  const StopToken stop;
#pragma omp parallel for num_threads(std::max(threads, 1)) if (threads > 1) schedule(dynamic, 1)
  for (int64_t j = 0; j < n; ++j)
    if (!stop) decode_image(layout, y + j * layout.image_size(), threshold, out[j]);
}

template <class T>
int64_t count_distinct_shapes(const T* wh, int64_t m) {
  std::vector<std::pair<T, T>> shapes(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i) shapes[size_t(i)] = {wh[2 * i], wh[2 * i + 1]};
  std::sort(shapes.begin(), shapes.end());
  return std::unique(shapes.begin(), shapes.end()) - shapes.begin();
}

template <class T>
void kmeans_seed(const T* wh, int64_t m, int64_t k, const double* uniforms, double* centres) {
  std::vector<double> d2(static_cast<size_t>(m), 0.0), cum(static_cast<size_t>(m));
  auto take = [&](int64_t j, int64_t i) {
    const double cw = wh[2 * i], ch = wh[2 * i + 1];
    centres[2 * j] = cw;
    centres[2 * j + 1] = ch;
    for (int64_t p = 0; p < m; ++p) {
      const double d = 1.0 - centred_iou(wh[2 * p], wh[2 * p + 1], cw, ch);
      if (j == 0 || d * d < d2[size_t(p)]) d2[size_t(p)] = d * d;
    }
  };
  take(0, std::min(static_cast<int64_t>(uniforms[0] * static_cast<double>(m)), m - 1));
  for (int64_t j = 1; j < k; ++j) {
    double total = 0;
    for (int64_t p = 0; p < m; ++p) cum[size_t(p)] = total += d2[size_t(p)];
    int64_t pick = -1;
    if (total > 0) {
      const double target = uniforms[j] * total;
      pick = std::upper_bound(cum.begin(), cum.end(), target) - cum.begin();
      // target == total only by rounding: take the last box that can be chosen.
      if (pick == m)
        for (pick = m - 1; d2[size_t(pick)] == 0; --pick) {
        }
    } else {
      for (int64_t p = 0; p < m && pick < 0; ++p) {
        bool is_centre = false;
        for (int64_t q = 0; q < j; ++q)
          is_centre |= centres[2 * q] == double(wh[2 * p]) && centres[2 * q + 1] == double(wh[2 * p + 1]);
        if (!is_centre) pick = p;
      }
    }
    take(j, pick);
  }
}

template <class T>
KMeansStats kmeans_anchors(const T* wh, int64_t m, double* centres, int64_t k,
                           int64_t max_iterations, double iou_threshold, T* anchors) {
  KMeansStats stats;
  // Every step is a fork and a join: a thread gets at least ~2^18 IoUs
  // (about half a millisecond) so that the team's start and barrier stay small.
  const int threads = threads_for(m * k, 1 << 18);
  std::vector<int64_t> labels(static_cast<size_t>(m), -1), next(static_cast<size_t>(m));
  std::vector<double> best_iou(static_cast<size_t>(m));
  // Best centre (or anchor) of every box; each box is independent, so the
  // split over threads changes nothing.
  auto assign = [&](const double* c, int64_t* label, double* iou_out) {
    const StopToken stop;
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
    for (int64_t i = 0; i < m; ++i) {
      if (stop) continue;
      const double w = wh[2 * i], h = wh[2 * i + 1];
      int64_t best = 0;
      double best_value = -1;
      for (int64_t j = 0; j < k; ++j) {
        const double iou = centred_iou(w, h, c[2 * j], c[2 * j + 1]);
        if (iou > best_value) best_value = iou, best = j;
      }
      label[i] = best;
      iou_out[i] = best_value;
    }
  };
  std::vector<double> sums(static_cast<size_t>(2 * k));
  std::vector<int64_t> counts(static_cast<size_t>(k));
  for (int64_t it = 0; it < max_iterations; ++it) {
    assign(centres, next.data(), best_iou.data());
    ++stats.iterations;
    if (next == labels) break;
    labels.swap(next);
    std::fill(sums.begin(), sums.end(), 0.0);
    std::fill(counts.begin(), counts.end(), 0);
    // Sequential, in box order: the reference's np.bincount sums the same way.
    for (int64_t i = 0; i < m; ++i) {
      const int64_t l = labels[size_t(i)];
      sums[size_t(2 * l)] += static_cast<double>(wh[2 * i]);
      sums[size_t(2 * l + 1)] += static_cast<double>(wh[2 * i + 1]);
      ++counts[size_t(l)];
    }
    for (int64_t j = 0; j < k; ++j)
      if (counts[size_t(j)] > 0) {
        centres[2 * j] = sums[size_t(2 * j)] / static_cast<double>(counts[size_t(j)]);
        centres[2 * j + 1] = sums[size_t(2 * j + 1)] / static_cast<double>(counts[size_t(j)]);
      }
  }
  // Sorted by the area of the returned (rounded) shapes: two centres whose
  // double areas differ by less than float32's rounding could otherwise come
  // back out of order (768.00003 x 1 before 768 x 1; found by the reference
  // test).
  std::vector<T> shapes_out(static_cast<size_t>(2 * k));
  for (int64_t j = 0; j < 2 * k; ++j) shapes_out[size_t(j)] = static_cast<T>(centres[j]);
  const auto area = [&](int64_t j) {
    return static_cast<double>(shapes_out[size_t(2 * j)]) *
           static_cast<double>(shapes_out[size_t(2 * j + 1)]);
  };
  std::vector<int64_t> order(static_cast<size_t>(k));
  std::iota(order.begin(), order.end(), int64_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return area(a) < area(b); });
  std::vector<double> rounded(static_cast<size_t>(2 * k));
  for (int64_t j = 0; j < k; ++j) {
    anchors[2 * j] = shapes_out[size_t(2 * order[size_t(j)])];
    anchors[2 * j + 1] = shapes_out[size_t(2 * order[size_t(j)] + 1)];
  }
  // Read back in a loop of its own: GCC 12 at -O3 forwarded the unrounded
  // doubles when the copy sat in the loop above (found by the reference test).
  for (int64_t j = 0; j < 2 * k; ++j) rounded[size_t(j)] = static_cast<double>(anchors[j]);
  assign(rounded.data(), next.data(), best_iou.data());
  for (int64_t i = 0; i < m; ++i) {
    stats.iou_sum += best_iou[size_t(i)];
    stats.hits += best_iou[size_t(i)] >= iou_threshold;
  }
  return stats;
}

#define CNNKIT_ANCHORS(T)                                                                       \
  template void yolo_encode<T>(const YoloLayout&, const T*, const int64_t*, const int64_t*,     \
                               int64_t, T*, int64_t*);                                          \
  template void yolo_decode<T>(const YoloLayout&, const T*, int64_t, double, Detections<T>*);   \
  template KMeansStats kmeans_anchors<T>(const T*, int64_t, double*, int64_t, int64_t, double, \
                                         T*);                                           \
  template int64_t count_distinct_shapes<T>(const T*, int64_t);                                 \
  template void kmeans_seed<T>(const T*, int64_t, int64_t, const double*, double*);
CNNKIT_ANCHORS(float)
CNNKIT_ANCHORS(double)
#undef CNNKIT_ANCHORS

}  // namespace cnnkit

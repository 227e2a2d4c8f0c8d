#include "nms.hpp"

#include <algorithm>
#include <cmath>
#include <queue>

#include "box_grid.hpp"
#include "interrupt.hpp"
#include "iou_scalar.hpp"
#include "nms_grid.hpp"
#include "parallel.hpp"

namespace cnnkit {

namespace {

template <class T>
T pair_iou(const T* boxes, const T* areas, int64_t i, int64_t j) {
  const T* a = boxes + 4 * i;
  const T* b = boxes + 4 * j;
  return iou_from_parts(intersection_area(a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]),
                        areas[i], areas[j]);
}

template <class T>
std::vector<T> areas_of(const T* boxes, int64_t n) {
  std::vector<T> areas(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const T* r = boxes + 4 * i;
    areas[size_t(i)] = box_area_of(r[0], r[1], r[2], r[3]);
  }
  return areas;
}

// Indices of the boxes that pass the score threshold, by decreasing score,
// equal scores by increasing index.
template <class T>
std::vector<int64_t> score_order(const T* scores, int64_t n, const NmsOptions& opt) {
  std::vector<int64_t> order;
  order.reserve(size_t(n));
  for (int64_t i = 0; i < n; ++i)
    if (!opt.use_score_threshold || double(scores[i]) >= opt.score_threshold) order.push_back(i);
  std::sort(order.begin(), order.end(), [scores](int64_t a, int64_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  });
  return order;
}

// Greedy NMS over candidates already in visiting order; appends kept indices.
template <class T>
void greedy(const T* boxes, const T* areas, const int64_t* order, int64_t count, double threshold,
            int64_t max_output, std::vector<int64_t>& kept) {
  detail::KeptGrid<T> grid(boxes, areas, order, count, threshold);
  for (int64_t k = 0; k < count; ++k) {
    if (max_output >= 0 && int64_t(kept.size()) >= max_output) break;
    const int64_t i = order[k];
    // An empty box has IoU 0 with everything: it is kept and never suppresses.
    if (areas[i] > T(0)) {
      if (grid.suppresses(i)) continue;
      grid.insert(i);
    }
    kept.push_back(i);
  }
}

}  // namespace

template <class T>
std::vector<int64_t> nms(const T* boxes, const T* scores, int64_t n, const NmsOptions& opt) {
  std::vector<int64_t> kept;
  if (n == 0 || opt.max_output == 0) return kept;
  const std::vector<T> areas = areas_of(boxes, n);
  const std::vector<int64_t> order = score_order(scores, n, opt);
  greedy(boxes, areas.data(), order.data(), int64_t(order.size()), opt.iou_threshold,
         opt.max_output, kept);
  return kept;
}

template <class T>
std::vector<int64_t> batched_nms(const T* boxes, const T* scores, const int64_t* classes,
                                 int64_t n, const NmsOptions& opt) {
  std::vector<int64_t> result;
  if (n == 0 || opt.max_output == 0) return result;
  const std::vector<T> areas = areas_of(boxes, n);
  const std::vector<int64_t> order = score_order(scores, n, opt);
  const int64_t count = int64_t(order.size());

  // Group the visiting order by class; within a group it stays in score order.
  std::vector<int64_t> grouped(order);
  std::stable_sort(grouped.begin(), grouped.end(),
                   [classes](int64_t a, int64_t b) { return classes[a] < classes[b]; });
  std::vector<int64_t> starts;
  for (int64_t k = 0; k < count; ++k)
    if (k == 0 || classes[grouped[size_t(k)]] != classes[grouped[size_t(k - 1)]]) starts.push_back(k);
  starts.push_back(count);
  const int64_t groups = int64_t(starts.size()) - 1;

  // Classes are independent, so they run in parallel; each writes only the
  // flags of its own boxes.
  std::vector<char> keep(size_t(n), 0);
  const int nt = threads_for(count, 2048);
  const StopToken stop;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
  for (int64_t g = 0; g < groups; ++g) {
    if (stop) continue;
    std::vector<int64_t> kept;
    const int64_t begin = starts[size_t(g)], size = starts[size_t(g + 1)] - begin;
    greedy(boxes, areas.data(), grouped.data() + begin, size, opt.iou_threshold, opt.max_output,
           kept);
    for (int64_t i : kept) keep[size_t(i)] = 1;
  }
  for (int64_t i : order) {
    if (opt.max_output >= 0 && int64_t(result.size()) >= opt.max_output) break;
    if (keep[size_t(i)]) result.push_back(i);
  }
  return result;
}

template <class T>
void soft_nms(const T* boxes, const T* scores, int64_t n, const SoftNmsOptions& opt,
              std::vector<int64_t>& indices, std::vector<T>& selected_scores) {
  indices.clear(), selected_scores.clear();
  const std::vector<T> areas = areas_of(boxes, n);
  std::vector<T> current(scores, scores + n);
  std::vector<char> removed(size_t(n), 1);
  std::vector<int64_t> members;
  for (int64_t i = 0; i < n; ++i)
    if (double(scores[i]) >= opt.score_threshold) members.push_back(i), removed[size_t(i)] = 0;

  detail::BoxGrid<T> grid(boxes, members.data(), int64_t(members.size()));
  for (int64_t i : members)
    if (areas[size_t(i)] > T(0)) grid.insert(i);

  // Max-heap on (score, lower index first). A box's score only decreases and
  // each decrease pushes a new entry, so an entry is current exactly when its
  // score equals the box's score.
  struct Entry {
    T score;
    int64_t index;
    bool operator<(const Entry& o) const {
      return score < o.score || (score == o.score && index > o.index);
    }
  };
  std::priority_queue<Entry> heap;
  for (int64_t i : members) heap.push({current[size_t(i)], i});

  const double sigma = opt.sigma, lin_threshold = opt.iou_threshold;
  while (!heap.empty()) {
    const Entry top = heap.top();
    heap.pop();
    const int64_t m = top.index;
    if (removed[size_t(m)] || top.score != current[size_t(m)]) continue;
    removed[size_t(m)] = 1;
    indices.push_back(m);
    selected_scores.push_back(top.score);
    if (!(areas[size_t(m)] > T(0))) continue;  // IoU 0 with everything: no decay
    grid.any_near(m, [&](int64_t j) {
      if (removed[size_t(j)]) return false;
      const double iou = double(pair_iou(boxes, areas.data(), m, j));
      double factor = 1.0;
      if (opt.method == SoftNmsMethod::gaussian)
        factor = std::exp(-(iou * iou) / sigma);
      else if (iou > lin_threshold)
        factor = 1.0 - iou;
      if (factor == 1.0) return false;
      T& s = current[size_t(j)];
      const T decayed = T(double(s) * factor);
      if (decayed == s) return false;
      s = decayed;
      if (double(s) < opt.score_threshold)
        removed[size_t(j)] = 1;
      else
        heap.push({s, j});
      return false;
    });
  }
}

template std::vector<int64_t> nms<float>(const float*, const float*, int64_t, const NmsOptions&);
template std::vector<int64_t> nms<double>(const double*, const double*, int64_t, const NmsOptions&);
template std::vector<int64_t> batched_nms<float>(const float*, const float*, const int64_t*,
                                                 int64_t, const NmsOptions&);
template std::vector<int64_t> batched_nms<double>(const double*, const double*, const int64_t*,
                                                  int64_t, const NmsOptions&);
template void soft_nms<float>(const float*, const float*, int64_t, const SoftNmsOptions&,
                              std::vector<int64_t>&, std::vector<float>&);
template void soft_nms<double>(const double*, const double*, int64_t, const SoftNmsOptions&,
                               std::vector<int64_t>&, std::vector<double>&);

}  // namespace cnnkit

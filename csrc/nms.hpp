// Non-maximum suppression: greedy (nms), per class (batched_nms) and Soft-NMS.
// Boxes are valid, finite xyxy rows (the caller checks); scores are finite.
//
// Greedy NMS visits boxes in decreasing score order (equal scores: lower index
// first) and keeps a box unless its IoU with an already kept box is greater
// than iou_threshold. Only boxes with nearby centres can have IoU > threshold,
// so kept boxes are indexed in a uniform grid by centre, with their coordinates
// stored in the cells (csrc/nms_grid.hpp), and each candidate is compared with
// the kept boxes of the cells within reach, stopping at the first suppressor:
// cost follows the number of nearby pairs rather than N x kept. Soft-NMS uses
// the box grid of csrc/box_grid.hpp.
#pragma once

#include <cstdint>
#include <vector>

namespace cnnkit {

struct NmsOptions {
  double iou_threshold = 0.5;        // >= 0
  bool use_score_threshold = false;  // drop boxes with score < score_threshold first
  double score_threshold = 0.0;
  int64_t max_output = -1;  // < 0: no cap
};

template <class T>
std::vector<int64_t> nms(const T* boxes, const T* scores, int64_t n, const NmsOptions& opt);

// classes: one label per box; NMS runs within each label independently and
// the kept boxes are merged in decreasing score order (ties: lower index).
template <class T>
std::vector<int64_t> batched_nms(const T* boxes, const T* scores, const int64_t* classes,
                                 int64_t n, const NmsOptions& opt);

enum class SoftNmsMethod { linear, gaussian };

struct SoftNmsOptions {
  SoftNmsMethod method = SoftNmsMethod::gaussian;
  double sigma = 0.5;            // gaussian: score *= exp(-iou^2 / sigma)
  double iou_threshold = 0.3;    // linear: score *= 1 - iou when iou > iou_threshold
  double score_threshold = 0.001;  // boxes whose score is, or decays, below it are dropped
};

// Soft-NMS (Bodla et al. 2017). Scores must be >= 0. Fills indices in the
// order boxes were selected and the score each had when selected.
template <class T>
void soft_nms(const T* boxes, const T* scores, int64_t n, const SoftNmsOptions& opt,
              std::vector<int64_t>& indices, std::vector<T>& selected_scores);

}  // namespace cnnkit

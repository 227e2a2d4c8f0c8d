// YOLO targets and anchors: encoding ground-truth boxes into the course's
// (grid_h, grid_w, A, 5 + C) target, decoding such a target (or an activated
// network output) back into boxes, and k-means over box shapes with 1 - IoU of
// centred boxes as the distance (darknet's anchor clustering).
//
// A target row is [pc, bx, by, bh, bw, c_1 .. c_C]: pc the objectness, (bx, by)
// the midpoint relative to its cell (in cell units, so in [0, 1] for encoded
// boxes), bh and bw the box height and width in units of the cell height and
// width, then the class probabilities. Boxes are xyxy rows in pixels.
//
// Arithmetic is in double whatever T is, in a fixed order, so that a NumPy
// reference doing the same float64 operations agrees bit for bit and no result
// depends on the thread count.
#pragma once

#include <cstdint>
#include <vector>

namespace cnnkit {

struct YoloLayout {
  int64_t grid_h = 1, grid_w = 1;  // cells
  int64_t num_anchors = 1, num_classes = 1;
  double image_h = 1, image_w = 1;  // pixels, > 0
  const double* anchors = nullptr;  // num_anchors rows of (width, height) in pixels, > 0

  int64_t row_size() const noexcept { return 5 + num_classes; }
  int64_t image_size() const noexcept { return grid_h * grid_w * num_anchors * row_size(); }
};

// IoU of a w x h and an aw x ah box with the same centre; all sizes > 0.
inline double centred_iou(double w, double h, double aw, double ah) noexcept {
  const double inter = (w < aw ? w : aw) * (h < ah ? h : ah);
  return inter / (w * h + aw * ah - inter);
}

// Encodes images [0, n): image j's boxes are rows offsets[j] .. offsets[j + 1]
// of `boxes` (xyxy, finite, x1 <= x2, y1 <= y2) with classes in
// [0, num_classes). Writes the whole target of image j to
// y + j * layout.image_size() and the number of its objects that are not in
// it to dropped[j]. An object is dropped when its width or height is 0, when
// its midpoint lies outside [0, image_w] x [0, image_h], or when another
// object takes its cell and anchor: the one with the higher anchor IoU stays,
// on a tie the lower index. A midpoint on the right (bottom) edge goes to the
// last column (row), with bx (by) = 1.
template <class T>
void yolo_encode(const YoloLayout& layout, const T* boxes, const int64_t* classes,
                 const int64_t* offsets, int64_t n, T* y, int64_t* dropped);

template <class T>
struct Detections {
  std::vector<T> boxes;  // 4 per detection, xyxy pixels
  std::vector<T> scores;
  std::vector<int64_t> classes;
};

// Decodes n targets of layout.image_size() values each (y, contiguous) into
// out[0 .. n): every (row, column, anchor), in that order, whose score
// pc * max_c p_c is >= threshold (the class is the first maximal one). The
// box's midpoint is ((column + bx) * image_w / grid_w, (row + by) * image_h /
// grid_h) and its size (bw * image_w / grid_w, bh * image_h / grid_h).
template <class T>
void yolo_decode(const YoloLayout& layout, const T* y, int64_t n, double threshold,
                 Detections<T>* out);

struct KMeansStats {
  int64_t iterations = 0;  // assignment steps run
  double iou_sum = 0;      // sum over boxes of the best IoU with an anchor
  int64_t hits = 0;        // boxes whose best IoU is >= the threshold
};

// Number of distinct (width, height) rows among the m rows of wh.
template <class T>
int64_t count_distinct_shapes(const T* wh, int64_t m);

// k-means++ seeding (k <= the number of distinct shapes, m >= 1), driven by
// k uniforms in [0, 1) so that a caller's random generator decides: the first
// centre is box floor(u[0] * m); each next one is the first box whose running
// sum of D^2 (D = 1 - the best IoU with a centre so far, summed in box order)
// exceeds u[j] times the total. Boxes equal to a centre have D = 0 and are
// never chosen; if rounding leaves every D at 0, the first box whose shape
// differs from all centres is taken. Writes k rows of (width, height).
template <class T>
void kmeans_seed(const T* wh, int64_t m, int64_t k, const double* uniforms, double* centres);

// Lloyd iterations on box shapes wh (m rows of width, height, all > 0) from
// the k initial centres in `centres` (k rows of width, height, in/out, double).
// Each step assigns every box to the centre of highest centred IoU (ties: the
// lower index) and stops when no assignment changed or after max_iterations
// steps; otherwise each centre becomes the mean of its boxes (summed in box
// order), and a centre without boxes keeps its place. Afterwards the centres
// are sorted by area (stable), rounded to T into anchors (k rows), and the
// statistics compare every box with those rounded anchors.
template <class T>
KMeansStats kmeans_anchors(const T* wh, int64_t m, double* centres, int64_t k,
                           int64_t max_iterations, double iou_threshold, T* anchors);

}  // namespace cnnkit

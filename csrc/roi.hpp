// Region kernels of two-stage detectors on channels-last feature maps: RoI
// pooling (Fast R-CNN) and RoIAlign (Mask R-CNN), forward and backward, and the
// bounding boxes of masks.
//
// The semantics are torchvision.ops' (roi_pool, roi_align, masks_to_boxes),
// including its arithmetic in T, so that results agree to rounding; only the
// layout differs: x is (batch, height, width, channels) and the output is
// (K, pooled_h, pooled_w, channels) instead of torchvision's NCHW. Channels
// last makes the innermost loop run over contiguous channels of one pixel,
// which vectorises and reads each sampled pixel once for all channels.
//
// rois are K rows [batch_index, x1, y1, x2, y2] in input-image coordinates
// (multiplied by spatial_scale to reach the feature map). Preconditions,
// checked by the bindings: batch indices are whole numbers in [0, batch),
// coordinates are finite, height and width are >= 1, each RoI's sample count
// (roi_align_samples) is small enough to compute, and for roi_pool_backward in
// float, height * width < 2^31 (its cell indices are 32-bit there).
//
// Backward passes accumulate each image's gradient by one task per (image,
// channel block) that visits the RoIs in order, so results do not depend on
// the thread count.
#pragma once

#include <cmath>
#include <cstdint>

namespace cnnkit {

struct RoiGeometry {
  int64_t batch = 0, height = 0, width = 0, channels = 0;  // of the feature map x
  int64_t pooled_h = 1, pooled_w = 1;                      // output bins per RoI
  double spatial_scale = 1.0;
};

// RoIAlign's window for one RoI: its top-left corner, its bin size and the
// number of bilinear samples per bin along each axis (torchvision's
// roi_bin_grid; may be <= 0 for an empty aligned RoI, which then gives 0).
template <class T>
struct AlignWindow {
  T start_h, start_w, bin_h, bin_w;
  int64_t grid_h, grid_w;
};

// The adaptive grid (sampling_ratio <= 0) is ceil(roi size / bins), computed
// in double here so that the binding can refuse RoIs whose count would not fit
// in an int64 or would take hours, before any kernel runs.
template <class T>
double roi_align_samples(const RoiGeometry& g, const T* roi, int sampling_ratio, bool aligned) {
  const T offset = aligned ? T(0.5) : T(0), scale = T(g.spatial_scale);
  T h = (roi[4] * scale - offset) - (roi[2] * scale - offset);
  T w = (roi[3] * scale - offset) - (roi[1] * scale - offset);
  if (!aligned) {
    h = h > T(1) ? h : T(1);
    w = w > T(1) ? w : T(1);
  }
  const double gh = sampling_ratio > 0 ? sampling_ratio : std::ceil(double(h / T(g.pooled_h)));
  const double gw = sampling_ratio > 0 ? sampling_ratio : std::ceil(double(w / T(g.pooled_w)));
  return std::fmax(gh, 0.0) * std::fmax(gw, 0.0) * double(g.pooled_h) * double(g.pooled_w);
}

// y is (K, pooled_h, pooled_w, channels): the mean of the bilinear samples of
// each bin (samples more than one pixel outside the map count as 0).
template <class T>
void roi_align(const RoiGeometry& g, const T* x, const T* rois, int64_t k, int sampling_ratio,
               bool aligned, T* y);
// dx (batch, height, width, channels) = the gradient of sum(dy * roi_align(x)).
template <class T>
void roi_align_backward(const RoiGeometry& g, const T* dy, const T* rois, int64_t k,
                        int sampling_ratio, bool aligned, T* dx);

// y is (K, pooled_h, pooled_w, channels): the maximum over the integer cells
// of each bin (RoI corners rounded half away from zero), 0 for an empty bin.
// Ties go to the first cell in row-major order; NaN propagates (the first NaN).
template <class T>
void roi_pool(const RoiGeometry& g, const T* x, const T* rois, int64_t k, T* y);
// dx = the gradient of sum(dy * roi_pool(x)): each bin's dy goes to its maximal cell.
template <class T>
void roi_pool_backward(const RoiGeometry& g, const T* x, const T* dy, const T* rois, int64_t k,
                       T* dx);

// boxes (n, 4) = [min x, min y, max x, max y] of the nonzero cells of each
// (height, width) mask of 0/1 bytes; [0, 0, 0, 0] for a mask without one.
void masks_to_boxes(const uint8_t* masks, int64_t n, int64_t height, int64_t width, float* boxes);

}  // namespace cnnkit

// Region-proposal segmentation: Felzenszwalb and Huttenlocher's graph-based
// segmentation (IJCV 2004) with the semantics of
// skimage.segmentation.felzenszwalb, and the region bookkeeping of selective
// search (Uijlings et al. 2013) on top of it.
//
// The segmentation is the product here (the proposal step of R-CNN), so it is
// written out rather than borrowed from scikit-image: scikit-image is a heavy
// dependency and spends most of its time in NumPy temporaries and argsort.
#pragma once

#include <cstdint>

namespace cnnkit {

struct FelzenszwalbParams {
  double scale = 1.0;    // k of the paper, in units of the [0, 1] intensity scale times 255
  double sigma = 0.8;    // Gaussian smoothing per channel before the edge weights; 0: none
  int64_t min_size = 20; // components smaller than this are merged into a neighbour
};

// image: (height, width, channels) contiguous, already converted to intensity
// units (uint8 / 255 or float as is). labels: (height, width), written with
// 0..n-1 numbered by each segment's first pixel in raster order. Returns n.
// height * width must be below 2^30 (edge ids are 32-bit).
int64_t felzenszwalb(const double* image, int64_t height, int64_t width, int64_t channels,
                     const FelzenszwalbParams& params, int64_t* labels);

}  // namespace cnnkit

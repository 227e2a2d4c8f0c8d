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
#include <vector>

namespace cnnkit {

struct FelzenszwalbParams {
  double scale = 1.0;    // k of the paper, in units of the [0, 1] intensity scale times 255
  double sigma = 0.8;    // Gaussian smoothing per channel before the edge weights; 0: none
  int64_t min_size = 20; // components smaller than this are merged into a neighbour
};

// The pixel types felzenszwalb reads: uint8 in intensity units times 1/255
// (as skimage.util.img_as_float64 converts), floats as they are (finite);
// the arithmetic is float64 in every case.
enum class PixelType { u8, f32, f64 };

// image: (height, width, channels) contiguous, of `type`. labels: (height,
// width), written with 0..n-1 numbered by each segment's first pixel in
// raster order. Returns n. height * width must be below 2^30 (edge ids are
// 32-bit).
int64_t felzenszwalb(const void* image, PixelType type, int64_t height, int64_t width,
                     int64_t channels, const FelzenszwalbParams& params, int64_t* labels);

}  // namespace cnnkit

namespace cnnkit {

// Selective search's hierarchical grouping (Uijlings et al. 2013, section
// 3.1) of one initial segmentation under one similarity strategy. Every
// pixel carries its bin in each colour channel (0..24) and each texture
// channel (one per channel and gradient orientation, 0..9); a region's
// histograms are its pixels' bins, normalised to sum 1.
struct GroupingInput {
  int64_t height = 0, width = 0;
  const int64_t* labels = nullptr;  // (height, width), values in [0, regions)
  int64_t regions = 0;
  const uint8_t* colour_bins = nullptr;  // (height, width, colour_channels)
  int64_t colour_channels = 0;
  const uint8_t* texture_bins = nullptr;  // (height, width, texture_channels)
  int64_t texture_channels = 0;
  bool colour = true, texture = true, size = true, fill = true;  // the terms summed
};

constexpr int kColourBins = 25;
constexpr int kTextureBins = 10;

// Merges the most similar pair of 8-connected neighbouring regions until no
// pair is left (ties go to the pair with the smaller ids). boxes receives
// (x1, y1, x2, y2) in pixels, x2 and y2 exclusive, of every region in the
// order generated: the initial regions by label (an empty label gets no
// region and no box: labels must be 0..regions-1 each used), then each
// merge. Returns the number of regions generated.
int64_t group_regions(const GroupingInput& in, std::vector<int64_t>& boxes);

// The terms a similarity sums.
struct GroupingStrategy {
  bool colour = true, texture = true, size = true, fill = true;
};

// The grouping under each strategy (GroupingInput's flags unused), with the
// initial regions (histograms, adjacency) computed once for all: boxes[i] and
// the returned count [i] as above for strategies[i].
std::vector<int64_t> group_regions(const GroupingInput& in,
                                   const std::vector<GroupingStrategy>& strategies,
                                   std::vector<std::vector<int64_t>>& boxes);

constexpr int kTextureOrientations = 8;

// The per-pixel features of selective search, as cnnkit/_proposals.py computes
// them in NumPy (bit-identical). hsv_image: (pixels, 3) RGB in [0, 1] to hue,
// saturation, value in [0, 1]. texture_bins: (height, width, channels) in
// [0, 1] to (height, width, channels * 8) bins 0..9 of the positive part of
// the Gaussian (sigma 1) derivative in orientation o * 45 degrees, scaled by
// its maximum over the image; channel c, orientation o is bin c * 8 + o.
void hsv_image(const double* rgb, int64_t pixels, double* hsv);
void texture_bins(const double* image, int64_t height, int64_t width, int64_t channels,
                  uint8_t* bins);

}  // namespace cnnkit

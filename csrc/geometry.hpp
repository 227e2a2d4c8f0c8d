// Spatial geometry shared by convolution and pooling: per spatial dimension,
// the input size, window, stride, dilation, padding and output size.
// Output-size rule: out = floor((n + pad_before + pad_after - d*(k-1) - 1) / s) + 1.
#pragma once

#include <cstdint>

namespace cnnkit {

constexpr int kMaxSpatialDims = 3;

struct Geometry {
  int rank = 0;  // number of spatial dimensions, 1 to 3
  int64_t in[kMaxSpatialDims] = {1, 1, 1};
  int64_t kernel[kMaxSpatialDims] = {1, 1, 1};
  int64_t stride[kMaxSpatialDims] = {1, 1, 1};
  int64_t dilation[kMaxSpatialDims] = {1, 1, 1};
  int64_t pad_before[kMaxSpatialDims] = {0, 0, 0};
  int64_t pad_after[kMaxSpatialDims] = {0, 0, 0};
  int64_t out[kMaxSpatialDims] = {1, 1, 1};

  int64_t in_size() const { return in[0] * in[1] * in[2]; }
  int64_t out_size() const { return out[0] * out[1] * out[2]; }
  int64_t kernel_size() const { return kernel[0] * kernel[1] * kernel[2]; }
};

// The output size of one dimension; < 1 when the window does not fit.
inline int64_t output_extent(int64_t n, int64_t k, int64_t s, int64_t d, int64_t pad_before,
                             int64_t pad_after) {
  const int64_t span = n + pad_before + pad_after - d * (k - 1) - 1;
  return span < 0 ? 0 : span / s + 1;
}

// Keras/TensorFlow "same": out = ceil(n / s), the odd padding pixel at the end.
inline void same_padding(int64_t n, int64_t k, int64_t s, int64_t d, int64_t& pad_before,
                         int64_t& pad_after) {
  const int64_t out = (n + s - 1) / s;
  int64_t total = (out - 1) * s + d * (k - 1) + 1 - n;
  if (total < 0) total = 0;
  pad_before = total / 2;
  pad_after = total - pad_before;
}

}  // namespace cnnkit

// Spatial geometry shared by convolution and pooling: per spatial dimension,
// the input size, window, stride, dilation, padding and output size.
// Output-size rule: out = floor((n + pad_before + pad_after - d*(k-1) - 1) / s) + 1.
//
// Arguments come from Python ints, so any int64 can arrive here. Every size
// the kernels derive from them is computed in this file with overflow-checked
// arithmetic and bounded by kMaxExtent; after resolve_geometry() succeeds the
// kernels may add and multiply extents without checks.
#pragma once

#include <cstdint>

namespace cnnkit {

constexpr int kMaxSpatialDims = 3;

// The largest padded input, in bytes as if it were materialised, and so the
// largest extent, that geometry accepts: 2^60 (an exbibyte, beyond any
// memory) leaves three bits of int64 headroom, so index expressions in the
// kernels that add a few extents or scale one by an element size cannot
// overflow.
constexpr int64_t kMaxExtent = int64_t(1) << 60;

// Overflow-checked int64 arithmetic: false when the exact result does not fit.
inline bool checked_add(int64_t a, int64_t b, int64_t& r) noexcept {
  return !__builtin_add_overflow(a, b, &r);
}
inline bool checked_mul(int64_t a, int64_t b, int64_t& r) noexcept {
  return !__builtin_mul_overflow(a, b, &r);
}

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

// d * (k - 1) + 1, the span of a dilated window; false beyond kMaxExtent.
inline bool dilated_extent(int64_t k, int64_t d, int64_t& extent) noexcept {
  int64_t reach = 0;
  return checked_mul(d, k - 1, reach) && checked_add(reach, 1, extent) && extent <= kMaxExtent;
}

// n + pad_before + pad_after; false beyond kMaxExtent.
inline bool padded_extent(int64_t n, int64_t pad_before, int64_t pad_after,
                          int64_t& extent) noexcept {
  int64_t t = 0;
  return checked_add(n, pad_before, t) && checked_add(t, pad_after, extent) &&
         extent <= kMaxExtent;
}

// Keras/TensorFlow "same": out = ceil(n / s), the odd padding pixel at the
// end. `span` is the dilated window extent (<= kMaxExtent), so nothing here
// overflows: (out - 1) * s <= n - 1, where (n + s - 1) / s would not.
inline void same_padding(int64_t n, int64_t span, int64_t s, int64_t& pad_before,
                         int64_t& pad_after) noexcept {
  pad_before = pad_after = 0;
  if (n == 0) return;  // no output: the window fits nowhere, as with "valid"
  const int64_t out = (n - 1) / s + 1;
  int64_t total = (out - 1) * s + span - n;
  if (total < 0) total = 0;
  pad_before = total / 2;
  pad_after = total - pad_before;
}

// What resolve_geometry() found wrong, and in which dimension.
struct GeometryFault {
  enum Kind { none, dilation, padding, window, volume } kind = none;
  int dim = -1;
  int64_t span = 0, padded = 0;  // of `dim`, for the message
};

// Checks g (in, kernel, stride, dilation and padding set; kernel, stride and
// dilation >= 1, padding >= 0) and computes g.out. `channels` and `item_bytes`
// size the padded input, which must stay within kMaxExtent bytes. A stride
// longer than the padded input is reduced to its length, so that the kernels
// never multiply by a huge stride.
inline GeometryFault resolve_geometry(Geometry& g, int64_t channels, int64_t item_bytes) noexcept {
  GeometryFault f;
  int64_t volume = channels > 0 ? channels : 1;
  if (!checked_mul(volume, item_bytes, volume)) return {GeometryFault::volume, -1};
  for (int d = 0; d < g.rank; ++d) {
    f.dim = d;
    if (!dilated_extent(g.kernel[d], g.dilation[d], f.span)) return f.kind = f.dilation, f;
    if (!padded_extent(g.in[d], g.pad_before[d], g.pad_after[d], f.padded))
      return f.kind = f.padding, f;
    if (f.span > f.padded) return f.kind = f.window, f;
    // A longer stride gives one output whichever it is, and
    // out = (padded - span) / stride + 1 still holds after the reduction.
    if (g.stride[d] > f.padded) g.stride[d] = f.padded;
    g.out[d] = (f.padded - f.span) / g.stride[d] + 1;
    if (!checked_mul(volume, f.padded, volume) || volume > kMaxExtent)
      return f.kind = f.volume, f;
  }
  return {};
}

}  // namespace cnnkit

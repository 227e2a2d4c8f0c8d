// Iteration over a convolution's taps: which input position each kernel
// offset of an output position reads, and the transpose. Shared by the direct
// (non-GEMM) convolution loops. Internal to the conv family.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "geometry.hpp"

namespace cnnkit::detail {

// The taps of a convolution's output positions: for each kernel offset k
// (flat, row-major), the input position it reads.
class Taps {
 public:
  explicit Taps(const Geometry& g) : g_(g), delta_(size_t(g.kernel_size())) {
    size_t k = 0;
    for (int64_t k0 = 0; k0 < g.kernel[0]; ++k0)
      for (int64_t k1 = 0; k1 < g.kernel[1]; ++k1)
        for (int64_t k2 = 0; k2 < g.kernel[2]; ++k2)
          delta_[k++] = ((k0 * g.dilation[0]) * g.in[1] + k1 * g.dilation[1]) * g.in[2] +
                        k2 * g.dilation[2];
  }

  // Input offset of kernel offset k from kernel offset 0, for positions whose
  // window lies inside the input.
  const std::vector<int64_t>& offsets() const { return delta_; }

  // Calls tap(k, i) for each kernel offset k of output position `pos` of
  // image n whose input position i (flat over the batch's positions) lies
  // inside the input; padded taps are skipped.
  template <class Tap>
  void for_each(int64_t n, int64_t pos, Tap&& tap) const {
    const Geometry& g = g_;
    const int64_t o[3] = {pos / (g.out[1] * g.out[2]), (pos / g.out[2]) % g.out[1],
                          pos % g.out[2]};
    int64_t base[3];
    bool interior = true;
    for (int d = 0; d < 3; ++d) {
      base[d] = o[d] * g.stride[d] - g.pad_before[d];
      interior = interior && base[d] >= 0 && base[d] + g.dilation[d] * (g.kernel[d] - 1) < g.in[d];
    }
    if (interior) {  // most positions: every tap is a fixed offset from the first
      const int64_t first = ((n * g.in[0] + base[0]) * g.in[1] + base[1]) * g.in[2] + base[2];
      for (size_t k = 0; k < delta_.size(); ++k) tap(int64_t(k), first + delta_[k]);
      return;
    }
    int64_t k = 0;
    for (int64_t k0 = 0; k0 < g.kernel[0]; ++k0) {
      const int64_t i0 = base[0] + k0 * g.dilation[0];
      if (i0 < 0 || i0 >= g.in[0]) {
        k += g.kernel[1] * g.kernel[2];
        continue;
      }
      for (int64_t k1 = 0; k1 < g.kernel[1]; ++k1) {
        const int64_t i1 = base[1] + k1 * g.dilation[1];
        if (i1 < 0 || i1 >= g.in[1]) {
          k += g.kernel[2];
          continue;
        }
        for (int64_t k2 = 0; k2 < g.kernel[2]; ++k2, ++k) {
          const int64_t i2 = base[2] + k2 * g.dilation[2];
          if (i2 >= 0 && i2 < g.in[2]) tap(k, ((n * g.in[0] + i0) * g.in[1] + i1) * g.in[2] + i2);
        }
      }
    }
  }

  // Calls pad(k) for each kernel offset k of output position `pos` whose input
  // position lies in the padding (none for most positions).
  template <class Pad>
  void for_each_padded(int64_t pos, Pad&& pad) const {
    const Geometry& g = g_;
    const int64_t o[3] = {pos / (g.out[1] * g.out[2]), (pos / g.out[2]) % g.out[1],
                          pos % g.out[2]};
    const auto outside = [&](int d, int64_t kd) {
      const int64_t i = o[d] * g.stride[d] - g.pad_before[d] + kd * g.dilation[d];
      return i < 0 || i >= g.in[d];
    };
    int64_t k = 0;
    for (int64_t k0 = 0; k0 < g.kernel[0]; ++k0)
      for (int64_t k1 = 0; k1 < g.kernel[1]; ++k1)
        for (int64_t k2 = 0; k2 < g.kernel[2]; ++k2, ++k)
          if (outside(0, k0) || outside(1, k1) || outside(2, k2)) pad(k);
  }

 private:
  const Geometry& g_;
  std::vector<int64_t> delta_;  // input offset of each kernel offset from the first
};

// Calls tap(k, r) for each kernel offset k and output row r (flat over the
// batch) that reads input position `pos` of image n: the transpose of
// for_each_tap, so that gradients can be gathered rather than scattered.
template <class Tap>
inline void for_each_reader(const Geometry& g, int64_t n, int64_t pos, Tap&& tap) {
  const int64_t i[3] = {pos / (g.in[1] * g.in[2]), (pos / g.in[2]) % g.in[1], pos % g.in[2]};
  // The output coordinate along d that reads i[d] through kernel offset kd, or -1.
  auto reader = [&](int d, int64_t kd) -> int64_t {
    const int64_t t = i[d] + g.pad_before[d] - kd * g.dilation[d];
    if (g.stride[d] == 1) return t >= 0 && t < g.out[d] ? t : -1;  // no division
    if (t < 0 || t % g.stride[d] != 0) return -1;
    const int64_t od = t / g.stride[d];
    return od < g.out[d] ? od : -1;
  };
  int64_t k = 0;
  for (int64_t k0 = 0; k0 < g.kernel[0]; ++k0) {
    const int64_t o0 = reader(0, k0);
    for (int64_t k1 = 0; k1 < g.kernel[1]; ++k1) {
      const int64_t o1 = o0 < 0 ? -1 : reader(1, k1);
      for (int64_t k2 = 0; k2 < g.kernel[2]; ++k2, ++k) {
        const int64_t o2 = o1 < 0 ? -1 : reader(2, k2);
        if (o2 >= 0) tap(k, ((n * g.out[0] + o0) * g.out[1] + o1) * g.out[2] + o2);
      }
    }
  }
}

}  // namespace cnnkit::detail

// Selective search's per-pixel features (the HSV colour space and the texture
// bins), written out in C++ because in NumPy they were a quarter of a fast-mode
// search: each step made a full-image temporary. Every operation is the one
// cnnkit/_proposals.py does, in the same precision and order (float32 for the
// texture, float64 for HSV; no FMA contraction in this target), so the bins and
// with them the boxes are bit-identical to the NumPy path the reference uses.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "segmentation.hpp"

namespace cnnkit {

void hsv_image(const double* rgb, int64_t pixels, double* hsv) {
  for (int64_t i = 0; i < pixels; ++i) {
    const double r = rgb[3 * i], g = rgb[3 * i + 1], b = rgb[3 * i + 2];
    const double top = std::max(std::max(r, g), b), bottom = std::min(std::min(r, g), b);
    const double spread = top - bottom;
    double hue = 0.0;
    if (spread > 0) {
      if (top == r) {
        // Python's float %: fmod, moved into [0, 6) when negative.
        hue = std::fmod((g - b) / spread, 6.0);
        if (hue < 0) hue += 6.0;
        if (hue == 0) hue = 0.0;
      } else if (top == g) {
        hue = (b - r) / spread + 2.0;
      } else {
        hue = (r - g) / spread + 4.0;
      }
      hue = hue / 6.0;
    }
    hsv[3 * i] = hue;
    hsv[3 * i + 1] = top > 0 ? spread / top : 0.0;
    hsv[3 * i + 2] = top;
  }
}

namespace {

// Gaussian of sigma 1, 9 taps, normalised in double then rounded to float.
std::vector<float> smoothing_taps() {
  double taps[9], sum = 0.0;
  for (int t = 0; t < 9; ++t) sum += taps[t] = std::exp(-0.5 * double((t - 4) * (t - 4)));
  std::vector<float> out(9);
  for (int t = 0; t < 9; ++t) out[size_t(t)] = float(taps[t] / sum);
  return out;
}

}  // namespace

void texture_bins(const double* image, int64_t height, int64_t width, int64_t channels,
                  uint8_t* bins) {
  const int64_t plane = height * width;
  const std::vector<float> taps = smoothing_taps();
  // Channel planes (c, H, W): the reductions and filters run over contiguous rows.
  std::vector<float> x(size_t(plane * channels)), rows(size_t(plane * channels));
  for (int64_t p = 0; p < plane; ++p)
    for (int64_t c = 0; c < channels; ++c) x[size_t(c * plane + p)] = float(image[p * channels + c]);
  std::vector<float> gx(size_t(plane * channels)), gy(size_t(plane * channels));
  std::vector<float> padded(size_t(width + 8));
  for (int64_t c = 0; c < channels; ++c) {
    const float* in = x.data() + c * plane;
    float* mid = rows.data() + c * plane;
    // Along y (axis 0), edges repeated; the sum in tap order from 0, as `out += w * x`.
    for (int64_t y = 0; y < height; ++y) {
      float* o = mid + y * width;
      std::fill(o, o + width, 0.0f);
      for (int t = 0; t < 9; ++t) {
        const int64_t sy = std::min(std::max(y + t - 4, int64_t(0)), height - 1);
        const float* s = in + sy * width;
        const float wt = taps[size_t(t)];
        for (int64_t xx = 0; xx < width; ++xx) o[xx] += wt * s[xx];
      }
    }
    // Along x (axis 1), into x's storage (no longer needed): each row copied with
    // its edges repeated, then the taps in order, as above.
    float* sm = x.data() + c * plane;
    for (int64_t y = 0; y < height; ++y) {
      const float* s = mid + y * width;
      for (int64_t xx = 0; xx < width + 8; ++xx)
        padded[size_t(xx)] = s[std::min(std::max(xx - 4, int64_t(0)), width - 1)];
      float* o = sm + y * width;
      std::fill(o, o + width, 0.0f);
      for (int t = 0; t < 9; ++t) {
        const float wt = taps[size_t(t)];
        const float* src = padded.data() + t;
        for (int64_t xx = 0; xx < width; ++xx) o[xx] += wt * src[xx];
      }
    }
    // np.gradient: central differences / 2 inside, one-sided at the edges; zero
    // along an axis of length 1.
    float* dx = gx.data() + c * plane;
    float* dy = gy.data() + c * plane;
    for (int64_t y = 0; y < height; ++y) {
      const float* s = sm + y * width;
      float* o = dx + y * width;
      if (width == 1) {
        o[0] = 0.0f;
        continue;
      }
      o[0] = s[1] - s[0];
      for (int64_t xx = 1; xx + 1 < width; ++xx) o[xx] = (s[xx + 1] - s[xx - 1]) / 2.0f;
      o[width - 1] = s[width - 1] - s[width - 2];
    }
    for (int64_t y = 0; y < height; ++y) {
      float* o = dy + y * width;
      if (height == 1) {
        std::fill(o, o + width, 0.0f);
        continue;
      }
      const float* up = sm + std::max(y - 1, int64_t(0)) * width;
      const float* down = sm + std::min(y + 1, height - 1) * width;
      if (y == 0 || y == height - 1)
        for (int64_t xx = 0; xx < width; ++xx) o[xx] = down[xx] - up[xx];
      else
        for (int64_t xx = 0; xx < width; ++xx) o[xx] = (down[xx] - up[xx]) / 2.0f;
    }
  }
  // Orientation k and k + 4 are the positive and negative parts of one
  // directional derivative, each scaled by its maximum over the image. The
  // derivatives are kept (one plane per k) so that a pixel's 8 bins are written
  // together.
  constexpr int kHalf = kTextureOrientations / 2;
  std::vector<float> d(static_cast<size_t>(plane * kHalf));
  std::vector<uint8_t> plane_bins(static_cast<size_t>(plane * kTextureOrientations));
  for (int64_t c = 0; c < channels; ++c) {
    const float* dx = gx.data() + c * plane;
    const float* dy = gy.data() + c * plane;
    float scales[kTextureOrientations];
    for (int k = 0; k < kHalf; ++k) {
      const double angle = double(k) * M_PI / double(kHalf);
      const float cs = float(std::cos(angle)), sn = float(std::sin(angle));
      float* dk = d.data() + k * plane;
      float hi = 0.0f, lo = 0.0f;
      for (int64_t p = 0; p < plane; ++p) {
        const float v = dx[p] * cs + dy[p] * sn;
        dk[p] = v;
        hi = std::max(hi, v);
        lo = std::min(lo, v);
      }
      const float up = hi > 0 ? float(kTextureBins) / hi : 0.0f;
      const float down = -lo > 0 ? float(kTextureBins) / -lo : 0.0f;
      scales[k] = up;
      scales[k + kHalf] = -down;
    }
    for (int o = 0; o < kTextureOrientations; ++o) {
      const float* dk = d.data() + (o % kHalf) * plane;
      const float scale = scales[o];
      uint8_t* out = plane_bins.data() + o * plane;
      for (int64_t p = 0; p < plane; ++p) {
        const float r = std::min(std::max(dk[p] * scale, 0.0f), float(kTextureBins - 1));
        out[p] = uint8_t(r);
      }
    }
    const int64_t stride = channels * kTextureOrientations;
    for (int64_t p = 0; p < plane; ++p)
      for (int o = 0; o < kTextureOrientations; ++o)
        bins[p * stride + c * kTextureOrientations + o] = plane_bins[size_t(o * plane + p)];
  }
}

}  // namespace cnnkit

#include "segmentation.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <vector>

#include "interrupt.hpp"
#include "parallel.hpp"

namespace cnnkit {

namespace {

// scipy.ndimage's "reflect" boundary (d c b a | a b c d | d c b a), periodic
// with period 2n so that kernels wider than the image still work.
inline int64_t reflect(int64_t i, int64_t n) {
  const int64_t period = 2 * n;
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - 1 - i;
}

// scipy.ndimage.gaussian_filter1d's kernel: radius int(4 sigma + 0.5),
// exp(-x^2 / (2 sigma^2)) normalised to sum 1.
std::vector<double> gaussian_kernel(double sigma) {
  const int64_t radius = static_cast<int64_t>(4.0 * sigma + 0.5);
  std::vector<double> w(static_cast<size_t>(2 * radius + 1));
  double sum = 0.0;
  for (int64_t x = -radius; x <= radius; ++x) {
    w[size_t(x + radius)] = std::exp(-0.5 / (sigma * sigma) * double(x * x));
    sum += w[size_t(x + radius)];
  }
  for (double& v : w) v /= sum;
  return w;
}

// Separable smoothing as scipy applies it: rows direction (axis 0) first, then
// columns (axis 1), channels untouched. Each output is accumulated tap by tap
// in kernel order, so the NumPy reference reproduces it bit for bit.
std::vector<double> smooth(const double* image, int64_t h, int64_t w, int64_t c, double sigma) {
  const int64_t line = w * c;
  std::vector<double> out(image, image + h * line);
  if (sigma <= 1e-15) return out;  // scipy skips axes with sigma ~ 0
  const std::vector<double> k = gaussian_kernel(sigma);
  const int64_t taps = int64_t(k.size()), radius = taps / 2;
  std::vector<double> tmp(size_t(h * line));
  const int threads = threads_for(h * line * taps, 1 << 16);
  const StopToken stop;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
#pragma omp for schedule(static)
    for (int64_t y = 0; y < h; ++y) {
      if (stop) continue;
      double* dst = tmp.data() + y * line;
      std::fill(dst, dst + line, 0.0);
      for (int64_t t = 0; t < taps; ++t) {
        const double* src = image + reflect(y + t - radius, h) * line;
        const double wt = k[size_t(t)];
        for (int64_t i = 0; i < line; ++i) dst[i] += wt * src[i];
      }
    }
    std::vector<double> padded(size_t((w + 2 * radius) * c));
#pragma omp for schedule(static)
    for (int64_t y = 0; y < h; ++y) {
      if (stop) continue;
      const double* src = tmp.data() + y * line;
      for (int64_t x = -radius; x < w + radius; ++x)
        std::memcpy(&padded[size_t((x + radius) * c)], src + reflect(x, w) * c,
                    size_t(c) * sizeof(double));
      double* dst = out.data() + y * line;
      std::fill(dst, dst + line, 0.0);
      for (int64_t t = 0; t < taps; ++t) {
        const double* s = padded.data() + t * c;
        const double wt = k[size_t(t)];
        for (int64_t i = 0; i < line; ++i) dst[i] += wt * s[i];
      }
    }
  }
  return out;
}

// Edge ids: 4 p + group, where p is the edge's first pixel and the groups are
// scikit-image's (right, down, down-right, up-right). Equal weights keep this
// order (scikit-image's argsort leaves their order unspecified).
inline void endpoints(uint32_t id, int64_t w, int64_t& a, int64_t& b) {
  const int64_t p = id >> 2;
  switch (id & 3) {
    case 0: a = p; b = p + 1; break;
    case 1: a = p; b = p + w; break;
    case 2: a = p; b = p + w + 1; break;
    default: a = p + 1; b = p + w; break;
  }
}

// Edges are sorted as 64-bit records: the top 32 bits of the weight's IEEE
// representation (non-negative doubles order like their bits, so these order
// like the weights up to ties) above the 32-bit id. Half the bytes of a
// (weight, id) pair to move in each radix pass; the full weight is recomputed
// from the smoothed image where needed, bit for bit the same.
inline uint64_t record(double weight, uint32_t id) {
  uint64_t bits;
  std::memcpy(&bits, &weight, sizeof bits);
  return (bits & 0xFFFFFFFF00000000ull) | id;
}

inline uint32_t record_id(uint64_t r) { return uint32_t(r); }

// Stable LSD radix sort on the records' top 32 bits (digits of 11, 11 and 10
// bits; a digit every record shares is skipped). The input is in id order, so
// records with equal top bits stay in id order.
void radix_sort_top(std::vector<uint64_t>& e) {
  constexpr int shifts[3] = {32, 43, 54};
  constexpr size_t buckets = 2048;
  std::vector<std::array<int64_t, buckets>> hist(3);
  for (auto& hh : hist) hh.fill(0);
  for (const uint64_t x : e)
    for (int d = 0; d < 3; ++d) ++hist[size_t(d)][(x >> shifts[d]) & (buckets - 1)];
  std::vector<uint64_t> tmp(e.size());
  const int64_t n = int64_t(e.size());
  for (int d = 0; d < 3; ++d) {
    auto& hh = hist[size_t(d)];
    if (std::any_of(hh.begin(), hh.end(), [n](int64_t v) { return v == n; })) continue;
    int64_t sum = 0;
    for (auto& v : hh) {
      const int64_t c = v;
      v = sum;
      sum += c;
    }
    const int shift = shifts[d];
    for (const uint64_t x : e) tmp[size_t(hh[(x >> shift) & (buckets - 1)]++)] = x;
    e.swap(tmp);
  }
}

// Union-find whose root is the smallest pixel of its set (as scikit-image's),
// so that numbering roots in raster order numbers segments by first pixel.
struct Forest {
  std::vector<int32_t> parent;  // fewer than 2^30 pixels
  explicit Forest(int64_t n) : parent(size_t(n)) {
    for (int64_t i = 0; i < n; ++i) parent[size_t(i)] = int32_t(i);
  }
  int64_t find(int64_t i) {
    while (parent[size_t(i)] != i) {
      parent[size_t(i)] = parent[size_t(parent[size_t(i)])];
      i = parent[size_t(i)];
    }
    return i;
  }
  // a, b roots; returns the new root.
  int64_t join(int64_t a, int64_t b) {
    if (b < a) std::swap(a, b);
    parent[size_t(b)] = int32_t(a);
    return a;
  }
};

}  // namespace

int64_t felzenszwalb(const double* image, int64_t h, int64_t w, int64_t c,
                     const FelzenszwalbParams& params, int64_t* labels) {
  const int64_t n = h * w;
  if (n == 0) return 0;
  // Stopped (Ctrl-C), the function returns 0 with labels incomplete; the
  // sequential loops test the token once per 2^14 steps of a few ns each.
  const StopToken stop;
  constexpr size_t kStopStride = size_t(1) << 14;
  const std::vector<double> img = smooth(image, h, w, c, params.sigma);
  if (stop) return 0;

  // Channels summed in order, then the root: NumPy's sum over a short axis.
  auto weight = [&](uint32_t id) {
    int64_t a, b;
    endpoints(id, w, a, b);
    const double* pa = img.data() + a * c;
    const double* pb = img.data() + b * c;
    double s = 0.0;
    for (int64_t k = 0; k < c; ++k) {
      const double d = pb[k] - pa[k];
      s += d * d;
    }
    return std::sqrt(s);
  };
  const int64_t edges_count = h * (w - 1) + (h - 1) * w + 2 * (h - 1) * (w - 1);
  std::vector<uint64_t> edges(static_cast<size_t>(edges_count));
  size_t m = 0;
  for (int64_t y = 0; y < h; ++y) {
    if (stop) return 0;
    for (int64_t x = 0; x < w; ++x) {
      const uint32_t id = uint32_t(4 * (y * w + x));
      if (x + 1 < w) edges[m++] = record(weight(id), id);
      if (y + 1 < h) edges[m++] = record(weight(id + 1), id + 1);
      if (x + 1 < w && y + 1 < h) {
        edges[m++] = record(weight(id + 2), id + 2);
        edges[m++] = record(weight(id + 3), id + 3);
      }
    }
  }
  radix_sort_top(edges);
  if (stop) return 0;
  // Exact order: within each run of equal top bits, a stable sort by the full
  // weight (runs are short, or flat regions of equal weights already in order).
  auto by_weight = [&](uint64_t p, uint64_t q) {
    return weight(record_id(p)) < weight(record_id(q));
  };
  for (size_t i = 0; i < edges.size();) {
    size_t j = i + 1;
    while (j < edges.size() && (edges[j] >> 32) == (edges[i] >> 32)) ++j;
    if (j - i > 1 && !std::is_sorted(edges.begin() + i, edges.begin() + j, by_weight))
      std::stable_sort(edges.begin() + i, edges.begin() + j, by_weight);
    i = j;
  }

  Forest forest(n);
  const double k = params.scale / 255.0;  // scikit-image's rescaling of scale
  // Each root's threshold Int(C) + k / |C|, held in float32 as scikit-image holds it
  // (so the merges are the same) and cached: it changes only when C grows.
  std::vector<int32_t> size(size_t(n), 1);
  std::vector<float> threshold(size_t(n), static_cast<float>(0.0 + k / 1.0));
  for (size_t i = 0; i < edges.size(); ++i) {
    if (i % kStopStride == 0 && stop) return 0;
    const uint64_t e = edges[i];
    int64_t a, b;
    endpoints(record_id(e), w, a, b);
    a = forest.find(a);
    b = forest.find(b);
    if (a == b) continue;
    const double limit = double(std::min(threshold[size_t(a)], threshold[size_t(b)]));
    uint64_t limit_bits;
    std::memcpy(&limit_bits, &limit, sizeof limit_bits);
    // The record's top bits bound the weight from below: no merge when they reach the limit.
    if ((e & 0xFFFFFFFF00000000ull) >= limit_bits) continue;
    const double v = weight(record_id(e));
    if (v < limit) {
      const int64_t r = forest.join(a, b);
      size[size_t(r)] = size[size_t(a)] + size[size_t(b)];
      threshold[size_t(r)] = static_cast<float>(v + k / double(size[size_t(r)]));
    }
  }
  // The min_size pass. Components below min_size are counted, so that the pass
  // stops when none is left; and a component that starts the pass at min_size or
  // above never falls below it, so an edge between two such never merges: a
  // byte per pixel flags the others, and only their edges need finds.
  // Parents are smaller than their children, so one ascending sweep points every
  // pixel at its root.
  int64_t small = 0;
  std::vector<uint8_t> in_small(static_cast<size_t>(n));
  for (int64_t p = 0; p < n; ++p) {
    int32_t& up = forest.parent[size_t(p)];
    up = forest.parent[size_t(up)];
    small += up == p && size[size_t(p)] < params.min_size;
    in_small[size_t(p)] = size[size_t(up)] < params.min_size;
  }
  for (size_t i = 0; i < edges.size() && small > 0; ++i) {
    if (i % kStopStride == 0 && stop) return 0;
    int64_t a, b;
    endpoints(record_id(edges[i]), w, a, b);
    if (!(in_small[size_t(a)] | in_small[size_t(b)])) continue;
    a = forest.find(a);
    b = forest.find(b);
    if (a == b) continue;
    const bool small_a = size[size_t(a)] < params.min_size;
    const bool small_b = size[size_t(b)] < params.min_size;
    if (small_a || small_b) {
      const int64_t r = forest.join(a, b);
      size[size_t(r)] = size[size_t(a)] + size[size_t(b)];
      small += int64_t(size[size_t(r)] < params.min_size) - small_a - small_b;
    }
  }
  int64_t count = 0;
  for (int64_t p = 0; p < n; ++p) {
    const int64_t r = forest.find(p);
    labels[p] = r == p ? count++ : labels[r];
  }
  return count;
}

}  // namespace cnnkit

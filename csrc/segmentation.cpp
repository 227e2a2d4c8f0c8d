#include "segmentation.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <vector>

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
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
#pragma omp for schedule(static)
    for (int64_t y = 0; y < h; ++y) {
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

struct Edge {
  uint64_t key;  // the IEEE bits of the (non-negative) weight order like the weight
  uint32_t id;
  double weight() const {
    double v;
    std::memcpy(&v, &key, sizeof v);
    return v;
  }
};

// Exact stable sort by weight: an LSD radix sort on the top 33 bits of the
// key (three 11-bit digits; digits every key shares are skipped), then an
// insertion sort by the full key inside each run of equal top bits. Runs are
// a handful of edges, so this costs three passes instead of six and orders
// exactly as a stable comparison sort on the weights does.
void sort_edges(std::vector<Edge>& e) {
  constexpr int bits = 11, passes = 3, low = 64 - bits * passes;
  constexpr size_t buckets = size_t(1) << bits;
  std::vector<std::array<int64_t, buckets>> hist(passes);
  for (auto& hh : hist) hh.fill(0);
  for (const Edge& x : e)
    for (int d = 0; d < passes; ++d) ++hist[size_t(d)][(x.key >> (low + d * bits)) & (buckets - 1)];
  std::vector<Edge> tmp(e.size());
  const int64_t n = int64_t(e.size());
  for (int d = 0; d < passes; ++d) {
    auto& hh = hist[size_t(d)];
    if (std::any_of(hh.begin(), hh.end(), [n](int64_t v) { return v == n; })) continue;
    int64_t sum = 0;
    for (auto& v : hh) {
      const int64_t c = v;
      v = sum;
      sum += c;
    }
    const int shift = low + d * bits;
    for (const Edge& x : e) tmp[size_t(hh[(x.key >> shift) & (buckets - 1)]++)] = x;
    e.swap(tmp);
  }
  for (size_t i = 1; i < e.size(); ++i) {
    const Edge x = e[i];
    size_t j = i;
    while (j > 0 && (e[j - 1].key >> low) == (x.key >> low) && e[j - 1].key > x.key) {
      e[j] = e[j - 1];
      --j;
    }
    e[j] = x;
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
  const std::vector<double> img = smooth(image, h, w, c, params.sigma);

  const int64_t edges_count = h * (w - 1) + (h - 1) * w + 2 * (h - 1) * (w - 1);
  std::vector<Edge> edges;
  edges.reserve(size_t(edges_count));
  auto add = [&](int64_t p, int g) {
    int64_t a, b;
    const uint32_t id = uint32_t(4 * p + g);
    endpoints(id, w, a, b);
    // Channels summed in order, then the root: NumPy's sum over a short axis.
    double s = 0.0;
    for (int64_t k = 0; k < c; ++k) {
      const double d = img[size_t(b * c + k)] - img[size_t(a * c + k)];
      s += d * d;
    }
    const double v = std::sqrt(s);
    uint64_t key;
    std::memcpy(&key, &v, sizeof key);
    edges.push_back({key, id});
  };
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const int64_t p = y * w + x;
      if (x + 1 < w) add(p, 0);
      if (y + 1 < h) add(p, 1);
      if (x + 1 < w && y + 1 < h) {
        add(p, 2);
        add(p, 3);
      }
    }
  sort_edges(edges);

  Forest forest(n);
  std::vector<int64_t> size(size_t(n), 1);
  std::vector<double> inner(size_t(n), 0.0);
  const double k = params.scale / 255.0;  // scikit-image's rescaling of scale
  for (const Edge& e : edges) {
    int64_t a, b;
    endpoints(e.id, w, a, b);
    a = forest.find(a);
    b = forest.find(b);
    if (a == b) continue;
    // scikit-image holds the thresholds in float32; so do we, for the same merges.
    const float ta = static_cast<float>(inner[size_t(a)] + k / double(size[size_t(a)]));
    const float tb = static_cast<float>(inner[size_t(b)] + k / double(size[size_t(b)]));
    const double v = e.weight();
    if (v < double(std::min(ta, tb))) {
      const int64_t r = forest.join(a, b);
      size[size_t(r)] = size[size_t(a)] + size[size_t(b)];
      inner[size_t(r)] = v;
    }
  }
  for (const Edge& e : edges) {
    int64_t a, b;
    endpoints(e.id, w, a, b);
    a = forest.find(a);
    b = forest.find(b);
    if (a == b) continue;
    if (size[size_t(a)] < params.min_size || size[size_t(b)] < params.min_size) {
      const int64_t r = forest.join(a, b);
      size[size_t(r)] = size[size_t(a)] + size[size_t(b)];
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

// Selective search's hierarchical grouping (see segmentation.hpp).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <queue>
#include <stdexcept>
#include <vector>

#include "interrupt.hpp"
#include "segmentation.hpp"

namespace cnnkit {

namespace {

struct Region {
  int64_t size = 0;
  int64_t x1 = 0, y1 = 0, x2 = 0, y2 = 0;  // x2, y2 exclusive
  std::vector<int32_t> neighbours;
};

struct Pair {
  double similarity;
  int32_t a, b;  // a < b
};

// Highest similarity first; ties to the smaller (a, b), so the order is fixed.
struct Lower {
  bool operator()(const Pair& p, const Pair& q) const {
    if (p.similarity != q.similarity) return p.similarity < q.similarity;
    if (p.a != q.a) return p.a > q.a;
    return p.b > q.b;
  }
};

// Histogram intersection summed in index order (the reference sums the same way).
double intersection(const double* p, const double* q, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += std::min(p[i], q[i]);
  return s;
}

}  // namespace

int64_t group_regions(const GroupingInput& in, std::vector<int64_t>& boxes) {
  const int64_t n = in.regions, h = in.height, w = in.width, pixels = h * w;
  const int64_t cdim = in.colour_channels * kColourBins, tdim = in.texture_channels * kTextureBins;
  if (n <= 0) return 0;
  const int64_t total = 2 * n - 1;
  std::vector<Region> regions(static_cast<size_t>(total));
  std::vector<double> colour(size_t(total * cdim), 0.0), texture(size_t(total * tdim), 0.0);
  for (int64_t r = 0; r < n; ++r) {
    regions[size_t(r)].x1 = w;
    regions[size_t(r)].y1 = h;
  }
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const int64_t p = y * w + x, r = in.labels[p];
      Region& g = regions[size_t(r)];
      ++g.size;
      g.x1 = std::min(g.x1, x);
      g.y1 = std::min(g.y1, y);
      g.x2 = std::max(g.x2, x + 1);
      g.y2 = std::max(g.y2, y + 1);
      double* ch = colour.data() + r * cdim;
      for (int64_t c = 0; c < in.colour_channels; ++c)
        ch[c * kColourBins + in.colour_bins[p * in.colour_channels + c]] += 1.0;
      double* th = texture.data() + r * tdim;
      for (int64_t c = 0; c < in.texture_channels; ++c)
        th[c * kTextureBins + in.texture_bins[p * in.texture_channels + c]] += 1.0;
      // 8-connected neighbours, each pair seen once (right, down-left, down, down-right).
      const int64_t nbr[4][2] = {{0, 1}, {1, -1}, {1, 0}, {1, 1}};
      for (const auto& d : nbr) {
        const int64_t yy = y + d[0], xx = x + d[1];
        if (yy >= h || xx < 0 || xx >= w) continue;
        const int64_t s = in.labels[yy * w + xx];
        if (s != r) {
          g.neighbours.push_back(int32_t(s));
          regions[size_t(s)].neighbours.push_back(int32_t(r));
        }
      }
    }
  for (int64_t r = 0; r < n; ++r) {
    Region& g = regions[size_t(r)];
    if (g.size == 0) throw std::invalid_argument("must use every value in [0, regions)");
    std::sort(g.neighbours.begin(), g.neighbours.end());
    g.neighbours.erase(std::unique(g.neighbours.begin(), g.neighbours.end()), g.neighbours.end());
    const double cn = double(g.size * in.colour_channels);
    const double tn = double(g.size * in.texture_channels);
    for (int64_t i = 0; i < cdim; ++i) colour[size_t(r * cdim + i)] /= cn;
    for (int64_t i = 0; i < tdim; ++i) texture[size_t(r * tdim + i)] /= tn;
  }

  const double image = double(pixels);
  auto similarity = [&](int32_t a, int32_t b) {
    const Region& p = regions[size_t(a)];
    const Region& q = regions[size_t(b)];
    double s = 0.0;
    if (in.colour) s += intersection(&colour[size_t(a * cdim)], &colour[size_t(b * cdim)], cdim);
    if (in.texture) s += intersection(&texture[size_t(a * tdim)], &texture[size_t(b * tdim)], tdim);
    if (in.size) s += 1.0 - double(p.size + q.size) / image;
    if (in.fill) {
      const int64_t bw = std::max(p.x2, q.x2) - std::min(p.x1, q.x1);
      const int64_t bh = std::max(p.y2, q.y2) - std::min(p.y1, q.y1);
      s += 1.0 - double(bw * bh - p.size - q.size) / image;
    }
    return s;
  };

  std::priority_queue<Pair, std::vector<Pair>, Lower> queue;
  for (int32_t a = 0; a < n; ++a)
    for (const int32_t b : regions[size_t(a)].neighbours)
      if (a < b) queue.push({similarity(a, b), a, b});
  std::vector<char> alive(size_t(total), 0);
  std::fill(alive.begin(), alive.begin() + n, 1);
  int64_t count = n;
  // Each merge costs a histogram blend and a neighbour merge: a stop test
  // (Ctrl-C; the boxes are then incomplete and the binding raises) is cheap.
  const StopToken stop;
  while (!queue.empty()) {
    if (stop) return 0;
    const Pair top = queue.top();
    queue.pop();
    if (!alive[size_t(top.a)] || !alive[size_t(top.b)]) continue;
    const int32_t t = int32_t(count++);
    Region& p = regions[size_t(top.a)];
    Region& q = regions[size_t(top.b)];
    Region& m = regions[size_t(t)];
    m.size = p.size + q.size;
    m.x1 = std::min(p.x1, q.x1);
    m.y1 = std::min(p.y1, q.y1);
    m.x2 = std::max(p.x2, q.x2);
    m.y2 = std::max(p.y2, q.y2);
    const double sp = double(p.size), sq = double(q.size), sm = double(m.size);
    for (int64_t i = 0; i < cdim; ++i)
      colour[size_t(t * cdim + i)] =
          (sp * colour[size_t(top.a * cdim + i)] + sq * colour[size_t(top.b * cdim + i)]) / sm;
    for (int64_t i = 0; i < tdim; ++i)
      texture[size_t(t * tdim + i)] =
          (sp * texture[size_t(top.a * tdim + i)] + sq * texture[size_t(top.b * tdim + i)]) / sm;
    alive[size_t(top.a)] = alive[size_t(top.b)] = 0;
    alive[size_t(t)] = 1;
    for (const int32_t v : p.neighbours)
      if (alive[size_t(v)]) m.neighbours.push_back(v);
    for (const int32_t v : q.neighbours)
      if (alive[size_t(v)]) m.neighbours.push_back(v);
    std::sort(m.neighbours.begin(), m.neighbours.end());
    m.neighbours.erase(std::unique(m.neighbours.begin(), m.neighbours.end()), m.neighbours.end());
    for (const int32_t v : m.neighbours) {
      regions[size_t(v)].neighbours.push_back(t);
      queue.push({similarity(v, t), v, t});
    }
    std::vector<int32_t>().swap(p.neighbours);
    std::vector<int32_t>().swap(q.neighbours);
  }
  boxes.resize(size_t(4 * count));
  for (int64_t r = 0; r < count; ++r) {
    const Region& g = regions[size_t(r)];
    boxes[size_t(4 * r)] = g.x1;
    boxes[size_t(4 * r + 1)] = g.y1;
    boxes[size_t(4 * r + 2)] = g.x2;
    boxes[size_t(4 * r + 3)] = g.y2;
  }
  return count;
}

}  // namespace cnnkit

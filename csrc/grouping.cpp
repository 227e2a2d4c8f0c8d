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

// The initial regions of a segmentation: sizes, boxes, sorted neighbour
// lists and normalised histograms, shared by every strategy's hierarchy.
struct Initial {
  int64_t n = 0, cdim = 0, tdim = 0, pixels = 0;
  std::vector<Region> regions;
  std::vector<double> colour, texture;
};

Initial initial_regions(const GroupingInput& in) {
  Initial out;
  const int64_t n = in.regions, h = in.height, w = in.width;
  const int64_t cc = in.colour_channels, tc = in.texture_channels;
  const int64_t cdim = cc * kColourBins, tdim = tc * kTextureBins;
  out.n = n;
  out.cdim = cdim;
  out.tdim = tdim;
  out.pixels = h * w;
  std::vector<Region>& regions = out.regions;
  regions.resize(size_t(n));
  for (Region& g : regions) {
    g.x1 = w;
    g.y1 = h;
  }
  // Counted in integers (exact, and an integer add does not wait on a
  // floating-point one to the same bin), in two tables for even and odd
  // columns: neighbouring pixels mostly share their region and bins, and one
  // table would chain each increment on the store before it.
  std::vector<uint32_t> colour_counts(size_t(2 * n * cdim), 0);
  std::vector<uint32_t> texture_counts(size_t(2 * n * tdim), 0);
  const int64_t nbr[4][2] = {{0, 1}, {1, -1}, {1, 0}, {1, 1}};
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const int64_t p = y * w + x, r = in.labels[p];
      Region& g = regions[size_t(r)];
      ++g.size;
      g.x1 = std::min(g.x1, x);
      g.y1 = std::min(g.y1, y);
      g.x2 = std::max(g.x2, x + 1);
      g.y2 = std::max(g.y2, y + 1);
      const int64_t table = (x & 1) * n + r;
      uint32_t* ch = colour_counts.data() + table * cdim;
      const uint8_t* cbin = in.colour_bins + p * cc;
      for (int64_t c = 0; c < cc; ++c) ++ch[c * kColourBins + cbin[c]];
      uint32_t* th = texture_counts.data() + table * tdim;
      const uint8_t* tbin = in.texture_bins + p * tc;
      for (int64_t c = 0; c < tc; ++c) ++th[c * kTextureBins + tbin[c]];
      // 8-connected neighbours, each pair seen once (right, down-left, down,
      // down-right); a repeat of the last neighbour recorded is not pushed
      // again (the lists are sorted and deduplicated below anyway).
      for (const auto& d : nbr) {
        const int64_t yy = y + d[0], xx = x + d[1];
        if (yy >= h || xx < 0 || xx >= w) continue;
        const int64_t s = in.labels[yy * w + xx];
        if (s != r && (g.neighbours.empty() || g.neighbours.back() != s)) {
          g.neighbours.push_back(int32_t(s));
          regions[size_t(s)].neighbours.push_back(int32_t(r));
        }
      }
    }
  }
  out.colour.resize(size_t(n * cdim));
  out.texture.resize(size_t(n * tdim));
  for (int64_t r = 0; r < n; ++r) {
    Region& g = regions[size_t(r)];
    if (g.size == 0) throw std::invalid_argument("must use every value in [0, regions)");
    std::sort(g.neighbours.begin(), g.neighbours.end());
    g.neighbours.erase(std::unique(g.neighbours.begin(), g.neighbours.end()), g.neighbours.end());
    const double cn = double(g.size * cc), tn = double(g.size * tc);
    const uint32_t* c0 = colour_counts.data() + r * cdim;
    const uint32_t* c1 = c0 + n * cdim;
    for (int64_t i = 0; i < cdim; ++i) out.colour[size_t(r * cdim + i)] = double(c0[i] + c1[i]) / cn;
    const uint32_t* t0 = texture_counts.data() + r * tdim;
    const uint32_t* t1 = t0 + n * tdim;
    for (int64_t i = 0; i < tdim; ++i) out.texture[size_t(r * tdim + i)] = double(t0[i] + t1[i]) / tn;
  }
  return out;
}

// One strategy's hierarchy over the initial regions; returns the number of
// regions generated (0 when stopped).
int64_t merge_regions(const Initial& init, const GroupingStrategy& strategy,
                      std::vector<int64_t>& boxes) {
  const int64_t n = init.n, cdim = init.cdim, tdim = init.tdim;
  const int64_t total = 2 * n - 1;
  std::vector<Region> regions(static_cast<size_t>(total));
  std::copy(init.regions.begin(), init.regions.end(), regions.begin());
  std::vector<double> colour(size_t(total * cdim)), texture(size_t(total * tdim));
  std::copy(init.colour.begin(), init.colour.end(), colour.begin());
  std::copy(init.texture.begin(), init.texture.end(), texture.begin());

  const double image = double(init.pixels);
  auto similarity = [&](int32_t a, int32_t b) {
    const Region& p = regions[size_t(a)];
    const Region& q = regions[size_t(b)];
    double s = 0.0;
    if (strategy.colour)
      s += intersection(&colour[size_t(a * cdim)], &colour[size_t(b * cdim)], cdim);
    if (strategy.texture)
      s += intersection(&texture[size_t(a * tdim)], &texture[size_t(b * tdim)], tdim);
    if (strategy.size) s += 1.0 - double(p.size + q.size) / image;
    if (strategy.fill) {
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

}  // namespace

std::vector<int64_t> group_regions(const GroupingInput& in,
                                   const std::vector<GroupingStrategy>& strategies,
                                   std::vector<std::vector<int64_t>>& boxes) {
  std::vector<int64_t> counts(strategies.size(), 0);
  boxes.assign(strategies.size(), {});
  if (in.regions <= 0) return counts;
  const Initial init = initial_regions(in);
  for (size_t i = 0; i < strategies.size(); ++i)
    counts[i] = merge_regions(init, strategies[i], boxes[i]);
  return counts;
}

int64_t group_regions(const GroupingInput& in, std::vector<int64_t>& boxes) {
  std::vector<std::vector<int64_t>> all;
  const auto counts =
      group_regions(in, {GroupingStrategy{in.colour, in.texture, in.size, in.fill}}, all);
  boxes.swap(all[0]);
  return counts[0];
}

}  // namespace cnnkit

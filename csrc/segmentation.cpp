#define CNNKIT_ISA_NS baseline
#include "segmentation_rows_impl.hpp"
#include "segmentation.hpp"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <type_traits>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "cpu.hpp"
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

// The row arithmetic for the instruction set in use.
struct RowKernels {
  decltype(&segmentation_impl::baseline::taps_sum) taps_sum;
  decltype(&segmentation_impl::baseline::row_weights) row_weights;
};

RowKernels row_kernels() {
#ifdef CNNKIT_HAVE_AVX512
  if (active_isa() == Isa::avx512)
    return {&segmentation_impl::avx512::taps_sum, &segmentation_impl::avx512::row_weights};
#endif
#ifdef CNNKIT_HAVE_AVX2
  if (active_isa() == Isa::avx2)
    return {&segmentation_impl::avx2::taps_sum, &segmentation_impl::avx2::row_weights};
#endif
  return {&segmentation_impl::baseline::taps_sum, &segmentation_impl::baseline::row_weights};
}

// The image's rows as float64 intensities (uint8 times 1/255, as
// skimage.util.img_as_float64 converts; floats as they are), each converted
// once as the smoothing window reaches it, into a ring of as many rows as the
// window spans: the image is never converted whole (at 512 x 512 x 3 a
// 6 MiB copy, written and read once more than needed). The rows of a window,
// reflected at the borders, lie in a run of at most `span` consecutive rows,
// so that their slots (row mod slots) differ.
class RowSource {
 public:
  RowSource(const void* image, PixelType type, int64_t h, int64_t line, int64_t span)
      : image_(image), type_(type), line_(line), slots_(std::min(span, h)) {
    if (type_ == PixelType::f64) return;  // rows are read where they are
    ring_.resize(size_t(slots_ * line_));
    tags_.assign(size_t(slots_), -1);
  }
  const double* row(int64_t y) {
    if (type_ == PixelType::f64) return static_cast<const double*>(image_) + y * line_;
    const int64_t slot = y % slots_;
    double* dst = ring_.data() + slot * line_;
    if (tags_[size_t(slot)] == y) return dst;
    tags_[size_t(slot)] = y;
    if (type_ == PixelType::u8) {
      const uint8_t* src = static_cast<const uint8_t*>(image_) + y * line_;
      const double unit = 1.0 / 255.0;
      for (int64_t i = 0; i < line_; ++i) dst[i] = double(src[i]) * unit;
    } else {
      const float* src = static_cast<const float*>(image_) + y * line_;
      for (int64_t i = 0; i < line_; ++i) dst[i] = double(src[i]);
    }
    return dst;
  }

 private:
  const void* image_;
  PixelType type_;
  int64_t line_, slots_;
  std::vector<double> ring_;
  std::vector<int64_t> tags_;
};

// Separable smoothing as scipy applies it, one output row at a time: rows
// direction (axis 0) first, then columns (axis 1), channels untouched. Each
// output is accumulated tap by tap in kernel order, so the NumPy reference
// reproduces it bit for bit. Row by row, the smoothed image never exists
// whole: the edge weights take each row while it is in cache.
struct RowSmoother {
  int64_t h, w, c, line, radius;
  RowKernels kernels;
  std::vector<double> taps, across, padded;
  std::vector<const double*> sources;
  RowSource source;
  RowSmoother(const void* image, PixelType type, int64_t h_, int64_t w_, int64_t c_,
              double sigma, const RowKernels& kernels_)
      : h(h_),
        w(w_),
        c(c_),
        line(w_ * c_),
        radius(0),
        kernels(kernels_),
        taps(sigma <= 1e-15 ? std::vector<double>() : gaussian_kernel(sigma)),
        source(image, type, h_, line, std::max<int64_t>(1, int64_t(taps.size()))) {
    if (taps.empty()) return;  // scipy skips axes with sigma ~ 0
    radius = int64_t(taps.size()) / 2;
    across.resize(size_t(line));
    padded.resize(size_t((w + 2 * radius) * c));
    sources.resize(taps.size());
  }
  void row(int64_t y, double* dst) {
    if (taps.empty()) {
      const double* src = source.row(y);
      std::copy(src, src + line, dst);
      return;
    }
    const int64_t n = int64_t(taps.size());
    for (int64_t t = 0; t < n; ++t) sources[size_t(t)] = source.row(reflect(y + t - radius, h));
    kernels.taps_sum(sources.data(), taps.data(), n, line, across.data());
    for (int64_t x = -radius; x < w + radius; ++x)
      std::memcpy(&padded[size_t((x + radius) * c)], across.data() + reflect(x, w) * c,
                  size_t(c) * sizeof(double));
    for (int64_t t = 0; t < n; ++t) sources[size_t(t)] = padded.data() + t * c;
    kernels.taps_sum(sources.data(), taps.data(), n, line, dst);
  }
};

// Edge ids: 4 p + group, where p is the edge's first pixel and the groups are
// scikit-image's (right, down, down-right, up-right). Equal weights keep this
// order (scikit-image's argsort leaves their order unspecified).
// Endpoint offsets by group come from tables rather than a switch: the sorted
// edges arrive in no order of group, and a mispredicted branch per edge cost
// more than the rest of the lookup.
struct Endpoints {
  int64_t first[4], second[4];
  explicit Endpoints(int64_t w) : first{0, 0, 0, 1}, second{1, w, w + 1, w} {}
  void operator()(uint32_t id, int64_t& a, int64_t& b) const {
    const int64_t p = id >> 2;
    a = p + first[id & 3];
    b = p + second[id & 3];
  }
};

// Edges are sorted as 64-bit records: the weight rounded to float32 above the
// 32-bit id. Non-negative floats order like their IEEE bits, and the sort is
// on the top 24 of them (sign, exponent and 15 mantissa bits: the weights
// quantised to a relative 2^-15) in two passes of 12 bits; equal quantised
// weights keep id order (the input order of a stable sort). These are the
// departures from scikit-image's order of float64 weights: they reorder only
// weights within a relative 3e-5 of each other (and float32 rounding moves a
// merge decision only when a weight lies within a float32 rounding of a
// component's float32 threshold). On scikit-image's photographs 15 of 18
// label maps stay identical, the others at an adjusted Rand index above
// 0.9998 (sorting on the full float32 order changed fewer maps; a 16-bit key
// moved hundreds of segments). In exchange the records carry
// their weight for the merges (no table by id), and sort on 24 bits, not 64.
inline uint32_t record_id(uint64_t r) { return uint32_t(r); }
inline uint32_t record_key(uint64_t r) { return uint32_t(r >> 32); }
inline uint32_t float_bits(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return bits;
}
inline float bits_float(uint32_t bits) {
  float v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

constexpr int kDigits = 2;
// 4,096 buckets: a pass's scattered writes (a line per bucket, 256 KiB) stay
// in L2, and two such passes took 10% less time than three of 8 bits.
constexpr int kDigitBits = 12;
constexpr int kUnsortedBits = 32 - kDigits * kDigitBits;  // low key bits the sort ignores
constexpr size_t kBuckets = size_t(1) << kDigitBits;
using RadixHistograms = std::array<std::array<uint32_t, kBuckets>, kDigits>;

inline int digit_shift(int d) { return kUnsortedBits + d * kDigitBits; }  // within the key

inline void count_digits(RadixHistograms& hist, uint32_t key) {
  for (int d = 0; d < kDigits; ++d) ++hist[size_t(d)][(key >> digit_shift(d)) & (kBuckets - 1)];
}

// Stable LSD radix sort of n records on their keys' top bits, from histograms
// counted while the records were written (a digit every record shares is
// skipped); tmp holds n records. The result is in e.
void radix_sort_keys(uint64_t*& e, uint64_t*& tmp, int64_t n, RadixHistograms& hist) {
  for (int d = 0; d < kDigits; ++d) {
    auto& hh = hist[size_t(d)];
    if (std::any_of(hh.begin(), hh.end(), [n](uint32_t v) { return int64_t(v) == n; })) continue;
    uint32_t sum = 0;
    for (auto& v : hh) {
      const uint32_t c = v;
      v = sum;
      sum += c;
    }
    const int shift = 32 + digit_shift(d);
    const uint64_t* src = e;
    uint64_t* dst = tmp;
    for (int64_t i = 0; i < n; ++i) {
      const uint64_t x = src[i];
      dst[hh[(x >> shift) & (kBuckets - 1)]++] = x;
    }
    std::swap(e, tmp);
  }
}

// The call's working memory: the records and the sort's second buffer (16
// bytes per edge: 16 MiB at 512 x 512), then the union-find forests and flags
// (13 bytes per pixel). It outlives the call: freed, glibc hands it back to
// the kernel, which faults and zeroes its pages again on the next call (4,000
// page faults at 512 x 512, several ms). One block is kept for the process,
// up to kKeptBytes; a call takes it when it is large enough and free
// (concurrent calls allocate their own), and the largest block a call used is
// kept after it. Large blocks are 2 MiB aligned and asked for as transparent
// huge pages: the sort's scattered writes (to 4,096 places at once) and the
// finds (anywhere in the forests) otherwise miss the TLB more often than not.
class WorkMemory {
 public:
  static constexpr size_t kKeptBytes = size_t(96) << 20;
  static constexpr size_t kHugePage = size_t(2) << 20;

  explicit WorkMemory(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex());
      if (kept().size >= bytes) std::swap(block_, kept());
    }
    if (block_.size < bytes) block_ = Block(bytes);
  }
  ~WorkMemory() {
    if (block_.size > kKeptBytes) return;
    std::lock_guard<std::mutex> lock(mutex());
    if (kept().size < block_.size) std::swap(kept(), block_);
  }
  WorkMemory(const WorkMemory&) = delete;
  WorkMemory& operator=(const WorkMemory&) = delete;
  unsigned char* data() { return block_.data.get(); }

 private:
  struct Free {
    void operator()(unsigned char* p) const { std::free(p); }
  };
  struct Block {
    std::unique_ptr<unsigned char, Free> data;
    size_t size = 0;
    Block() = default;
    // Small blocks (small images) stay in ordinary pages: a huge page's first
    // touch zeroes all of its 2 MiB.
    explicit Block(size_t bytes) {
      const bool huge = bytes >= 2 * kHugePage;
      const size_t align = huge ? kHugePage : 64;
      size = (std::max<size_t>(bytes, 1) + align - 1) / align * align;
      data.reset(static_cast<unsigned char*>(std::aligned_alloc(align, size)));
      if (!data) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
      if (huge) madvise(data.get(), size, MADV_HUGEPAGE);  // advice: failure only costs speed
#endif
    }
  };
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static Block& kept() {
    static Block block;
    return block;
  }
  Block block_;
};

// c ? x : y without a branch: the conditions of the union-find are as good as
// random, and the compiler turns a plain ?: (or masks) into a branch there,
// or into several instructions per selection.
template <typename T>
inline T pick(bool c, T x, T y) {
  static_assert(std::is_integral_v<T> && (sizeof(T) == 4 || sizeof(T) == 8));
#if defined(__x86_64__)
  __asm__("test %[c], %[c]\n\tcmovne %[x], %[y]" : [y] "+r"(y) : [c] "r"(c), [x] "r"(x) : "cc");
  return y;
#else
  return c ? x : y;
#endif
}

// One pixel's union-find node, 8 bytes so that a find brings everything an
// edge needs in one access: `up` is the parent, or minus the component's size
// at a root; `threshold` is a root's Int(C) + k / |C| (float32 as
// scikit-image holds it, kept as its bits to compare with the record keys).
struct Node {
  int32_t up;  // fewer than 2^30 pixels
  uint32_t threshold;
};

// Union by size with path compression. The root a pixel reaches is not the
// smallest pixel of its set (scikit-image's is): the numbering by first pixel
// is done at the end instead, and the partition does not depend on which
// pixel is the root. Union by size keeps the trees shallow, so that two
// hops without a branch reach the root of almost every pixel: a loop that
// ends after zero, one or two steps at random mispredicted once per find.
// The forest is the Nodes of the first pass or, for the min_size pass (which
// needs no thresholds), their `up` fields alone: half the bytes to keep in cache.
inline int32_t& up(Node* nodes, int64_t i) { return nodes[i].up; }
inline int32_t& up(int32_t* ups, int64_t i) { return ups[i]; }

template <typename Forest>
inline int64_t find(Forest* forest, int64_t i) {
  const int32_t p = up(forest, i);
  const int64_t r1 = pick(p < 0, i, int64_t(p));
  const int32_t q = up(forest, r1);
  int64_t r = pick(q < 0, r1, int64_t(q));
  while (up(forest, r) >= 0) r = up(forest, r);  // rarely entered
  up(forest, i) = pick(p < 0, p, int32_t(r));
  return r;
}

}  // namespace

int64_t felzenszwalb(const void* image, PixelType type, int64_t h, int64_t w, int64_t c,
                     const FelzenszwalbParams& params, int64_t* labels) {
  const int64_t n = h * w;
  if (n == 0) return 0;
  // Stopped (Ctrl-C), the function returns 0 with labels incomplete; the
  // sequential loops test the token once per 2^14 steps of a few ns each.
  const StopToken stop;
  const Endpoints endpoints(w);
  constexpr int64_t kStopStride = int64_t(1) << 14;
  const int64_t edges_count = h * (w - 1) + (h - 1) * w + 2 * (h - 1) * (w - 1);
  // The records and the sort's second buffer, the forests and the flags.
  const size_t record_bytes = size_t(2 * edges_count) * sizeof(uint64_t);
  const size_t node_bytes = size_t(n) * sizeof(Node), up_bytes = size_t(n) * sizeof(int32_t);
  WorkMemory memory(record_bytes + node_bytes + up_bytes + size_t(n));
  unsigned char* const work = memory.data();
  uint64_t* const records = reinterpret_cast<uint64_t*>(work);
  Node* const nodes = reinterpret_cast<Node*>(work + record_bytes);
  int32_t* const forest_ups = reinterpret_cast<int32_t*>(work + record_bytes + node_bytes);
  uint8_t* const in_small = work + record_bytes + node_bytes + up_bytes;
  // Each thread smooths and weighs a band of rows (plus the row below it) into
  // its place in the records; its histograms are summed after (integers: exact).
  const int64_t taps_work = int64_t(2 * (4.0 * params.sigma + 0.5) + 1);
  const int threads =
      std::max<int>(1, std::min<int64_t>(h, threads_for(n * c * taps_work, 1 << 16)));
  std::vector<RadixHistograms> hists(static_cast<size_t>(threads));  // zeros
  const RowKernels kernels = row_kernels();
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int64_t parts = omp_get_num_threads(), part = omp_get_thread_num();
    RadixHistograms& hist = hists[size_t(part)];
    const int64_t y0 = h * part / parts, y1 = h * (part + 1) / parts;
    RowSmoother smoother(image, type, h, w, c, params.sigma, kernels);
    std::vector<double> rows(size_t(2 * w * c)), buf(size_t(4 * w)), scratch(size_t(w * c));
    double* cur = rows.data();
    double* nxt = cur + w * c;
    const double* group[4] = {buf.data(), buf.data() + w, buf.data() + 2 * w, buf.data() + 3 * w};
    uint64_t* out = records + y0 * (4 * w - 3);
    auto emit = [&](uint32_t id, double weight) {
      const uint32_t key = float_bits(static_cast<float>(weight));
      *out++ = uint64_t(key) << 32 | id;
      count_digits(hist, key);
    };
    if (y0 < y1) smoother.row(y0, cur);
    for (int64_t y = y0; y < y1; ++y) {
      if (stop) break;
      const bool below = y + 1 < h;
      if (below) smoother.row(y + 1, nxt);
      kernels.row_weights(cur, below ? nxt : nullptr, w, c, buf.data(), buf.data() + w,
                          buf.data() + 2 * w, buf.data() + 3 * w, scratch.data());
      const uint32_t base = uint32_t(4 * y * w);
      if (below) {
        for (int64_t x = 0; x + 1 < w; ++x)
          for (uint32_t g = 0; g < 4; ++g) emit(base + uint32_t(4 * x) + g, group[g][x]);
        emit(base + uint32_t(4 * (w - 1)) + 1, group[1][w - 1]);
      } else {
        for (int64_t x = 0; x + 1 < w; ++x) emit(base + uint32_t(4 * x), group[0][x]);
      }
      std::swap(cur, nxt);
    }
  }
  if (stop) return 0;
  RadixHistograms& hist = hists[0];
  for (size_t t = 1; t < hists.size(); ++t)
    for (int d = 0; d < kDigits; ++d)
      for (size_t i = 0; i < kBuckets; ++i) hist[size_t(d)][i] += hists[t][size_t(d)][i];
  uint64_t* edges = records;
  uint64_t* tmp = records + edges_count;
  radix_sort_keys(edges, tmp, edges_count, hist);
  if (stop) return 0;

  const double k = params.scale / 255.0;  // scikit-image's rescaling of scale
  // Each root's threshold changes only when its component grows.
  const uint32_t first_threshold = float_bits(static_cast<float>(0.0 + k / 1.0));
  for (int64_t i = 0; i < n; ++i) nodes[i] = {-1, first_threshold};
  // Edges that join no two components here are kept, in order, at the front
  // of `edges` for the min_size pass: the others lie inside a component by
  // then (components only grow).
  int64_t kept = 0;
  // The edges visit pixels in no order: the nodes a few edges ahead are fetched
  // while this one is handled.
  constexpr int64_t kAhead = 16;
  auto prefetch = [&](const void* base, size_t elem, int64_t i, int64_t end) {
    if (i >= end) return;
    int64_t a, b;
    endpoints(record_id(edges[i]), a, b);
    __builtin_prefetch(static_cast<const char*>(base) + a * elem);
    __builtin_prefetch(static_cast<const char*>(base) + b * elem);
  };
  // Every root's threshold is k (a single pixel) or one assigned at a merge, so
  // none exceeds the largest of these, `ceiling`; an edge at or above it merges
  // nothing. The records after an edge whose key, cut to the 24 bits the sort
  // orders by, reaches the ceiling all do too: from there on the pass would
  // only sort edges into kept or inside, and the min_size pass takes them all
  // as they are (it skips an edge inside a component). At scale 1 this ends
  // the pass after a third of the edges.
  constexpr uint32_t kSortedMask = ~((uint32_t(1) << kUnsortedBits) - 1);
  uint32_t ceiling = first_threshold;
  int64_t rest = edges_count;  // the first edge the pass did not visit
  // The merge decisions are as good as random in sorted order: rather than
  // branch on them, every edge writes both roots back, unchanged when it does
  // not merge, and every edge is written to the kept list, which only
  // advances for the edges it keeps. With a == b both writes go to one node
  // and leave it as it was.
  for (int64_t i = 0; i < edges_count; ++i) {
    if (i % kStopStride == 0 && stop) return 0;
    const uint64_t e = edges[i];
    const uint32_t key = record_key(e);
    if ((key & kSortedMask) >= ceiling) {  // taken once
      rest = i;
      break;
    }
    // Two hops ahead, as in the min_size pass below.
    prefetch(nodes, sizeof(Node), i + 2 * kAhead, edges_count);
    if (i + kAhead < edges_count) {
      int64_t a, b;
      endpoints(record_id(edges[i + kAhead]), a, b);
      const int32_t ua = nodes[a].up, ub = nodes[b].up;
      __builtin_prefetch(nodes + pick(ua < 0, a, int64_t(ua)));
      __builtin_prefetch(nodes + pick(ub < 0, b, int64_t(ub)));
    }
    int64_t a, b;
    endpoints(record_id(e), a, b);
    a = find(nodes, a);
    b = find(nodes, b);
    const Node na = nodes[a], nb = nodes[b];
    // Both sides are float bits of non-negative numbers: compared as integers.
    const bool apart = a != b;
    const bool merge = apart & (key < std::min(na.threshold, nb.threshold));
    const bool a_big = na.up <= nb.up;  // sizes are negated
    const int64_t big = pick(a_big, a, b), little = a ^ b ^ big;
    const int32_t little_up = pick(a_big, nb.up, na.up);
    const int32_t grown = na.up + nb.up;
    const uint32_t threshold =
        float_bits(static_cast<float>(double(bits_float(key)) + k / double(-grown)));
    nodes[little].up = pick(merge, int32_t(big), little_up);
    nodes[big].up = pick(merge, grown, nodes[big].up);
    nodes[big].threshold = pick(merge, threshold, nodes[big].threshold);
    ceiling = std::max(ceiling, pick(merge, threshold, uint32_t(0)));
    edges[kept] = e;
    kept += apart & !merge;
  }
  // The min_size pass, over the kept edges and then those the first pass did
  // not visit, in order. Components below min_size are counted, so that the
  // pass stops when none is left; and a component that starts the pass at
  // min_size or above never falls below it, so an edge between two such never
  // merges: a byte per pixel flags the others.
  const int64_t min_size = params.min_size;
  int64_t small = 0, small_pixels = 0;
  for (int64_t p = 0; p < n; ++p) {
    const int64_t r = find(nodes, p);
    const int32_t root_up = nodes[r].up;
    const bool below = -int64_t(root_up) < min_size;
    small += (r == p) & below;
    small_pixels += below;
    in_small[p] = below;
    forest_ups[p] = pick(r == p, root_up, int32_t(r));
  }
  // When few pixels are flagged, the flagged edges are gathered first, so that
  // only they need finds: without a branch, since flagged or not is as good as
  // random in sorted order. When most are (scale 1: almost all), the sweep
  // would copy nearly every edge for nothing.
  int64_t ranges[2][2] = {{0, kept}, {rest, edges_count}};
  if (small > 0 && small_pixels < n / 2) {
    int64_t flagged = 0;
    for (auto& range : ranges)
      for (int64_t i = range[0]; i < range[1]; ++i) {
        const uint64_t e = edges[i];
        int64_t a, b;
        endpoints(record_id(e), a, b);
        edges[flagged] = e;  // flagged <= i: a range never overtakes its source
        flagged += in_small[a] | in_small[b];
      }
    ranges[0][1] = flagged;
    ranges[1][0] = ranges[1][1] = flagged;
  }
  for (const auto& range : ranges) {
    const int64_t end = range[1];
    for (int64_t i = range[0]; i < end && small > 0; ++i) {
      if (i % kStopStride == 0 && stop) return 0;
      // Two hops ahead: the endpoints' entries for the edge 2 kAhead on, and
      // for the edge kAhead on (whose entries have arrived) their parents.
      prefetch(forest_ups, sizeof(int32_t), i + 2 * kAhead, end);
      if (i + kAhead < end) {
        int64_t a, b;
        endpoints(record_id(edges[i + kAhead]), a, b);
        const int32_t ua = forest_ups[a], ub = forest_ups[b];
        __builtin_prefetch(forest_ups + pick(ua < 0, a, int64_t(ua)));
        __builtin_prefetch(forest_ups + pick(ub < 0, b, int64_t(ub)));
      }
      int64_t a, b;
      endpoints(record_id(edges[i]), a, b);
      a = find(forest_ups, a);
      b = find(forest_ups, b);
      const int32_t ua = forest_ups[a], ub = forest_ups[b];
      const bool small_a = -int64_t(ua) < min_size;
      const bool small_b = -int64_t(ub) < min_size;
      const bool merge = (a != b) & (small_a | small_b);  // no branch, as above
      const bool a_big = ua <= ub;
      const int64_t big = pick(a_big, a, b), little = a ^ b ^ big;
      const int32_t little_up = pick(a_big, ub, ua);
      const int32_t grown = ua + ub;
      forest_ups[little] = pick(merge, int32_t(big), little_up);
      forest_ups[big] = pick(merge, grown, forest_ups[big]);
      small += pick(merge, int64_t(-int64_t(grown) < min_size) - small_a - small_b, int64_t(0));
    }
  }
  // Segments numbered by first pixel in raster order: labels[root] holds its
  // segment's number from the segment's first pixel on (labels of non-roots
  // are written but never read as numbers).
  std::fill(labels, labels + n, -1);
  int64_t count = 0;
  for (int64_t p = 0; p < n; ++p) {
    const int64_t r = find(forest_ups, p);
    if (labels[r] < 0) labels[r] = count++;
    labels[p] = labels[r];
  }
  return count;
}

}  // namespace cnnkit

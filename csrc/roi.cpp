// The expressions below follow torchvision's CPU kernels operation by
// operation (all in T, spatial_scale included; the order of the four bilinear
// terms), so that results agree with it to the last bit or two;
// please keep that order when changing them.
#include "roi.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "interrupt.hpp"
#include "parallel.hpp"

namespace cnnkit {

namespace {

// Channels per backward task: tasks are (image, channel block), and each
// task's dx elements are written by it alone.
constexpr int64_t kChannelBlock = 32;

template <class T>
AlignWindow<T> align_window(const RoiGeometry& g, const T* roi, int sampling_ratio, bool aligned) {
  // torchvision takes spatial_scale as a T, and so does every product here.
  const T offset = aligned ? T(0.5) : T(0), scale = T(g.spatial_scale);
  AlignWindow<T> a;
  a.start_w = roi[1] * scale - offset;
  a.start_h = roi[2] * scale - offset;
  const T end_w = roi[3] * scale - offset;
  const T end_h = roi[4] * scale - offset;
  T w = end_w - a.start_w, h = end_h - a.start_h;
  if (!aligned) {  // torchvision's legacy mode: RoIs at least one pixel wide
    w = std::max(w, T(1));
    h = std::max(h, T(1));
  }
  a.bin_h = h / T(g.pooled_h);
  a.bin_w = w / T(g.pooled_w);
  a.grid_h = sampling_ratio > 0 ? sampling_ratio : int64_t(std::ceil(h / T(g.pooled_h)));
  a.grid_w = sampling_ratio > 0 ? sampling_ratio : int64_t(std::ceil(w / T(g.pooled_w)));
  return a;
}

// One bilinear sample: element offsets (in pixels) of the four neighbours
// and their weights; false when the point is more than a pixel outside.
template <class T>
struct Sample {
  int64_t p1, p2, p3, p4;
  T w1, w2, w3, w4;
};

template <class T>
bool bilinear(int64_t height, int64_t width, T y, T x, Sample<T>& s) {
  if (y < -1.0 || y > height || x < -1.0 || x > width) return false;
  if (y <= 0) y = 0;
  if (x <= 0) x = 0;
  int64_t y_low = int64_t(y), x_low = int64_t(x), y_high, x_high;
  if (y_low >= height - 1) {
    y_high = y_low = height - 1;
    y = T(y_low);
  } else {
    y_high = y_low + 1;
  }
  if (x_low >= width - 1) {
    x_high = x_low = width - 1;
    x = T(x_low);
  } else {
    x_high = x_low + 1;
  }
  const T ly = y - T(y_low), lx = x - T(x_low);
  const T hy = T(1) - ly, hx = T(1) - lx;
  s.w1 = hy * hx;
  s.w2 = hy * lx;
  s.w3 = ly * hx;
  s.w4 = ly * lx;
  s.p1 = y_low * width + x_low;
  s.p2 = y_low * width + x_high;
  s.p3 = y_high * width + x_low;
  s.p4 = y_high * width + x_high;
  return true;
}

// Calls f(sample) for every in-range sample of bin (ph, pw), in torchvision's order.
template <class T, class F>
void for_each_sample(const RoiGeometry& g, const AlignWindow<T>& a, int64_t ph, int64_t pw, F f) {
  Sample<T> s;
  for (int64_t iy = 0; iy < a.grid_h; ++iy) {
    const T y = a.start_h + T(ph) * a.bin_h +
                static_cast<T>(float(iy) + .5f) * a.bin_h / static_cast<T>(a.grid_h);
    for (int64_t ix = 0; ix < a.grid_w; ++ix) {
      const T x = a.start_w + T(pw) * a.bin_w +
                  static_cast<T>(float(ix) + .5f) * a.bin_w / static_cast<T>(a.grid_w);
      if (bilinear(g.height, g.width, y, x, s)) f(s);
    }
  }
}

template <class T>
T sample_count(const AlignWindow<T>& a) {
  return T(std::max<int64_t>(a.grid_h * a.grid_w, 1));
}

int64_t image_of(const double batch_index) { return int64_t(batch_index); }

// For each image, the RoIs on it in increasing order.
template <class T>
std::vector<std::vector<int64_t>> rois_by_image(const T* rois, int64_t k, int64_t batch) {
  std::vector<std::vector<int64_t>> by(static_cast<size_t>(batch));
  for (int64_t r = 0; r < k; ++r) by[size_t(image_of(double(rois[5 * r])))].push_back(r);
  return by;
}

// Runs task(image, c0, c1) for every (image, channel block), in parallel.
template <class Task>
void image_channel_tasks(const RoiGeometry& g, int64_t work, Task task) {
  const int64_t blocks = (g.channels + kChannelBlock - 1) / kChannelBlock;
  const int64_t tasks = g.batch * blocks;
  if (tasks == 0) return;
  const int nt = static_cast<int>(std::min<int64_t>(threads_for(work), tasks));
  const StopToken stop;
#pragma omp parallel for schedule(dynamic) num_threads(nt) if (nt > 1)
  for (int64_t i = 0; i < tasks; ++i) {
    if (stop) continue;
    const int64_t c0 = (i % blocks) * kChannelBlock;
    task(i / blocks, c0, std::min(g.channels, c0 + kChannelBlock));
  }
}

// RoI pooling's bin (ph, pw) as a clipped cell range [h0, h1) x [w0, w1).
struct PoolBin {
  int64_t h0, h1, w0, w1;
  bool empty() const { return h1 <= h0 || w1 <= w0; }
};

template <class T>
struct PoolWindow {
  int64_t start_h, start_w;
  T bin_h, bin_w;
};

template <class T>
PoolWindow<T> pool_window(const RoiGeometry& g, const T* roi) {
  const T scale = T(g.spatial_scale);
  const int64_t start_w = int64_t(std::round(roi[1] * scale));
  const int64_t start_h = int64_t(std::round(roi[2] * scale));
  const int64_t end_w = int64_t(std::round(roi[3] * scale));
  const int64_t end_h = int64_t(std::round(roi[4] * scale));
  const int64_t roi_w = std::max<int64_t>(end_w - start_w + 1, 1);
  const int64_t roi_h = std::max<int64_t>(end_h - start_h + 1, 1);
  return {start_h, start_w, T(roi_h) / T(g.pooled_h), T(roi_w) / T(g.pooled_w)};
}

template <class T>
PoolBin pool_bin(const RoiGeometry& g, const PoolWindow<T>& p, int64_t ph, int64_t pw) {
  const auto clamp = [](int64_t v, int64_t hi) { return std::min(std::max<int64_t>(v, 0), hi); };
  const int64_t h0 = int64_t(std::floor(T(ph) * p.bin_h));
  const int64_t w0 = int64_t(std::floor(T(pw) * p.bin_w));
  const int64_t h1 = int64_t(std::ceil(T(ph + 1) * p.bin_h));
  const int64_t w1 = int64_t(std::ceil(T(pw + 1) * p.bin_w));
  return {clamp(h0 + p.start_h, g.height), clamp(h1 + p.start_h, g.height),
          clamp(w0 + p.start_w, g.width), clamp(w1 + p.start_w, g.width)};
}

// The first maximum (or first NaN) of channels [c0, c1) over a non-empty bin
// of image `img` (pixels of `channels` elements): values to best, cells to at.
// Cells are integers as wide as T, and updated by selects, so that the channel
// loop vectorises (the bindings keep height * width below 2^31).
template <class T>
using CellIndex = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;

template <class T>
void bin_max(const RoiGeometry& g, const T* img, const PoolBin& b, int64_t c0, int64_t c1,
             T* best, CellIndex<T>* at) {
  const int64_t C = g.channels, first = b.h0 * g.width + b.w0;
  for (int64_t c = c0; c < c1; ++c) {
    best[c - c0] = img[first * C + c];
    at[c - c0] = CellIndex<T>(first);
  }
  for (int64_t h = b.h0; h < b.h1; ++h)
    for (int64_t w = (h == b.h0 ? b.w0 + 1 : b.w0); w < b.w1; ++w) {
      const auto cell = CellIndex<T>(h * g.width + w);
      const T* v = img + int64_t(cell) * C;
      for (int64_t c = c0; c < c1; ++c) {
        const T m = best[c - c0], u = v[c];
        const bool take = (u > m) | ((u != u) & (m == m));
        best[c - c0] = take ? u : m;
        at[c - c0] = take ? cell : at[c - c0];
      }
    }
}

// bin_max without the cells: a select per element, which vectorises.
template <class T>
void bin_max_values(const RoiGeometry& g, const T* img, const PoolBin& b, T* best) {
  const int64_t C = g.channels;
  const T* first = img + (b.h0 * g.width + b.w0) * C;
  std::copy(first, first + C, best);
  for (int64_t h = b.h0; h < b.h1; ++h)
    for (int64_t w = (h == b.h0 ? b.w0 + 1 : b.w0); w < b.w1; ++w) {
      const T* v = img + (h * g.width + w) * C;
      for (int64_t c = 0; c < C; ++c) {
        const T m = best[c], u = v[c];
        best[c] = ((u > m) | ((u != u) & (m == m))) ? u : m;  // the first NaN stays
      }
    }
}

}  // namespace

template <class T>
void roi_align(const RoiGeometry& g, const T* x, const T* rois, int64_t k, int sampling_ratio,
               bool aligned, T* y) {
  const int64_t C = g.channels, rows = k * g.pooled_h;
  if (rows == 0 || C == 0) return;
  const int64_t image_size = g.height * g.width * C;
  const int nt = threads_for(rows * g.pooled_w * C * 4, int64_t(1) << 14);
  const StopToken stop;
#pragma omp parallel for schedule(dynamic) num_threads(nt) if (nt > 1)
  for (int64_t row = 0; row < rows; ++row) {
    if (stop) continue;
    const int64_t r = row / g.pooled_h, ph = row % g.pooled_h;
    const T* roi = rois + 5 * r;
    const T* img = x + image_of(double(roi[0])) * image_size;
    const AlignWindow<T> a = align_window(g, roi, sampling_ratio, aligned);
    const T count = sample_count(a);
    for (int64_t pw = 0; pw < g.pooled_w; ++pw) {
      T* out = y + (row * g.pooled_w + pw) * C;
      std::fill(out, out + C, T(0));
      for_each_sample(g, a, ph, pw, [&](const Sample<T>& s) {
        const T *v1 = img + s.p1 * C, *v2 = img + s.p2 * C;
        const T *v3 = img + s.p3 * C, *v4 = img + s.p4 * C;
        for (int64_t c = 0; c < C; ++c)
          out[c] += s.w1 * v1[c] + s.w2 * v2[c] + s.w3 * v3[c] + s.w4 * v4[c];
      });
      for (int64_t c = 0; c < C; ++c) out[c] /= count;
    }
  }
}

template <class T>
void roi_align_backward(const RoiGeometry& g, const T* dy, const T* rois, int64_t k,
                        int sampling_ratio, bool aligned, T* dx) {
  const int64_t C = g.channels, image_size = g.height * g.width * C;
  std::fill(dx, dx + g.batch * image_size, T(0));
  const auto by_image = rois_by_image(rois, k, g.batch);
  image_channel_tasks(g, k * g.pooled_h * g.pooled_w * C * 4, [&](int64_t n, int64_t c0,
                                                                   int64_t c1) {
    T* img = dx + n * image_size;
    for (const int64_t r : by_image[size_t(n)]) {
      const AlignWindow<T> a = align_window(g, rois + 5 * r, sampling_ratio, aligned);
      const T count = sample_count(a);
      for (int64_t ph = 0; ph < g.pooled_h; ++ph)
        for (int64_t pw = 0; pw < g.pooled_w; ++pw) {
          const T* grad = dy + ((r * g.pooled_h + ph) * g.pooled_w + pw) * C;
          for_each_sample(g, a, ph, pw, [&](const Sample<T>& s) {
            T *d1 = img + s.p1 * C, *d2 = img + s.p2 * C;
            T *d3 = img + s.p3 * C, *d4 = img + s.p4 * C;
            for (int64_t c = c0; c < c1; ++c) {
              d1[c] += grad[c] * s.w1 / count;
              d2[c] += grad[c] * s.w2 / count;
              d3[c] += grad[c] * s.w3 / count;
              d4[c] += grad[c] * s.w4 / count;
            }
          });
        }
    }
  });
}

template <class T>
void roi_pool(const RoiGeometry& g, const T* x, const T* rois, int64_t k, T* y) {
  const int64_t C = g.channels, rows = k * g.pooled_h;
  if (rows == 0 || C == 0) return;
  const int64_t image_size = g.height * g.width * C;
  const int nt = threads_for(rows * g.pooled_w * C * 4, int64_t(1) << 14);
  const StopToken stop;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
#pragma omp for schedule(dynamic)
    for (int64_t row = 0; row < rows; ++row) {
      if (stop) continue;
      const int64_t r = row / g.pooled_h, ph = row % g.pooled_h;
      const T* roi = rois + 5 * r;
      const T* img = x + image_of(double(roi[0])) * image_size;
      const PoolWindow<T> p = pool_window(g, roi);
      for (int64_t pw = 0; pw < g.pooled_w; ++pw) {
        T* out = y + (row * g.pooled_w + pw) * C;
        const PoolBin b = pool_bin(g, p, ph, pw);
        if (b.empty())
          std::fill(out, out + C, T(0));
        else
          bin_max_values(g, img, b, out);
      }
    }
  }
}

template <class T>
void roi_pool_backward(const RoiGeometry& g, const T* x, const T* dy, const T* rois, int64_t k,
                       T* dx) {
  const int64_t C = g.channels, image_size = g.height * g.width * C;
  std::fill(dx, dx + g.batch * image_size, T(0));
  const auto by_image = rois_by_image(rois, k, g.batch);
  image_channel_tasks(g, k * g.pooled_h * g.pooled_w * C * 4, [&](int64_t n, int64_t c0,
                                                                   int64_t c1) {
    const T* img = x + n * image_size;
    T* dimg = dx + n * image_size;
    T best[kChannelBlock];
    CellIndex<T> at[kChannelBlock];
    for (const int64_t r : by_image[size_t(n)]) {
      const PoolWindow<T> p = pool_window(g, rois + 5 * r);
      for (int64_t ph = 0; ph < g.pooled_h; ++ph)
        for (int64_t pw = 0; pw < g.pooled_w; ++pw) {
          const PoolBin b = pool_bin(g, p, ph, pw);
          if (b.empty()) continue;
          bin_max(g, img, b, c0, c1, best, at);
          const T* grad = dy + ((r * g.pooled_h + ph) * g.pooled_w + pw) * C;
          for (int64_t c = c0; c < c1; ++c) dimg[int64_t(at[c - c0]) * C + c] += grad[c];
        }
    }
  });
}

void masks_to_boxes(const uint8_t* masks, int64_t n, int64_t height, int64_t width,
                    float* boxes) {
  const int nt = threads_for(n * height * width, int64_t(1) << 16);
  const StopToken stop;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t i = 0; i < n; ++i) {
    if (stop) continue;
    const uint8_t* m = masks + i * height * width;
    int64_t x0 = width, y0 = height, x1 = -1, y1 = -1;
    for (int64_t y = 0; y < height; ++y) {
      const uint8_t* row = m + y * width;
      int64_t first = 0;
      while (first < width && !row[first]) ++first;
      if (first == width) continue;
      int64_t last = width - 1;
      while (!row[last]) --last;
      y0 = std::min(y0, y);
      y1 = y;
      x0 = std::min(x0, first);
      x1 = std::max(x1, last);
    }
    float* b = boxes + 4 * i;
    if (y1 < 0) {
      b[0] = b[1] = b[2] = b[3] = 0.0f;
    } else {
      b[0] = float(x0);
      b[1] = float(y0);
      b[2] = float(x1);
      b[3] = float(y1);
    }
  }
}

#define CNNKIT_ROI(T)                                                                           \
  template void roi_align<T>(const RoiGeometry&, const T*, const T*, int64_t, int, bool, T*);   \
  template void roi_align_backward<T>(const RoiGeometry&, const T*, const T*, int64_t, int,     \
                                      bool, T*);                                                \
  template void roi_pool<T>(const RoiGeometry&, const T*, const T*, int64_t, T*);               \
  template void roi_pool_backward<T>(const RoiGeometry&, const T*, const T*, const T*, int64_t, \
                                     T*);
CNNKIT_ROI(float)
CNNKIT_ROI(double)
#undef CNNKIT_ROI

}  // namespace cnnkit

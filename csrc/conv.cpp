#include "conv.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <memory>
#include <type_traits>
#include <vector>

#include "add_relu.hpp"
#include "conv_direct.hpp"
#include "conv_stem.hpp"
#include "conv_weight_cache.hpp"
#include "gemm.hpp"
#include "gemm_few_rows.hpp"
#include "gemm_small_k.hpp"
#include "interrupt.hpp"
#include "parallel.hpp"
#include "winograd.hpp"

namespace cnnkit {

bool ConvProblem::is_pointwise() const {
  for (int d = 0; d < kMaxSpatialDims; ++d)
    if (g.kernel[d] != 1 || g.stride[d] != 1 || g.pad_before[d] != 0 || g.pad_after[d] != 0)
      return false;
  return groups == 1;
}

namespace {

// The forward pass keeps winograd_preferred's rule (16 tiles of 4x4 outputs):
// re-measured with the transformed filters cached across calls, on
// ResNet-18's 3x3 layers (one thread, CPU time, load ~7): 7x7x512 maps took
// Winograd 0.42x (b1, 4 tiles), 0.55x (b2), 0.88x (b4, 16 tiles) and 1.2x
// (b8) of im2col's speed; 14x14x256 1.0x (b1, 16 tiles), 1.3x (b2), 1.9x
// (b8); 28x28 and 56x56 2-2.5x. The b4 7x7 case sits at the crossover
// (1.4x with two threads), so a finer cut would not pay reliably.
//
// Except for wide layers on fewer than 32 tiles (batch 1 at 13x13 or 14x14,
// AlexNet's and ResNet's 256-512 channel layers: 16 tiles): there im2col,
// its packed weights cached across calls (csrc/conv_weight_cache.hpp), was
// 1.3-1.4x faster than Winograd with 256x256 and 384x256 channels and even
// with 512x512 (one thread, CPU time, load ~12, Sapphire Rapids): Winograd
// streams 36 transformed filter matrices, four times the weights, for few
// products. At 32 tiles the two were even.
bool few_tiles_of_wide_layer(const ConvProblem& p) {
  const int64_t tiles = p.batch * ((p.g.out[0] + 3) / 4) * ((p.g.out[1] + 3) / 4);
  return tiles < 32 && p.in_channels * p.out_channels >= 256 * 256;
}

bool use_winograd(const ConvProblem& p) {
  if (p.algorithm == ConvAlgorithm::winograd) return winograd_applies(p);
  return p.algorithm == ConvAlgorithm::automatic && winograd_preferred(p) &&
         !few_tiles_of_wide_layer(p);
}

// And for narrower layers where few of those tiles' outputs exist (under 70%:
// 13 x 13 maps fill 169 of 256) when the few-row GEMM takes the product: in
// SqueezeNet 1.1 at batch 1 (one thread, CPU time, fastest of 20 calls in the
// network, load ~5.5) its 13 x 13 expand3x3 layers took 0.42 ms (64 -> 256)
// and 0.26 (48 -> 192) by Winograd, 0.31 and 0.18 by im2col; onnxruntime 0.30
// and 0.17. In isolation the two were even (0.31-0.33 and 0.20 ms, caches
// flushed between calls), so it is Winograd's larger operands, four times the
// weights and cold in a network, that lose. At 14 x 14 (77%) Winograd stays:
// 128 -> 128 took 0.32 ms against im2col's 0.38 in isolation. At most
// kMaxRows rows, where the few-row GEMM's choice does not depend on the
// thread count.
template <class T>
bool sparse_tiles_on_few_rows(const ConvProblem& p) {
  const int64_t tiles = p.batch * ((p.g.out[0] + 3) / 4) * ((p.g.out[1] + 3) / 4);
  return p.algorithm == ConvAlgorithm::automatic && tiles < 32 && 10 * p.rows() < 7 * 16 * tiles &&
         p.groups == 1 && p.rows() <= few_rows::kMaxRows &&
         gemm_few_rows_applies<T>(p.rows(), p.out_channels, p.patch_size());
}

// dx by Winograd computes whole 4x4 tiles of the input's shape: a small
// image wastes the cut-off part of its last tiles (13x13 fills 169 of 256
// tile positions). Since Winograd caches its packed filters and vectorises
// its transforms it wins down to about half coverage (one thread, CPU time,
// dx of N64 13x13x32 from 11x11x64: 2.1 ms against im2col's 2.8; 9x9x64
// and 6x6x64 at 0.56: 1.1x and 1.0x); at 5x5 (0.39) it was 1.15x with 64
// channels but 0.88x with 128, so below half im2col stays.
bool use_winograd_backward_input(const ConvProblem& p) {
  if (p.algorithm != ConvAlgorithm::automatic) return use_winograd(p);
  if (!winograd_preferred(p)) return false;
  const int64_t h = p.g.in[0], w = p.g.in[1];
  const int64_t covered = ((h + 3) / 4 * 4) * ((w + 3) / 4 * 4);
  return 2 * h * w >= covered;
}

// Up to how many rows (output positions over the batch) conv_forward takes
// its packed weights from csrc/conv_weight_cache.hpp. Beyond it the packing
// is under a thousandth of the product, and a training step, whose weights
// change every call, would only pay for the cache's copy.
constexpr int64_t kCachedWeightRows = 4096;

// Rows of P per tile: about 1 MiB of patches, small enough to stay in cache
// between the gather and the multiply. (w is packed once per call, not per
// tile; see pack_groups.) A multiple of 84, which every GEMM path's register
// tile height (4, 6 or 14 rows) divides: a tile of 113 rows would end in a
// 1-row register tile costing as much as a full one, about a tenth of the
// multiply wasted.
template <class T>
int64_t tile_rows(const ConvProblem& p) {
  constexpr int64_t kStep = 84;
  const int64_t per_row = std::max<int64_t>(1, p.patch_size()) * int64_t(sizeof(T));
  const int64_t rows = std::clamp<int64_t>((int64_t(1) << 20) / per_row, kStep, 4096);
  return std::max<int64_t>(kStep, (rows + kStep / 2) / kStep * kStep);
}

// The same geometry with its trailing unit dimensions (a 1-D or 2-D
// problem's: size, window and output 1, no padding) moved to the front. Flat
// positions and P's column order are unchanged, and walk_patches's runs,
// which follow the last dimension, then cover a whole kernel row of a 2-D
// image (kernel width x channels) instead of one tap's channels: 25 runs of
// 16 values per patch row became 5 of 80 for a 5x5 kernel over 16 channels,
// where the walk's bookkeeping per run cost more than the copy.
inline Geometry innermost_last(Geometry g) {
  const auto unit = [&](int d) {
    return g.in[d] == 1 && g.kernel[d] == 1 && g.out[d] == 1 && g.pad_before[d] == 0;
  };
  for (int shifts = 0; shifts < kMaxSpatialDims - 1 && unit(2) && !(unit(0) && unit(1)); ++shifts) {
    for (int d = 2; d > 0; --d) {
      g.in[d] = g.in[d - 1], g.kernel[d] = g.kernel[d - 1], g.out[d] = g.out[d - 1];
      g.stride[d] = g.stride[d - 1], g.dilation[d] = g.dilation[d - 1];
      g.pad_before[d] = g.pad_before[d - 1], g.pad_after[d] = g.pad_after[d - 1];
    }
    g.in[0] = g.kernel[0] = g.out[0] = g.stride[0] = g.dilation[0] = 1;
    g.pad_before[0] = g.pad_after[0] = 0;
  }
  return g;
}

// Walks P's rows [row0, row0 + rows), columns [col0, col1) of group `group`
// in row-major order, as runs of consecutive columns: calls run(r, c, src,
// len) for a run at row r, column c that reads x[src .. src + len), and
// pad(r, c, len) for a run in the padding. With one group and no dilation
// along the innermost dimension, a whole kernel row reads one contiguous
// stretch of x, so it is a single run.
template <class Run, class Pad>
void walk_patches(const ConvProblem& p, int64_t group, int64_t row0, int64_t rows, int64_t col0,
                  int64_t col1, Run&& run, Pad&& pad) {
  const Geometry g = innermost_last(p.g);
  const int64_t cg = p.in_per_group(), cin = p.in_channels, width = g.kernel[2] * cg;
  const bool rows_contiguous = p.groups == 1 && g.dilation[2] == 1;
  // Emits the part of the run [c, c + len) that lies in [col0, col1).
  auto clip = [&](int64_t r, int64_t c, int64_t len, auto&& emit) {
    const int64_t lo = std::max(c, col0), hi = std::min(c + len, col1);
    if (lo < hi) emit(r, lo, lo - c, hi - lo);
  };
  auto padding = [&](int64_t r, int64_t c, int64_t, int64_t len) { pad(r, c, len); };
  // Rows come in lines: the out[2] positions along the innermost dimension
  // that share n and the outer output coordinates.
  for (int64_t r = 0; r < rows;) {
    const int64_t flat = row0 + r, line = flat / g.out[2], first = flat % g.out[2];
    const int64_t count = std::min(rows - r, g.out[2] - first);
    const int64_t n = line / (g.out[0] * g.out[1]), outer = line % (g.out[0] * g.out[1]);
    const int64_t base0 = (outer / g.out[1]) * g.stride[0] - g.pad_before[0];
    const int64_t base1 = (outer % g.out[1]) * g.stride[1] - g.pad_before[1];
    int64_t c = 0;  // P's column for kernel offset (k0, k1, 0)
    for (int64_t k0 = 0; k0 < g.kernel[0]; ++k0) {
      const int64_t i0 = base0 + k0 * g.dilation[0];
      for (int64_t k1 = 0; k1 < g.kernel[1]; ++k1, c += width) {
        if (c >= col1 || c + width <= col0) continue;
        const int64_t i1 = base1 + k1 * g.dilation[1];
        if (i0 < 0 || i0 >= g.in[0] || i1 < 0 || i1 >= g.in[1]) {
          for (int64_t q = 0; q < count; ++q) clip(r + q, c, width, padding);
          continue;
        }
        const int64_t row_start = ((n * g.in[0] + i0) * g.in[1] + i1) * g.in[2];
        for (int64_t q = 0; q < count; ++q) {
          const int64_t base2 = (first + q) * g.stride[2] - g.pad_before[2];
          if (rows_contiguous) {
            // The kernel row reads one stretch of x; [lo, hi) are its columns inside.
            const int64_t lo = std::clamp<int64_t>(-base2, 0, g.kernel[2]);
            const int64_t hi = std::clamp<int64_t>(g.in[2] - base2, lo, g.kernel[2]);
            const int64_t src = (row_start + base2 + lo) * cin;
            clip(r + q, c, lo * cg, padding);
            clip(r + q, c + lo * cg, (hi - lo) * cg,
                 [&](int64_t rr, int64_t cc, int64_t skip, int64_t len) { run(rr, cc, src + skip, len); });
            clip(r + q, c + hi * cg, (g.kernel[2] - hi) * cg, padding);
            continue;
          }
          for (int64_t k2 = 0; k2 < g.kernel[2]; ++k2) {
            const int64_t i2 = base2 + k2 * g.dilation[2], ck = c + k2 * cg;
            if (i2 < 0 || i2 >= g.in[2]) {
              clip(r + q, ck, cg, padding);
              continue;
            }
            const int64_t src = (row_start + i2) * cin + group * cg;
            clip(r + q, ck, cg,
                 [&](int64_t rr, int64_t cc, int64_t skip, int64_t len) { run(rr, cc, src + skip, len); });
          }
        }
      }
    }
    r += count;
  }
}

// buf (rows x (col1 - col0), row stride ld, col1 - col0 when 0) = P[rows, cols].
template <class T>
void gather(const ConvProblem& p, const T* x, int64_t group, int64_t row0, int64_t rows,
            int64_t col0, int64_t col1, T* buf, int64_t ld = 0) {
  const int64_t width = ld > 0 ? ld : col1 - col0;
  walk_patches(
      p, group, row0, rows, col0, col1,
      [&](int64_t r, int64_t c, int64_t src, int64_t len) {
        T* dst = buf + r * width + (c - col0);
        // Runs are short when there are few channels: a call to memcpy
        // would cost more than the copy.
        if (len <= 16)
          for (int64_t q = 0; q < len; ++q) dst[q] = x[src + q];
        else
          std::memcpy(dst, x + src, size_t(len) * sizeof(T));
      },
      [&](int64_t r, int64_t c, int64_t len) {
        std::fill_n(buf + r * width + (c - col0), len, T(0));
      });
}

// dx += the adjoint of gather for all columns (col2im).
template <class T>
void scatter_add(const ConvProblem& p, const T* buf, int64_t group, int64_t row0, int64_t rows,
                 T* dx) {
  const int64_t width = p.patch_size();
  walk_patches(
      p, group, row0, rows, 0, width,
      [&](int64_t r, int64_t c, int64_t dst, int64_t len) {
        const T* src = buf + r * width + c;
        T* out = dx + dst;
        for (int64_t q = 0; q < len; ++q) out[q] += src[q];
      },
      [](int64_t, int64_t, int64_t) {});
}

// The weight gradient's runs of output positions (conv_backward_weight):
// kWeightChunks of at least kWeightChunkRows positions each, when the copies
// of dw take at most kWeightChunkBytes.
constexpr int64_t kWeightChunks = 8, kWeightChunkRows = 512, kWeightChunkBytes = int64_t(8) << 20;

template <class T>
std::vector<T>& thread_buffer(size_t size) {
  thread_local std::vector<T> buf;
  if (buf.size() < size) buf.resize(size);
  return buf;
}

// Each group's block of w (cog columns of the kd x cout matrix), or of its
// transpose, packed once for all tiles and threads of a call.
template <class T>
std::vector<PackedB<T>> pack_groups(const ConvProblem& p, const T* w, bool transpose) {
  const int64_t kd = p.patch_size(), cog = p.out_per_group(), cout = p.out_channels;
  std::vector<PackedB<T>> packed;
  packed.reserve(size_t(p.groups));
  for (int64_t group = 0; group < p.groups; ++group)
    packed.push_back(transpose ? pack_b(true, cog, kd, w + group * cog, cout)
                               : pack_b(false, kd, cog, w + group * cog, cout));
  return packed;
}

// Whether the few-row GEMM reads p's patches in place (FewRowsImplicit):
// float windows over at most two spatial dimensions, one group, 16 or more
// input channels, 4 or more output positions per output row (a row tile
// lies in one or two output rows), and a padded copy, if one is needed, of
// at most 8 pixels per output position and kMaxPaddedCopy floats (ResNet-18's
// 14 x 14 x 256 layers at batch 1 copy 16 x 16 x 256 floats; the copy is
// made by the calling thread and kept, as the gather's buffers are).
constexpr int64_t kMaxPaddedCopy = int64_t(2) << 20;  // floats: 8 MiB

template <class T>
bool implicit_patches_apply(const ConvProblem& p) {
  const Geometry& g = p.g;
  if (!std::is_same_v<T, float> || p.groups != 1 || p.is_pointwise() ||
      p.in_channels < few_rows::kMinImplicitChannels || g.kernel[2] != 1 || g.in[2] != 1 ||
      g.out[1] < 4)
    return false;
  const int64_t ph = g.in[0] + g.pad_before[0] + g.pad_after[0];
  const int64_t pw = g.in[1] + g.pad_before[1] + g.pad_after[1];
  const bool padded = ph != g.in[0] || pw != g.in[1];
  const int64_t copy = p.batch * ph * pw;  // pixels
  return (!padded || (copy <= 8 * p.rows() && copy * p.in_channels <= kMaxPaddedCopy)) &&
         gemm_few_rows_implicit_applies<T>(p.rows(), p.out_channels, p.patch_size());
}

// FewRowsImplicit for p's patches (where implicit_patches_apply), making the
// padded copy if there is padding.
template <class T>
FewRowsImplicit<T> implicit_patches(const ConvProblem& p, const T* x) {
  const Geometry& g = p.g;
  FewRowsImplicit<T> v;
  const int64_t ph = g.in[0] + g.pad_before[0] + g.pad_after[0];
  const int64_t pw = g.in[1] + g.pad_before[1] + g.pad_after[1];
  v.in_h = ph, v.in_w = pw, v.channels = p.in_channels, v.kernel_w = g.kernel[1];
  v.out_h = g.out[0], v.out_w = g.out[1];
  v.stride_h = g.stride[0], v.stride_w = g.stride[1];
  v.dilation_h = g.dilation[0], v.dilation_w = g.dilation[1];
  v.x = x, v.pixel_stride = p.in_channels;
  if (ph == g.in[0] && pw == g.in[1]) return v;
  // Pixels a multiple of 256 channels apart put a tile's rows of A on the
  // same few L1 sets; a line more between them spreads them (ResNet-18's 7
  // x 7 x 512 3x3 at batch 1: 1.51 -> 1.47 ms, one thread, CPU time).
  const int64_t c = p.in_channels, cs = c % 256 == 0 ? c + 16 : c;
  T* copy = thread_buffer<T>(size_t(p.batch * ph * pw * cs)).data();
  const int64_t left = g.pad_before[1], right = pw - left - g.in[1];
  for (int64_t n = 0; n < p.batch; ++n)
    for (int64_t i = 0; i < ph; ++i) {
      T* out = copy + (n * ph + i) * pw * cs;
      const int64_t h = i - g.pad_before[0];
      if (h < 0 || h >= g.in[0]) {
        std::fill_n(out, pw * cs, T(0));
        continue;
      }
      const T* row = x + (n * g.in[0] + h) * g.in[1] * c;
      std::fill_n(out, left * cs, T(0));
      std::fill_n(out + (left + g.in[1]) * cs, right * cs, T(0));
      if (cs == c) {  // one run for the row's pixels
        std::memcpy(out + left * c, row, size_t(g.in[1] * c) * sizeof(T));
        continue;
      }
      for (int64_t j = 0; j < g.in[1]; ++j)
        std::memcpy(out + (left + j) * cs, row + j * c, size_t(c) * sizeof(T));
    }
  v.pixel_stride = cs;
  v.x = copy;
  return v;
}

}  // namespace

template <class T>
void conv_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y) {
  conv_forward(p, x, w, b, y, Activation::none, T(0));
}

namespace {

// y = y + r, then add_relu's rectifier when `relu`, on the calling thread.
template <class T>
void add_residual(T* y, const T* r, int64_t n, bool relu) {
  if (relu) return add_relu_span(y, r, n, y);
  for (int64_t i = 0; i < n; ++i) y[i] = y[i] + r[i];
}

// y += residual (y's pixels ldy apart, residual's cout), then add_relu's
// rectifier when `relu`: the pass after a path that could not add it as it
// stored.
template <class T>
void add_residual_pass(const ConvProblem& p, T* y, int64_t ldy, const T* residual, bool relu) {
  const int64_t rows = p.rows(), cout = p.out_channels, n = rows * cout;
  if (ldy == cout && relu) return add_relu(y, residual, n, y);
  const int nt = threads_for(n, 1 << 15);
  if (ldy == cout) {
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t i = 0; i < n; ++i) y[i] = y[i] + residual[i];
    return;
  }
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t r = 0; r < rows; ++r) add_residual(y + r * ldy, residual + r * cout, cout, relu);
}

template <class T>
bool forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y, int64_t ldy,
             Activation activation, T negative_slope, const T* residual, bool relu);

// The loops that write y densely (the stem, direct and depthwise loops),
// asked for pixels ldy != cout apart: they compute into a scratch of the
// output's size and copy its rows out, residual included.
template <class T>
void forward_via_scratch(const ConvProblem& p, const T* x, const T* w, const T* b, T* y,
                         int64_t ldy, Activation activation, T negative_slope, const T* residual,
                         bool relu) {
  const int64_t rows = p.rows(), cout = p.out_channels;
  const std::unique_ptr<T[]> dense(new T[size_t(rows * cout)]);  // every value is written
  if (!forward(p, x, w, b, dense.get(), cout, activation, negative_slope, residual, relu) &&
      residual)
    add_residual_pass(p, dense.get(), cout, residual, relu);
  const int nt = threads_for(rows * cout, 1 << 15);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(y + r * ldy, dense.get() + r * cout, size_t(cout) * sizeof(T));
}

// conv_forward, and with a residual conv_forward_residual (activation none
// then), output pixels ldy elements apart (cout for a dense y; more for a
// channel slice of a wider buffer, a concatenation's): returns whether the
// residual was added as the tiles were stored; if not, the caller adds it
// in a pass (add_residual_pass).
template <class T>
bool forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y, int64_t ldy,
             Activation activation, T negative_slope, const T* residual, bool relu) {
  const int64_t rows = p.rows(), cout = p.out_channels, kd = p.patch_size();
  if (rows == 0 || cout == 0) return true;
  const Epilogue<T> act{nullptr, activation, negative_slope};
  if (use_winograd(p) && !sparse_tiles_on_few_rows<T>(p)) {
    detail::winograd_forward(p, x, w, b, y, activation, negative_slope, residual, relu, ldy);
    return true;
  }
  const bool dense_loops = conv_stem_applies<T>(p) || detail::is_depthwise(p) ||
                           detail::has_few_channels(p) ||
                           detail::wide_direct_forward_applies<T>(p);
  if (dense_loops && ldy != cout) {
    forward_via_scratch(p, x, w, b, y, ldy, activation, negative_slope, residual, relu);
    return true;
  }
  // A 3-channel image under a large strided window (csrc/conv_stem.hpp).
  if (conv_stem_applies<T>(p)) {
    conv_stem_forward(p, x, w, b, y, activation, negative_slope);
    return false;
  }
  if (detail::is_depthwise(p) || detail::has_few_channels(p) ||
      detail::wide_direct_forward_applies<T>(p)) {
    if (detail::is_depthwise(p)) {
      if (detail::depthwise_forward(p, x, w, b, y, activation, negative_slope)) return false;
    } else {
      // ReLU, the usual case, as the values are stored: one pass less over y.
      const bool fused_relu = activation == Activation::relu;
      detail::few_channels_forward(p, x, w, b, y, fused_relu);
      if (fused_relu) return false;
    }
    apply_epilogue(act, y, cout, rows, cout);
    return false;
  }
  // Many rows against short, narrow weights (MobileNet's 1x1 layers): the
  // activations read in place, the packed path's bits (csrc/gemm_small_k.hpp).
  if constexpr (std::is_same_v<T, float>) {
    const Epilogue<T> ep{b, activation, negative_slope};
    if (p.is_pointwise() && gemm_small_k_applies(rows, cout, kd, &ep)) {
      gemm_small_k(rows, cout, kd, x, kd, false, w, cout, y, ldy, &ep);
      return false;
    }
  }
  // Few rows on the AVX-512 float path (batch-1 inference of the deep
  // layers): the product is bound by reading the weights, which
  // gemm_few_rows streams once in place, with the packed path's bits. 2-D
  // windows over 16 or more channels read the patches in place (from a
  // zero-padded copy of x where there is padding), with no gather.
  if (implicit_patches_apply<T>(p)) {
    const Epilogue<T> ep{b, activation, negative_slope};
    const FewRowsImplicit<T> implicit = implicit_patches(p, x);
    FewRowsA<T> a;
    a.implicit = &implicit;
    gemm_few_rows(rows, cout, kd, a, w, cout, y, ldy, &ep);
    return false;
  }
  if (p.groups == 1 && gemm_few_rows_applies<T>(rows, cout, kd)) {
    const Epilogue<T> ep{b, activation, negative_slope};
    if (p.is_pointwise()) {
      gemm_few_rows(rows, cout, kd, x, kd, w, cout, y, ldy, &ep);
      return false;
    }
    // The patches gathered one k block at a time into a buffer that stays
    // in L2, not as a whole matrix first: written out whole (2.3 MB for
    // AlexNet's conv4 at batch 1) they went to memory and came back,
    // 0.27 ms of that conv's 2.2 (one thread, CPU time, load ~7).
    struct Patches {
      const ConvProblem* p;
      const T* x;
    } patches{&p, x};
    FewRowsA<T> a;
    a.context = &patches;
    a.fill = [](const void* context, int64_t i0, int64_t rows, int64_t p0, int64_t kc, T* dst,
                int64_t ld) {
      const auto& s = *static_cast<const Patches*>(context);
      gather(*s.p, s.x, 0, i0, rows, p0, p0 + kc, dst, ld);
    };
    gemm_few_rows(rows, cout, kd, a, w, cout, y, ldy, &ep);
    return false;
  }
  // Few rows (small batches, deep layers): packing w would cost about as
  // much as the product, so the packed weights can be kept across calls
  // (CNNKIT_CONV_CACHE_MB; off by default, see csrc/conv_weight_cache.hpp).
  const std::shared_ptr<const PackedConvWeights<T>> packed =
      rows <= kCachedWeightRows
          ? cached_conv_weights(p, w)
          : std::make_shared<const PackedConvWeights<T>>(pack_conv_weights(p, w));
  constexpr int64_t width = PackedConvWeights<T>::kSliceColumns;
  const int64_t cog = p.out_per_group(), slices = packed->slices;
  if (p.is_pointwise()) {
    for (int64_t s = 0; s < slices; ++s) {
      const Epilogue<T> ep{b ? b + s * width : nullptr, activation, negative_slope};
      gemm_packed(false, rows, x, p.in_channels, packed->at(0, s), y + s * width, ldy, false,
                  &ep);
    }
    return false;
  }
  // The rows shared evenly by the tiles, in multiples of the AVX-512 float
  // micro-tile's 14 rows, and at least four tiles of 128 rows or more:
  // ResNet-18's 784-row layers at batch 1 ran as one task (the 1x1 stride-2
  // downsample, 64 patch columns) or two of 420 + 364 rows (the 3x3 stride-2
  // conv); four of 196 keep two threads busy. With more than one tile and
  // more than one thread, a multiple of the threads' count of tiles, whose
  // sizes differ by at most 14 rows: AlexNet's conv2 at batch 1 (729 rows)
  // ran as five tasks of up to 154 rows, three for one thread and two for
  // the other (79% of a fair share), and ResNet-18's layer3.0.conv1 at
  // batch 8 (1568 rows) as seven of 224 (4 + 3: 88%). The GEMM's rows are
  // independent, so the bits do not depend on the cut.
  const int nt = threads_for(rows * std::max<int64_t>(kd, 1) * cout, 1 << 16);
  const int64_t most = tile_rows<T>(p), units = (rows + 13) / 14;
  int64_t tiles = std::max((rows + most - 1) / most, std::min<int64_t>(4, rows / 128));
  if (nt > 1 && tiles > 1) tiles = std::min(units, (tiles + nt - 1) / nt * nt);
  const int64_t tile = 14 * ((units + tiles - 1) / tiles);  // the longest
  // Each task is one tile of rows for one group, and its gemm runs on one
  // thread. With too few tiles to keep the threads busy (small batches),
  // each slice of the weights' columns is a task of its own, which
  // gathers its tile again: cheap beside a slice's product.
  const int64_t split = p.groups * tiles < 2 * int64_t(nt) ? slices : 1;
  const int64_t tasks = tiles * p.groups * split;
  const StopToken stop;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
  for (int64_t task = 0; task < tasks; ++task) {
    if (stop) continue;
    const int64_t t = task / (p.groups * split), group = task / split % p.groups;
    const int64_t s0 = split > 1 ? task % split : 0, s1 = split > 1 ? s0 + 1 : slices;
    const int64_t row0 = 14 * (units * t / tiles);
    const int64_t m = std::min(rows, 14 * (units * (t + 1) / tiles)) - row0;
    T* buf = thread_buffer<T>(size_t(tile * kd)).data();
    gather(p, x, group, row0, m, 0, kd, buf);
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t col = group * cog + s * width;
      const Epilogue<T> ep{b ? b + col : nullptr, activation, negative_slope};
      gemm_packed_serial(false, m, buf, kd, packed->at(group, s), y + row0 * ldy + col, ldy,
                         false, &ep);
      // The residual while the tile's rows are in cache.
      const int64_t wide = std::min(width, cog - s * width);
      for (int64_t i = 0; residual && i < m; ++i)
        add_residual(y + (row0 + i) * ldy + col, residual + (row0 + i) * cout + col, wide, relu);
    }
  }
  return true;
}

}  // namespace

template <class T>
void conv_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y,
                  Activation activation, T negative_slope) {
  forward<T>(p, x, w, b, y, p.out_channels, activation, negative_slope, nullptr, false);
}

template <class T>
void conv_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y, int64_t ldy,
                  Activation activation, T negative_slope) {
  forward<T>(p, x, w, b, y, ldy, activation, negative_slope, nullptr, false);
}

template <class T>
void conv_forward_residual(const ConvProblem& p, const T* x, const T* w, const T* b,
                           const T* residual, bool relu, T* y, int64_t ldy) {
  if (ldy <= 0) ldy = p.out_channels;
  if (!forward<T>(p, x, w, b, y, ldy, Activation::none, T(0), residual, relu))
    add_residual_pass(p, y, ldy, residual, relu);
}


template <class T>
void conv_backward_weight(const ConvProblem& p, const T* x, const T* dy, T* dw) {
  const int64_t rows = p.rows(), cout = p.out_channels, kd = p.patch_size();
  if (detail::is_depthwise(p)) return detail::depthwise_backward_weight(p, x, dy, dw);
  if (detail::has_few_channels(p)) return detail::few_channels_backward_weight(p, x, dy, dw);
  if (detail::wide_direct_backward_weight_applies<T>(p))
    return detail::wide_direct_backward_weight(p, x, dy, dw);
  std::fill_n(dw, kd * cout, T(0));
  if (rows == 0 || kd == 0 || cout == 0) return;
  if (p.is_pointwise()) {
    gemm(true, false, kd, cout, rows, x, p.in_channels, dy, cout, dw, cout, false);
    return;
  }
  // dw = P^T dy per group, P^T gathered straight into the GEMM's packed
  // slivers (detail::patch_columns_source): no patch buffer, no second
  // packing pass. The output positions (the product's k) fall into
  // `chunks` runs, their number a function of the problem alone; each run's
  // product goes to its own copy of dw, and the copies are added in order.
  // Threads split the runs, so each gathers its patches and packs its rows
  // of dy once, and two threads get equal work whatever dw's shape. With
  // one run (few positions, or dw too big to copy) each thread owns a band
  // of dw's rows (patch columns, whole register tiles) and runs the whole
  // product for it. Either way every dw element's sum has the same k blocks
  // whatever the number of threads.
  const int64_t cog = p.out_per_group(), mr = gemm_row_tile<T>();
  const int64_t slivers = (kd + mr - 1) / mr;
  const bool chunked = rows >= kWeightChunks * kWeightChunkRows &&
                       kWeightChunks * kd * cog * int64_t(sizeof(T)) <= kWeightChunkBytes;
  const int64_t chunks = chunked ? kWeightChunks : 1;
  const int nt = int(std::min<int64_t>(chunked ? chunks : slivers,
                                       threads_for(rows * kd * cout, 1 << 16)));
  T* const partial = chunked ? thread_buffer<T>(size_t(chunks * kd * cog)).data() : nullptr;
  const StopToken stop;
  for (int64_t group = 0; group < p.groups && !stop; ++group) {
    std::exception_ptr error;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      const int64_t parts = omp_get_num_threads(), part = omp_get_thread_num();
      try {
        if (chunked) {
          for (int64_t c = chunks * part / parts; c < chunks * (part + 1) / parts; ++c) {
            const int64_t r0 = rows * c / chunks, r1 = rows * (c + 1) / chunks;
            const detail::PatchColumns<T> patches{&p, x, group, 0, r0};
            gemm_source_serial(kd, cog, r1 - r0, detail::patch_columns_source(patches), false,
                               dy + r0 * cout + group * cog, cout, partial + c * kd * cog, cog,
                               false, stop);
          }
        } else {
          const int64_t col0 = std::min(kd, slivers * part / parts * mr);
          const int64_t col1 = std::min(kd, slivers * (part + 1) / parts * mr);
          const detail::PatchColumns<T> patches{&p, x, group, col0, 0};
          if (col0 < col1)
            gemm_source_serial(col1 - col0, cog, rows, detail::patch_columns_source(patches),
                               false, dy + group * cog, cout, dw + col0 * cout + group * cog, cout,
                               false, stop);
        }
      } catch (...) {
#pragma omp critical(cnnkit_conv_dw_error)
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
    for (int64_t c = 0; c < chunks && chunked; ++c)
      for (int64_t i = 0; i < kd; ++i) {
        T* row = dw + i * cout + group * cog;
        const T* add = partial + (c * kd + i) * cog;
        for (int64_t j = 0; j < cog; ++j) row[j] += add[j];
      }
  }
}

template <class T>
void conv_backward_input(const ConvProblem& p, const T* w, const T* dy, T* dx) {
  const Geometry& g = p.g;
  const int64_t cout = p.out_channels, kd = p.patch_size(), cog = p.out_per_group();
  if (use_winograd_backward_input(p)) return detail::winograd_backward_input(p, w, dy, dx);
  if (detail::is_depthwise(p)) return detail::depthwise_backward_input(p, w, dy, dx);
  if (detail::has_few_channels(p)) return detail::few_channels_backward_input(p, w, dy, dx);
  if (detail::wide_direct_backward_input_applies<T>(p))
    return detail::wide_direct_backward_input(p, w, dy, dx);
  // A 1x1 convolution's dx is the product alone, which writes every
  // element (zeros when cout is 0): no fill first, a pass over dx less.
  if (p.is_pointwise()) {
    gemm(false, true, p.rows(), p.in_channels, cout, dy, cout, w, cout, dx, p.in_channels, false);
    return;
  }
  std::fill_n(dx, p.batch * g.in_size() * p.in_channels, T(0));
  if (p.rows() == 0 || kd == 0 || cout == 0) return;
  // Tasks are bands of `band` output rows (outermost spatial dimension) of
  // one image. Bands two apart touch disjoint input rows, so the even bands
  // run in parallel, then the odd ones: no two threads add into the same dx
  // element at once, and each element receives its contributions in a fixed
  // order.
  const int64_t inner = g.out[1] * g.out[2], tile = tile_rows<T>(p);
  const int64_t reach = g.dilation[0] * (g.kernel[0] - 1) / g.stride[0];  // band >= reach
  const int64_t band = std::min(g.out[0], std::max({int64_t(1), reach, tile / inner}));
  const int64_t bands = (g.out[0] + band - 1) / band;
  const int nt = threads_for(p.rows() * kd * cog * p.groups, 1 << 16);
  const std::vector<PackedB<T>> packed = pack_groups(p, w, true);
  for (int phase = 0; phase < 2; ++phase) {
    const int64_t count = p.batch * ((bands - phase + 1) / 2);
    const StopToken stop;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
    for (int64_t task = 0; task < count; ++task) {
      if (stop) continue;
      const int64_t per_image = (bands - phase + 1) / 2;
      const int64_t n = task / per_image, b = 2 * (task % per_image) + phase;
      const int64_t first = (n * g.out[0] + b * band) * inner;
      const int64_t last = (n * g.out[0] + std::min(g.out[0], (b + 1) * band)) * inner;
      T* buf = thread_buffer<T>(size_t(tile * kd)).data();
      for (int64_t row0 = first; row0 < last && !stop; row0 += tile) {
        const int64_t m = std::min(tile, last - row0);
        for (int64_t group = 0; group < p.groups; ++group) {
          gemm_packed_serial(false, m, dy + row0 * cout + group * cog, cout,
                             packed[size_t(group)], buf, kd, false);
          scatter_add(p, buf, group, row0, m, dx);
        }
      }
    }
  }
}

namespace {

// db = the sums over the rows of dy (or of its mask, which band() writes as
// it goes), for the bias gradient and the fused mask-and-bias pass alike:
// band(r0, r1, c0, c1, sums) adds rows [r0, r1) of channels [c0, c1) into
// sums[c0, c1) in row order. A batch cut into runs (detail::batch_chunks,
// the few-channel weight gradient's runs too) is summed run by run, the
// threads splitting the runs, and the runs' sums added in order; otherwise
// each channel sums all rows in order, the threads splitting the channels
// (at least 16 each: a cache line of floats).
template <class T, class Band>
void sum_rows(const ConvProblem& p, T* db, Band&& band) {
  const int64_t rows = p.rows(), cout = p.out_channels, chunks = detail::batch_chunks(p);
  std::fill_n(db, cout, T(0));
  if (chunks == 1) {
    const int nt =
        int(std::min<int64_t>(threads_for(rows * cout, 1 << 16), std::max<int64_t>(1, cout / 16)));
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      const int64_t parts = omp_get_num_threads(), part = omp_get_thread_num();
      band(int64_t(0), rows, cout * part / parts, cout * (part + 1) / parts, db);
    }
    return;
  }
  const int64_t per_item = p.g.out_size();
  T* const partial = thread_buffer<T>(size_t(chunks * cout)).data();
  std::fill_n(partial, chunks * cout, T(0));
  const int nt = int(std::min<int64_t>(threads_for(rows * cout, 1 << 16), chunks));
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int64_t parts = omp_get_num_threads(), part = omp_get_thread_num();
    for (int64_t c = chunks * part / parts; c < chunks * (part + 1) / parts; ++c)
      band(p.batch * c / chunks * per_item, p.batch * (c + 1) / chunks * per_item, int64_t(0),
           cout, partial + c * cout);
  }
  for (int64_t c = 0; c < chunks; ++c)
    for (int64_t j = 0; j < cout; ++j) db[j] += partial[c * cout + j];
}

// Rows [r0, r1) of channels [c0, c1): the mask as activation_backward writes
// it (dy times the derivative), and its sums.
template <Activation A, class T>
void activation_bias_band(int64_t r0, int64_t r1, int64_t cout, int64_t c0, int64_t c1, T slope,
                          const T* y, const T* dy, T* masked, T* sums) {
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t at = r * cout;
    for (int64_t c = c0; c < c1; ++c) {
      const T m = dy[at + c] * activation_derivative(A, y[at + c], slope);
      masked[at + c] = m;
      sums[c] += m;
    }
  }
}

template <Activation A, class T>
void activation_bias(const ConvProblem& p, T slope, const T* y, const T* dy, T* masked, T* db) {
  const int64_t cout = p.out_channels;
  sum_rows(p, db, [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1, T* sums) {
    activation_bias_band<A>(r0, r1, cout, c0, c1, slope, y, dy, masked, sums);
  });
}

}  // namespace

template <class T>
void conv_backward_bias(const ConvProblem& p, const T* dy, T* db) {
  const int64_t cout = p.out_channels;
  sum_rows(p, db, [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1, T* sums) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = c0; c < c1; ++c) sums[c] += dy[r * cout + c];
  });
}

template <class T>
void conv_backward_activation_bias(const ConvProblem& p, Activation activation, T negative_slope,
                                   const T* y, const T* dy, T* masked, T* db) {
  with_activation(activation, [&](auto a) {
    activation_bias<decltype(a)::value>(p, negative_slope, y, dy, masked, db);
  });
}

template <class T>
bool conv_backward_weight_fused(const ConvProblem& p, Activation activation, T negative_slope,
                                const T* x, const T* y, const T* dy, T* dw, T* db) {
  // conv_backward_weight's choice of loops, of which only one can fuse.
  if (detail::is_depthwise(p) || !detail::has_few_channels(p)) return false;
  const bool masked = activation != Activation::none;
  detail::few_channels_backward_weight(
      p, x, dy, dw, detail::FusedWeightGradient<T>{masked ? y : nullptr, activation, negative_slope, db});
  return true;
}

template <class T>
bool conv_backward_weight_pooled(const ConvProblem& p, const PooledGradient<T>& pooled,
                                 const T* x, T* dw, T* db) {
  if (detail::is_depthwise(p) || !detail::has_few_channels(p)) return false;
  const Geometry& pg = *pooled.g;
  for (int d = 0; d < kMaxSpatialDims; ++d)
    if (pg.in[d] != p.g.out[d] || pg.stride[d] < pg.kernel[d]) return false;
  int64_t hits = 0;
  PooledGradient<T> counted = pooled;
  counted.hits = &hits;
  detail::few_channels_backward_weight(
      p, x, static_cast<const T*>(nullptr), dw,
      detail::FusedWeightGradient<T>{nullptr, Activation::none, T(0), db, &counted});
  // Each (window, channel) pair finds its index at most once (the windows'
  // positions are distinct): all of them did exactly when every index lies
  // in its own window.
  return hits == p.batch * pg.out_size() * p.out_channels;
}

#define CNNKIT_INSTANTIATE(T)                                                            \
  template void conv_forward<T>(const ConvProblem&, const T*, const T*, const T*, T*);  \
  template void conv_forward_residual<T>(const ConvProblem&, const T*, const T*, const T*,   \
                                         const T*, bool, T*, int64_t);                       \
  template void conv_forward<T>(const ConvProblem&, const T*, const T*, const T*, T*,   \
                                Activation, T);                                          \
  template void conv_forward<T>(const ConvProblem&, const T*, const T*, const T*, T*,   \
                                int64_t, Activation, T);                                 \
  template void conv_backward_input<T>(const ConvProblem&, const T*, const T*, T*);     \
  template void conv_backward_weight<T>(const ConvProblem&, const T*, const T*, T*);    \
  template void conv_backward_bias<T>(const ConvProblem&, const T*, T*);                  \
  template void conv_backward_activation_bias<T>(const ConvProblem&, Activation, T, const T*,  \
                                                 const T*, T*, T*);                     \
  template bool conv_backward_weight_fused<T>(const ConvProblem&, Activation, T, const T*,     \
                                              const T*, const T*, T*, T*);               \
  template bool conv_backward_weight_pooled<T>(const ConvProblem&, const PooledGradient<T>&,  \
                                               const T*, T*, T*);
CNNKIT_INSTANTIATE(float)
CNNKIT_INSTANTIATE(double)
#undef CNNKIT_INSTANTIATE

}  // namespace cnnkit

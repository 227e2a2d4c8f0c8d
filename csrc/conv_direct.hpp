// Direct convolution loops for the shapes where the im2col GEMM is a poor fit.
// Internal to the conv family (csrc/conv.cpp).
//
// Depthwise (groups == C_in, C_out = C_in * multiplier): each output channel
// reads one input channel, so the GEMM would multiply 1-column matrices; the
// loops run over the contiguous channel axis instead.
//
// Few input channels (one group, C_in <= kFewChannels, e.g. an image's first
// layer): a patch row is a handful of scattered values, so gathering P for
// the GEMM costs about as much as multiplying it. conv_few_impl.hpp instead
// copies each image (or a band of it) into a zero-padded slab and runs
// register-blocked tiles that read the slab in place.
#pragma once

#include <algorithm>

#include "conv.hpp"

namespace cnnkit::detail {

inline bool is_depthwise(const ConvProblem& p) {
  return p.groups > 1 && p.groups == p.in_channels;
}

constexpr int64_t kFewChannels = 4;

// The few-channel loops copy, per thread, at least one band of the input,
// padded: the window's span along dimension 0 times a padded plane of the
// others (of C_in for the forward pass and the weight gradient, of C_out for
// the input gradient). Padding or dilation far beyond the input, which any
// caller may pass, would make that allocation fail inside a parallel region;
// such geometries take the im2col path, whose buffers are tiles.
constexpr int64_t kMaxSlabElements = int64_t(1) << 25;

inline bool slab_fits(const ConvProblem& p) {
  const Geometry& g = p.g;
  int64_t span0 = 0, padded = 1, reached = 1;
  if (!dilated_extent(g.kernel[0], g.dilation[0], span0)) return false;
  for (int d = 1; d < kMaxSpatialDims; ++d) {
    int64_t e = 0, r = 0;
    if (!padded_extent(g.in[d], g.pad_before[d], g.pad_after[d], e) ||
        !dilated_extent(g.kernel[d], g.dilation[d], r) || !checked_mul(padded, e, padded) ||
        !checked_mul(reached, g.in[d] + r, reached))
      return false;
  }
  const int64_t channels = std::max(p.in_channels, p.out_channels + 16);
  int64_t floor = 0;
  return checked_mul(span0, std::max(padded, reached), floor) &&
         checked_mul(floor, channels, floor) && floor <= kMaxSlabElements;
}

// The gradient sums over the batch (the few-channel weight gradient, the
// bias gradient and the fused mask-and-bias pass) cut a batch of at least
// kBatchChunks items into that many runs of whole items, item
// [batch * c / kBatchChunks, batch * (c + 1) / kBatchChunks) in run c; each
// run is summed in order on its own and the runs' sums are added in order.
// Threads then split the runs: each reads its own part of the batch, equal
// work whatever the number of channels. The runs depend on the batch alone
// and are the same for all three sums, so the fused passes keep the bits
// of the separate ones.
constexpr int64_t kBatchChunks = 8;
inline int64_t batch_chunks(const ConvProblem& p) {
  return p.batch >= kBatchChunks ? kBatchChunks : 1;
}

inline bool has_few_channels(const ConvProblem& p) {
  return p.groups == 1 && p.in_channels <= kFewChannels && slab_fits(p);
}

// The few-channel forward loops with more input channels: on the AVX-512
// float path their 14 x 32 register tile reads the slab in place at close
// to the FMA peak, where the im2col GEMM with few output columns spends as
// long gathering the patches as multiplying them (LeNet's second layer,
// 14 x 14 x 16 -> 32 under 5 x 5: 1.05 ms against 1.42, 5 x 5 x 8 -> 32 on
// 28 x 28 2.05 against 2.99, 16 -> 64 2.11 against 2.38). Stride 1, up to
// kWideDirectChannels input channels and kWideDirectOutputs output channels;
// not 1 x 1 kernels, where the GEMM reads x in place (0.12 ms against 0.16).
constexpr int64_t kWideDirectChannels = 16, kWideDirectOutputs = 64;
template <class T>
bool wide_direct_forward_applies(const ConvProblem& p);
// And their input gradient, the same loops on dy with the weights flipped
// and transposed (dx is the "same" convolution of dy with them, at stride 1),
// where that measured faster than the GEMM and col2im: input channels in
// whole 16-lane vectors up to kWideDirectOutputs, at most 32 output
// channels (14 x 14 x 16 <- 32 under 5 x 5: 1.27 ms against 1.54; 32 <- 32
// 1.99 against 2.82; with 8 input channels, half-empty vectors, 5.4 against
// 3.5; with 64 output channels 2.67 against 2.46); padding no wider than
// the window's reach (so the flipped problem needs none negative).
template <class T>
bool wide_direct_backward_input_applies(const ConvProblem& p);
// And their weight gradient (csrc/conv_few_impl.hpp's backward_weight_wide):
// 5 to 16 input channels, up to kWideDirectOutputs outputs, stride 1, a
// whole padded image within kMaxSlabElements.
template <class T>
bool wide_direct_backward_weight_applies(const ConvProblem& p);
template <class T>
void wide_direct_backward_weight(const ConvProblem& p, const T* x, const T* dy, T* dw);
template <class T>
void wide_direct_backward_input(const ConvProblem& p, const T* w, const T* dy, T* dx);

// The dispatchers below pick the instruction-set path (csrc/cpu.hpp).
// relu: ReLU applied as each value is stored, with the bits of a separate
// apply_epilogue pass (csrc/gemm.hpp) but without that pass over y.
template <class T>
void few_channels_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y,
                          bool relu);
template <class T>
void few_channels_backward_input(const ConvProblem& p, const T* w, const T* dy, T* dx);
// What the few-channel weight gradient also does in its pass over dy: mask
// it by a fused activation's derivative read from the forward's output y
// (when y is not null) and sum the masked rows into db (when not null).
template <class T>
struct FusedWeightGradient {
  const T* y = nullptr;
  Activation activation = Activation::none;
  T negative_slope = T(0);
  T* db = nullptr;
  // Not null: dy is null and each band of it is made from the pooled gradient.
  const PooledGradient<T>* pooled = nullptr;
};
template <class T>
void few_channels_backward_weight(const ConvProblem& p, const T* x, const T* dy, T* dw,
                                  const FusedWeightGradient<T>& fused = {});

// activation(conv + b) as each value is stored, with the bits of a separate
// apply_epilogue pass; returns false (and y holds conv + b) for sigmoid, and
// for multiplier 1 with a non-finite weight (whose padding products come
// after the store): the caller then makes the pass.
template <class T>
bool depthwise_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y,
                       Activation activation, T negative_slope);

// The transposed patch matrix P^T of one group, rows [col0, ...) (P's
// columns: kernel offset major, channel minor) and columns [row0, ...), as
// the A operand of a GEMM whose k runs over P's rows (output positions over
// the batch), written
// straight into the GEMM's packed slivers (csrc/gemm.hpp's ASource): the
// weight gradient dw = P^T dy without a patch buffer or a second packing
// pass. `context` must outlive the product.
template <class T>
struct PatchColumns {
  const ConvProblem* p;
  const T* x;
  int64_t group, col0, row0;
};
template <class T>
ASource<T> patch_columns_source(const PatchColumns<T>& context);

template <class T>
void depthwise_backward_input(const ConvProblem& p, const T* w, const T* dy, T* dx);
template <class T>
void depthwise_backward_weight(const ConvProblem& p, const T* x, const T* dy, T* dw);

// One set per instruction-set path, defined by conv_direct_impl.hpp.
#define CNNKIT_DECLARE_DIRECT(ns)                                                             \
  namespace ns {                                                                             \
  template <class T>                                                                         \
  void few_channels_forward(const ConvProblem&, const T*, const T*, const T*, T*, bool);     \
  template <class T>                                                                         \
  void few_channels_backward_input(const ConvProblem&, const T*, const T*, T*);              \
  template <class T>                                                                         \
  void wide_direct_backward_input(const ConvProblem&, const T*, const T*, T*);               \
  template <class T>                                                                         \
  void wide_direct_backward_weight(const ConvProblem&, const T*, const T*, T*);              \
  template <class T>                                                                         \
  void few_channels_backward_weight(const ConvProblem&, const T*, const T*, T*,              \
                                    const FusedWeightGradient<T>&);                          \
  template <class T>                                                                         \
  bool depthwise_forward(const ConvProblem&, const T*, const T*, const T*, T*, Activation, T); \
  template <class T>                                                                         \
  void depthwise_backward_input(const ConvProblem&, const T*, const T*, T*);                 \
  template <class T>                                                                         \
  void depthwise_backward_weight(const ConvProblem&, const T*, const T*, T*);                \
  template <class T>                                                                         \
  void fill_patch_columns(const void*, int64_t, int64_t, int64_t, int64_t, int64_t, T*);     \
  }
CNNKIT_DECLARE_DIRECT(baseline)
CNNKIT_DECLARE_DIRECT(avx2)
CNNKIT_DECLARE_DIRECT(avx512)
#undef CNNKIT_DECLARE_DIRECT

// Explicit instantiations for T of the eight functions of the enclosing namespace.
#define CNNKIT_INSTANTIATE_DIRECT(T)                                                          \
  template bool depthwise_forward<T>(const ConvProblem&, const T*, const T*, const T*, T*,     \
                                     Activation, T);                                          \
  template void depthwise_backward_input<T>(const ConvProblem&, const T*, const T*, T*);       \
  template void depthwise_backward_weight<T>(const ConvProblem&, const T*, const T*, T*);      \
  template void few_channels_forward<T>(const ConvProblem&, const T*, const T*, const T*, T*,  \
                                        bool);                                               \
  template void few_channels_backward_input<T>(const ConvProblem&, const T*, const T*, T*);    \
  template void wide_direct_backward_input<T>(const ConvProblem&, const T*, const T*, T*);     \
  template void wide_direct_backward_weight<T>(const ConvProblem&, const T*, const T*, T*);    \
  template void few_channels_backward_weight<T>(const ConvProblem&, const T*, const T*, T*,   \
                                                const FusedWeightGradient<T>&);

}  // namespace cnnkit::detail

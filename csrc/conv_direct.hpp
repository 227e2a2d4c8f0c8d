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

#include "conv.hpp"

namespace cnnkit::detail {

inline bool is_depthwise(const ConvProblem& p) {
  return p.groups > 1 && p.groups == p.in_channels;
}

constexpr int64_t kFewChannels = 4;

inline bool has_few_channels(const ConvProblem& p) {
  return p.groups == 1 && p.in_channels <= kFewChannels;
}

// The dispatchers below pick the instruction-set path (csrc/cpu.hpp).
template <class T>
void few_channels_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y);
template <class T>
void few_channels_backward_input(const ConvProblem& p, const T* w, const T* dy, T* dx);
template <class T>
void few_channels_backward_weight(const ConvProblem& p, const T* x, const T* dy, T* dw);

template <class T>
void depthwise_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y);
template <class T>
void depthwise_backward_input(const ConvProblem& p, const T* w, const T* dy, T* dx);
template <class T>
void depthwise_backward_weight(const ConvProblem& p, const T* x, const T* dy, T* dw);

// One set per instruction-set path, defined by conv_direct_impl.hpp.
#define CNNKIT_DECLARE_DIRECT(ns)                                                             \
  namespace ns {                                                                             \
  template <class T>                                                                         \
  void few_channels_forward(const ConvProblem&, const T*, const T*, const T*, T*);           \
  template <class T>                                                                         \
  void few_channels_backward_input(const ConvProblem&, const T*, const T*, T*);              \
  template <class T>                                                                         \
  void few_channels_backward_weight(const ConvProblem&, const T*, const T*, T*);             \
  template <class T>                                                                         \
  void depthwise_forward(const ConvProblem&, const T*, const T*, const T*, T*);              \
  template <class T>                                                                         \
  void depthwise_backward_input(const ConvProblem&, const T*, const T*, T*);                 \
  template <class T>                                                                         \
  void depthwise_backward_weight(const ConvProblem&, const T*, const T*, T*);                \
  }
CNNKIT_DECLARE_DIRECT(baseline)
CNNKIT_DECLARE_DIRECT(avx2)
CNNKIT_DECLARE_DIRECT(avx512)
#undef CNNKIT_DECLARE_DIRECT

// Explicit instantiations for T of the six functions of the enclosing namespace.
#define CNNKIT_INSTANTIATE_DIRECT(T)                                                          \
  template void depthwise_forward<T>(const ConvProblem&, const T*, const T*, const T*, T*);    \
  template void depthwise_backward_input<T>(const ConvProblem&, const T*, const T*, T*);       \
  template void depthwise_backward_weight<T>(const ConvProblem&, const T*, const T*, T*);      \
  template void few_channels_forward<T>(const ConvProblem&, const T*, const T*, const T*, T*); \
  template void few_channels_backward_input<T>(const ConvProblem&, const T*, const T*, T*);    \
  template void few_channels_backward_weight<T>(const ConvProblem&, const T*, const T*, T*);

}  // namespace cnnkit::detail

// A network's first layer at inference: a large strided window over an
// image's 3 channels (ResNet's 7x7 stride 2, AlexNet's 11x11 stride 4),
// float on AVX-512.
//
// Why not the few-channel loops (csrc/conv_direct.hpp) that take every other
// convolution from so few channels: with AlexNet's window they reach about
// half the core's FMA rate. (ResNet's 7x7 stride 2 stays with them: there
// the two measured even, see kMinPatch in conv_stem.cpp.) Here each tile of output
// positions gathers its patches -- a kernel row of an image is one run of
// kernel-width x C_in values, so a patch row is 7 or 11 short copies -- and
// multiplies them by the weights with the few-row GEMM
// (csrc/gemm_few_rows.hpp), whose 147 x 64 or 363 x 64 weights stay in L1.
// (The generic im2col gather walks a 2-D window as runs of C_in values, 3
// floats each, and cost more than the product.) The bits are those of the
// im2col GEMM path; threads take whole tiles, so any thread count gives the
// same result.
#pragma once

#include "conv.hpp"

namespace cnnkit {

// Whether conv_stem_forward takes p: float on AVX-512, 2-D, one group, at
// most 4 input channels, a window of at least 5 x 5 and of at least 256
// values per patch row (kernel area x C_in), stride at least 2 along both
// dimensions, no dilation.
template <class T>
bool conv_stem_applies(const ConvProblem& p);

// y = activation(conv(x, w) + b) where conv_stem_applies(p); b may be null.
template <class T>
void conv_stem_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y,
                       Activation activation, T negative_slope);

}  // namespace cnnkit

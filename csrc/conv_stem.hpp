// A network's first layer at inference: a strided window over an image's
// few channels (ResNet's 7x7 stride 2, AlexNet's 11x11 stride 4, MobileNet
// v2's and SqueezeNet's 3x3 stride 2), float on AVX-512.
//
// Why not the few-channel loops (csrc/conv_direct.hpp) that take every other
// convolution from so few channels: they are written for 32-byte vectors on
// every path, 6 positions x 16 output channels per register tile, so on
// AVX-512 they reach about half the core's FMA rate (ResNet-18's conv1: 2.35
// ms, onnxruntime 1.85). Here the same loops -- a band of image rows copied
// zero-padded into a slab, each output one chain of fused multiply-adds over
// the kernel offsets in order -- run on 64-byte vectors, 6 positions x 64
// output channels per tile (24 accumulators, 4 weight vectors and a
// broadcast for 24 FMAs). The order of operations is the few-channel loops',
// so the bits are theirs (and those of the AVX2 path): taking this path or
// not changes no result. relu, relu6 and leaky relu are applied as the
// values are stored, with apply_epilogue's bits. (The last session's gather
// of patches into the few-row GEMM reached 120 GFLOP/s on AlexNet's window
// and lost at batch 8 on ResNet's; see conv_stem.cpp.) Threads take bands of
// output rows; each output's chain does not depend on the band, so any
// thread count gives the same bits.
//
// 3x3 windows came here from the few-channel loops, whose AVX-512 tile (14
// positions x 32 channels) lost most of its time elsewhere on these shapes:
// their slab holds 4 values per position for 3 channels, filled by a copy
// and a fill per pixel (half of MobileNet v2's features.0), relu6 was a pass
// over y, and 64 channels took two passes of 32. MobileNet v2's features.0
// (224 x 224 x 3 -> 32, stride 2, pad 1, relu6) went from 0.66 ms to 0.18 at
// one thread, SqueezeNet 1.1's (-> 64, no pad, relu) from 0.69 to 0.30 (CPU
// time, batch 1). The 3x3 window of 3 channels has a fully unrolled tile:
// its 27 offsets in loops of 9 ran 5% slower.
#pragma once

#include "conv.hpp"

namespace cnnkit {

// Whether conv_stem_forward takes p: float on the AVX-512 path, 2-D, one
// group, 1 to 4 input channels, a window of at least 3 x 3, stride at least
// 2 along both dimensions, no dilation, and a padded band of the input that
// the few-channel loops would also accept (detail::slab_fits).
template <class T>
bool conv_stem_applies(const ConvProblem& p);

// y = activation(conv(x, w) + b) where conv_stem_applies(p); b may be null.
template <class T>
void conv_stem_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y,
                       Activation activation, T negative_slope);

// A network's first layers in one call: y = max_pool(activation(conv(x, w) +
// b)) over the geometry `pool` (of the convolution's rank, its `in` the
// convolution's output, every window holding an element:
// first_empty_window_dim(*pool) < 0), or without `pool` (null) the
// convolution alone; x is (N, *in, C_in), or (N, C_in, *in) with
// channels_first (an imported ONNX network's input, which would otherwise be
// copied channels-last first). y holds each output position's C_out values
// ldy >= C_out elements apart. Any problem is accepted; the bits are always
// those of channels_last, conv_forward and max_pool called in turn.
//
// Where conv_stem_applies, one pass: each thread computes bands of the
// convolution's rows into a ring of rows that stays in L2, and pools each
// output row as soon as the rows under its windows are there (ResNet-18's
// 3x3 stride-2 max pool read conv1's 3.2 MB output from memory, after it
// had left the 2 MiB L2), and the band copy of channels-first rows
// interleaves their channels (the separate copy cost 0.10 ms inside
// ResNet-18 at batch 1). Elsewhere the three calls, through buffers.
template <class T>
void conv_stem(const ConvProblem& p, const T* x, bool channels_first, const T* w, const T* b,
               Activation activation, T negative_slope, const Geometry* pool, T* y, int64_t ldy);

}  // namespace cnnkit

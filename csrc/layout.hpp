// Channels-first to channels-last: y (batch, positions, channels) from x
// (batch, channels, positions), a contiguous copy.
//
// Why a kernel: an imported ONNX network (NCHW) converts its input once per
// call, and NumPy's copy of the transposed view walks the three channels of
// an image with a stride of a whole plane, on one thread: 0.15 ms at batch 1
// (224 x 224 x 3) and 1.2 ms at batch 8, serial time before the first
// convolution. Here each task copies a block of positions of one image,
// reading every channel's run of positions in order and writing the block's
// rows while they are in L1. A copy: the bits are the input's whatever the
// thread count.
#pragma once

#include <cstdint>

namespace cnnkit {

template <class T>
void channels_last(const T* x, int64_t batch, int64_t channels, int64_t positions, T* y);

}  // namespace cnnkit

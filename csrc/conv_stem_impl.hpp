// The per-instruction-set entry of the stem convolution (csrc/conv_stem.hpp).
#pragma once

#include <cstdint>

#include "gemm.hpp"

namespace cnnkit::stem::avx512 {

// The activation applied as each value is stored: none, relu, relu6 or
// leaky_relu (others are none here; the caller applies them in a pass).
struct Store {
  Activation activation = Activation::none;
  float negative_slope = 0.0f;
};

// One line of `count` output positions of a 2-D channels-last convolution
// whose input rows lie, zero-padded, in a slab: position i's window starts
// at xs + i * step and covers `kh` slab rows `row` floats apart, `run`
// consecutive floats in each (kernel width x C_in). w: the weights, one row
// of `ld` floats (a multiple of 16, zero past cout) per kernel offset, in
// (kernel row, kernel column, channel) order; bias: `ld` floats. y: the
// line's `cout` outputs per position, positions `ldy` floats apart. Each
// output is one chain of fused multiply-adds from zero over the offsets in
// order, then + bias, then the activation with the bits of apply_epilogue
// (csrc/gemm.hpp): the bits of the few-channel loops (conv_few_impl.hpp)
// followed by that pass.
void line(int64_t count, const float* xs, int64_t step, int64_t kh, int64_t row, int64_t run,
          const float* w, int64_t ld, const float* bias, float* y, int64_t cout, int64_t ldy,
          const Store& store);

}  // namespace cnnkit::stem::avx512

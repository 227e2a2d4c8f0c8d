// The forward convolution's GEMM operand -- the weights, packed for the
// micro-kernel (csrc/gemm.hpp's PackedB) -- kept across calls.
//
// Why: inference calls every layer with the same weights again and again.
// conv_forward's im2col and pointwise paths used to pack w on every call:
// read it, write it again in the kernel's panel order, then read that. At
// batch 1 the deep layers' products are small beside their weights (ResNet's
// 3x3 layers on 7x7x512 maps: 49 rows against 4608 x 512 weights, 9.4 MB),
// so the packing cost as much as the product. A cached operand is read once.
//
// Never stale: an entry is found by the weights' address and the problem's
// GEMM shape (patch size, output channels, groups, instruction-set path) and
// used only if the weights still hold, bit for bit, the values it was packed
// from (it keeps a copy). Weights changed in place -- an optimizer step --
// are repacked. Packing is deterministic, so a cached result has the bits of
// an uncached one. The comparison reads the weights and the copy, two
// sequential streams, which costs less than the strided pack and its writes.
// The least recently used entries go first when the total passes the budget:
// CNNKIT_CONV_CACHE_MB per dtype.
//
// Off by default (budget 0): it never measured a gain. Comparing the weights
// with the copy reads two streams, about what repacking them costs (VGG-16
// batch 1, one thread, idle: 196-217 ms on, 201-209 off; ResNet-18 and
// AlexNet equal within 2-5%), and ResNet-18 at batch 8 measured 181-199 ms
// on against 185 off (load ~7). Batch-1 float products on AVX-512 no longer
// come here anyway: csrc/gemm_few_rows.hpp streams the weights once in
// place. Kept behind the variable for the double and AVX2 paths, where a
// user who calls the same layer many times may measure otherwise.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "conv.hpp"

namespace cnnkit {

// w as conv_forward multiplies it: each group's block of the patch_size x
// out_channels matrix (its out_per_group columns) cut into slices of at most
// kSliceColumns columns, each packed by pack_b. The slices let threads share
// a product with few rows (batch 1, 7x7 maps: one tile of 49 rows) by
// columns, each reading only its part of the weights. GEMM's bits do not
// depend on where a column falls, so slicing does not change the result.
template <class T>
struct PackedConvWeights {
  static constexpr int64_t kSliceColumns = 128;  // a multiple of every path's register tile width
  int64_t slices = 0;                            // per group
  std::vector<PackedB<T>> mats;                  // [group * slices + slice]
  const PackedB<T>& at(int64_t group, int64_t slice) const {
    return mats[size_t(group * slices + slice)];
  }
};

template <class T>
PackedConvWeights<T> pack_conv_weights(const ConvProblem& p, const T* w);

// pack_conv_weights(p, w), from the cache when it holds a valid entry for w.
template <class T>
std::shared_ptr<const PackedConvWeights<T>> cached_conv_weights(const ConvProblem& p, const T* w);

// For tests and diagnostics: counts since start-up, entries and bytes now.
struct ConvWeightCacheStats {
  int64_t hits = 0, misses = 0, entries = 0, bytes = 0;
};
ConvWeightCacheStats conv_weight_cache_stats();
void clear_conv_weight_cache();

}  // namespace cnnkit

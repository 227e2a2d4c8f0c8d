// The fused activations on 16 floats, for the AVX-512 float kernels that
// finish their sums in the store (csrc/conv_stem_avx512.cpp,
// csrc/gemm_few_rows_avx512.cpp). Include only from translation units
// compiled with -mavx512f.
//
// The bits of apply_epilogue's scalar forms (csrc/gemm_impl.hpp's
// finish_tile), NaN and -0 kept: max(0, s) returns its second operand when s
// is NaN or a zero of either sign, as s < 0 ? 0 : s does, and min(6, m)
// returns m when m is NaN. hard_swish's clip may lose a NaN, but the product
// with s keeps it. Sigmoid and none return s.
#pragma once

#include <immintrin.h>

#include "gemm.hpp"

namespace cnnkit {

template <Activation A>
inline __m512 activate_avx512(__m512 s, __m512 slope) {
  const __m512 zero = _mm512_setzero_ps();
  if constexpr (A == Activation::relu) return _mm512_max_ps(zero, s);
  if constexpr (A == Activation::relu6)
    return _mm512_min_ps(_mm512_set1_ps(6.0f), _mm512_max_ps(zero, s));
  if constexpr (A == Activation::leaky_relu)  // s > 0 ? s : slope * s
    return _mm512_mask_mov_ps(_mm512_mul_ps(slope, s), _mm512_cmp_ps_mask(s, zero, _CMP_GT_OQ), s);
  if constexpr (A == Activation::hard_swish) {  // s * clip(s / 6 + 0.5, 0, 1), a true division
    const __m512 t = _mm512_add_ps(_mm512_div_ps(s, _mm512_set1_ps(6.0f)), _mm512_set1_ps(0.5f));
    return _mm512_mul_ps(s, _mm512_min_ps(_mm512_set1_ps(1.0f), _mm512_max_ps(zero, t)));
  }
  return s;
}

}  // namespace cnnkit

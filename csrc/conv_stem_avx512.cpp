// The stem convolution's AVX-512 kernel (csrc/conv_stem.hpp); this file is
// compiled with -mavx512f/bw/vl/dq and -mfma.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "activation_avx512.hpp"
#include "conv_stem_impl.hpp"

namespace cnnkit::stem::avx512 {

namespace {

// R consecutive positions x V vectors of 16 output channels: R x V
// accumulators, V weight vectors and a broadcast per kernel offset. `last`
// masks the lanes of the V-th vector past C_out.
template <int R, int V, int KH = 0, int RUN = 0>
void tile(const float* xs, int64_t step, int64_t kh, int64_t row, int64_t run, const float* w,
          int64_t ld, const float* bias, float* y, int64_t ldy, __mmask16 last,
          const Store& store) {
  __m512 acc[R][V];
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[i][v] = _mm512_setzero_ps();
  const auto offset = [&](const float* at, const float* wk) {
    __m512 wv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) wv[v] = _mm512_load_ps(wk + 16 * v);
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
      const __m512 a = _mm512_set1_ps(at[i * step]);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[i][v] = _mm512_fmadd_ps(a, wv[v], acc[i][v]);
    }
  };
  if constexpr (KH > 0) {
    // A small window unrolled whole: no loop exits to mispredict.
#pragma GCC unroll 8
    for (int r = 0; r < KH; ++r)
#pragma GCC unroll 16
      for (int j = 0; j < RUN; ++j) offset(xs + r * row + j, w + (r * RUN + j) * ld);
  } else {
    const float* wk = w;
    for (int64_t r = 0; r < kh; ++r)
      for (int64_t j = 0; j < run; ++j, wk += ld) offset(xs + r * row + j, wk);
  }
  // The activation chosen once, outside the stores (csrc/activation_avx512.hpp).
  const __m512 slope = _mm512_set1_ps(store.negative_slope);
  with_activation(store.activation, [&](auto a) {
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v)
        _mm512_mask_storeu_ps(
            y + i * ldy + 16 * v, v == V - 1 ? last : __mmask16(0xffff),
            activate_avx512<decltype(a)::value>(
                _mm512_add_ps(acc[i][v], _mm512_load_ps(bias + 16 * v)), slope));
  });
}

using Tile = void (*)(const float*, int64_t, int64_t, int64_t, int64_t, const float*, int64_t,
                      const float*, float*, int64_t, __mmask16, const Store&);

template <int V, int KH, int RUN, int... R>
Tile pick(int rows, std::integer_sequence<int, R...>) {
  Tile t = nullptr;
  ((t = rows == R + 1 ? &tile<R + 1, V, KH, RUN> : t), ...);
  return t;
}

// Positions per tile for V vectors: about 24 accumulators of the 32 zmm
// registers, with V weight vectors and a broadcast beside them.
template <int V>
constexpr int kRows = V == 4 ? 6 : V == 3 ? 8 : 12;

template <int V>
void columns(int64_t count, const float* xs, int64_t step, int64_t kh, int64_t row, int64_t run,
             const float* w, int64_t ld, const float* bias, float* y, int64_t ldy,
             __mmask16 last, const Store& store) {
  constexpr int R = kRows<V>;
  const bool small = kh == 3 && run == 9;
  // Tiles of nearly equal sizes (R or R - 1 positions...): a short last tile
  // reads a whole tile's weights for a few positions (AlexNet's 55 = 9 x 6 +
  // 1 made its last position cost about two).
  const int64_t tiles = (count + R - 1) / R;
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t i = t * count / tiles;
    const int rows = int((t + 1) * count / tiles - i);
    const Tile f = small ? pick<V, 3, 9>(rows, std::make_integer_sequence<int, R>())
                         : pick<V, 0, 0>(rows, std::make_integer_sequence<int, R>());
    f(xs + i * step, step, kh, row, run, w, ld, bias, y + i * ldy, ldy, last, store);
  }
}

}  // namespace

void line(int64_t count, const float* xs, int64_t step, int64_t kh, int64_t row, int64_t run,
          const float* w, int64_t ld, const float* bias, float* y, int64_t cout, int64_t ldy,
          const Store& store) {
  // Blocks of 64 output channels; the last block takes the vectors left.
  for (int64_t c0 = 0; c0 < cout; c0 += 64) {
    const int64_t left = std::min<int64_t>(64, cout - c0);
    const int vectors = int((left + 15) / 16);
    const int64_t tail = left - 16 * (vectors - 1);
    const __mmask16 last = __mmask16((uint32_t(1) << tail) - 1);
    auto* f = vectors == 4   ? &columns<4>
              : vectors == 3 ? &columns<3>
              : vectors == 2 ? &columns<2>
                             : &columns<1>;
    f(count, xs, step, kh, row, run, w + c0, ld, bias + c0, y + c0, ldy, last, store);
  }
}

}  // namespace cnnkit::stem::avx512

// The few-row GEMM's AVX-512 kernel (csrc/gemm_few_rows.hpp); this file is
// compiled with -mavx512f/bw/vl/dq and -mfma.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "activation_avx512.hpp"
#include "gemm_few_rows_impl.hpp"

namespace cnnkit::few_rows::avx512 {

namespace {

constexpr int64_t NR = 32;  // columns per panel: 2 zmm
constexpr int64_t MR = 12;  // rows per register tile: 24 accumulators

// The lines of B's next k block that one row tile prefetches into L2: a run
// of them in row order (row_lines lines of 16 floats per row of B, rows ldb
// floats apart), one every `every` steps of the tile's product, so that the
// next block's packing finds B there instead of waiting for memory.
struct Prefetch {
  const float* row = nullptr;
  int64_t line = 0, row_lines = 1, ldb = 0, left = 0, every = 1;
  void one() {
    _mm_prefetch(reinterpret_cast<const char*>(row + line * 16), _MM_HINT_T1);
    --left;
    if (++line == row_lines) line = 0, row += ldb;
  }
};

// csrc/gemm.hpp's epilogue on 16 elements of a row whose sums are complete:
// v + bias, then the activation (not sigmoid, which takes a pass after).
inline __m512 finish(__m512 v, const __m512* bias, Activation activation, __m512 slope) {
  if (bias) v = _mm512_add_ps(v, *bias);
  with_activation(activation, [&](auto a) { v = activate_avx512<decltype(a)::value>(v, slope); });
  return v;
}

// An MR x 32 tile of C over steps [0, kc) of A's rows (a, lda) and a packed
// panel of B (kc x 32, contiguous): 24 accumulators, 2 B vectors and a
// broadcast. `first` stores the block's sum, otherwise adds it to C
// (csrc/gemm_avx512.cpp's order); `tail` masks the columns past C's edge.
// `epilogue` (the last block only; its bias at this panel's first column)
// finishes the sums as they are stored: one pass over C less.
// With Pack, the panel is read from B in place (rows ldb apart, the columns
// past `tail` as zero) and written to `panel` as it goes, for the row tiles
// after this one: the packing costs no pass of its own (see columns()).
template <int R, bool Pack>
void tile(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* panel,
          float* c, int64_t ldc, __mmask32 tail, bool first, Prefetch& pf,
          const Epilogue<float>* epilogue) {
  const __mmask16 m0 = __mmask16(tail), m1 = __mmask16(tail >> 16);
  __m512 acc0[R], acc1[R];
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
  // Row i of A at byte offset (i % 3) * stride from row 3 * (i / 3): one
  // pointer per three rows and the stride make base + index * scale
  // addresses. With a pointer per row (a[i * lda + p]) the compiler ran out
  // of general registers and moved some through vector registers inside
  // the loop, taking FMA port slots (conv 3x3 at 169 rows: 145 -> 152
  // GFLOP/s with this).
  constexpr int G = (R + 2) / 3;
  const char* base[G];
  const int64_t stride = lda * int64_t(sizeof(float));
#pragma GCC unroll 4
  for (int g = 0; g < G; ++g) base[g] = reinterpret_cast<const char*>(a) + 3 * g * stride;
  // Four steps per iteration: the loop's bookkeeping (counter, prefetch
  // countdown, branches) can take FMA port slots; once per 96 FMAs instead
  // of 24 it cost AlexNet's 3x3 layers at batch 1 about 5% less (conv 384 ->
  // 256 at 13x13: 1.97 -> 1.81-1.86 ms in isolation).
#pragma GCC unroll 4
  for (int64_t p = 0, countdown = pf.every; p < kc; ++p) {
    if (--countdown == 0) {
      countdown = pf.every;
      if (pf.left > 0) pf.one();
    }
    __m512 b0, b1;
    if constexpr (Pack) {
      b0 = _mm512_maskz_loadu_ps(m0, b + p * ldb);
      b1 = _mm512_maskz_loadu_ps(m1, b + p * ldb + 16);
      _mm512_store_ps(panel + p * NR, b0);
      _mm512_store_ps(panel + p * NR + 16, b1);
    } else {
      b0 = _mm512_load_ps(b + p * NR), b1 = _mm512_load_ps(b + p * NR + 16);
    }
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
      const float* row = reinterpret_cast<const float*>(base[i / 3] + (i % 3) * stride);
      const __m512 ai = _mm512_set1_ps(row[p]);
      acc0[i] = _mm512_fmadd_ps(ai, b0, acc0[i]);
      acc1[i] = _mm512_fmadd_ps(ai, b1, acc1[i]);
    }
  }
  while (pf.left > 0) pf.one();  // more lines than steps (a few rows of A)
  __m512 bias0 = _mm512_setzero_ps(), bias1 = bias0;
  const bool has_bias = epilogue && epilogue->bias;
  if (has_bias) {
    bias0 = _mm512_maskz_loadu_ps(m0, epilogue->bias);
    bias1 = _mm512_maskz_loadu_ps(m1, epilogue->bias + 16);
  }
  const __m512 slope = _mm512_set1_ps(epilogue ? epilogue->negative_slope : 0.0f);
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i) {
    float* out = c + i * ldc;
    __m512 v0 = acc0[i], v1 = acc1[i];
    if (!first) {
      v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, out), v0);
      v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, out + 16), v1);
    }
    if (epilogue) {
      v0 = finish(v0, has_bias ? &bias0 : nullptr, epilogue->activation, slope);
      v1 = finish(v1, has_bias ? &bias1 : nullptr, epilogue->activation, slope);
    }
    _mm512_mask_storeu_ps(out, m0, v0);
    _mm512_mask_storeu_ps(out + 16, m1, v1);
  }
}

using Tile = void (*)(int64_t, const float*, int64_t, const float*, int64_t, float*, float*,
                      int64_t, __mmask32, bool, Prefetch&, const Epilogue<float>*);

template <bool Pack, int... R>
Tile pick(int rows, std::integer_sequence<int, R...>) {
  Tile t = nullptr;
  ((t = rows == R + 1 ? &tile<R + 1, Pack> : t), ...);
  return t;
}

// Rows [p0, p0 + kc) x columns [0, width) of B (row stride ldb) into 32-wide
// panels, zero past width: each row is read front to back, one sequential
// stream the hardware prefetchers follow, instead of the 128-byte pieces
// ldb apart that a panel-by-panel walk would read.
void pack(int64_t kc, const float* b, int64_t ldb, int64_t width, float* dst) {
  const int64_t panels = (width + NR - 1) / NR;
  for (int64_t p = 0; p < kc; ++p) {
    const float* row = b + p * ldb;
    float* out = dst + p * NR;
    for (int64_t s = 0; s < panels; ++s, out += kc * NR) {
      const int64_t left = width - s * NR;
      if (left >= NR) {
        _mm512_store_ps(out, _mm512_loadu_ps(row + s * NR));
        _mm512_store_ps(out + 16, _mm512_loadu_ps(row + s * NR + 16));
      } else {
        const __mmask32 m = __mmask32((uint64_t(1) << left) - 1);
        _mm512_store_ps(out, _mm512_maskz_loadu_ps(__mmask16(m), row + s * NR));
        _mm512_store_ps(out + 16, _mm512_maskz_loadu_ps(__mmask16(m >> 16), row + s * NR + 16));
      }
    }
  }
}

}  // namespace

void columns(int64_t m, int64_t k, int64_t kc_max, const FewRowsA<float>& a, const float* b,
             int64_t ldb, float* c, int64_t ldc, int64_t width, const Epilogue<float>* epilogue,
             const float* next_b, int64_t next_width) {
  thread_local std::vector<float, AlignedAllocator<float>> buffer, a_buffer;
  const int64_t panels = (width + NR - 1) / NR, row_tiles = (m + MR - 1) / MR;
  if (buffer.size() < size_t(kc_max * panels * NR)) buffer.resize(size_t(kc_max * panels * NR));
  float* packed = buffer.data();
  // A block from a.fill goes to rows a line longer than the block, so that
  // a tile's rows do not all fall on the same few L1 sets.
  const int64_t a_ld = kc_max + 16;
  if (a.fill && a_buffer.size() < size_t(m * a_ld)) a_buffer.resize(size_t(m * a_ld));
  // The next k block's lines of B are prefetched into L2 while the current
  // one is multiplied, spread evenly over the row tiles' steps. (Issued as a
  // burst of ~100 lines before each row tile instead, they held the fill
  // buffers the tile's own loads need and cost ResNet-18's layer4 15%.)
  const int64_t tiles = panels * row_tiles;
  for (int64_t p0 = 0; p0 < k; p0 += kc_max) {
    const int64_t kc = std::min(kc_max, k - p0);
    if (a.fill) a.fill(a.context, a.row0, m, p0, kc, a_buffer.data(), a_ld);
    const float* ab = a.fill ? a_buffer.data() : a.data + p0;
    const int64_t lda = a.fill ? a_ld : a.ld;
    // The first block, which nothing has brought into cache, is packed
    // whole, its rows read front to back as the prefetchers like. Later
    // blocks are in L2 (prefetched during the block before): the first row
    // tile of each panel reads the panel there in place and packs it as it
    // goes, into one panel-sized buffer that stays in L1 for the other row
    // tiles. A packing pass of its own read each block once more and wrote
    // it 32 KiB-strided; without it, interleaved in one process on the
    // same buffers (one thread, load ~7), the products of ResNet-18's
    // layer4 3x3 (49 x 4608 x 512) took 1.70-1.76 ms instead of 1.83-1.88
    // and AlexNet's conv4 (169 x 3456 x 256) 1.73-1.84 instead of 1.94-1.96.
    const bool in_place = p0 > 0;
    if (!in_place) pack(kc, b + p0 * ldb, ldb, width, packed);
    // What to prefetch: this B's next block, or after the last one the
    // first block of the columns this thread takes next.
    const bool last = p0 + kc >= k;
    const float* ahead = last ? next_b : b + (p0 + kc) * ldb;
    const int64_t row_lines = std::max<int64_t>(1, ((last ? next_width : width) + 15) / 16);
    const int64_t lines = ahead ? std::min(kc_max, last ? k : k - p0 - kc) * row_lines : 0;
    const int64_t per_tile = (lines + tiles - 1) / tiles;
    int64_t line = 0;
    for (int64_t s = 0; s < panels; ++s) {
      const int64_t left = std::min(NR, width - s * NR);
      const __mmask32 tail = __mmask32((uint64_t(1) << left) - 1);
      float* panel = in_place ? packed : packed + s * kc * NR;
      // Row tiles of near-equal height: 49 rows as 10+10+10+10+9, not 4 x 12
      // and a 1-row tile whose two FMA chains wait on their latency.
      for (int64_t t = 0, i = 0; t < row_tiles; ++t) {
        const int rows = int(m / row_tiles + (t < m % row_tiles ? 1 : 0));
        Prefetch pf;
        pf.left = std::max<int64_t>(0, std::min(per_tile, lines - line));
        pf.row = ahead ? ahead + line / row_lines * ldb : nullptr;
        pf.line = line % row_lines;
        pf.row_lines = row_lines, pf.ldb = ldb;
        pf.every = pf.left > 0 ? std::max<int64_t>(1, kc / pf.left) : kc + 1;
        line += pf.left;
        const bool packing = in_place && t == 0;
        const Tile run = packing ? pick<true>(rows, std::make_integer_sequence<int, MR>())
                                 : pick<false>(rows, std::make_integer_sequence<int, MR>());
        Epilogue<float> ep;
        if (last && epilogue) {
          ep = *epilogue;
          if (ep.bias) ep.bias += s * NR;
        }
        run(kc, ab + i * lda, lda, packing ? b + p0 * ldb + s * NR : panel, ldb, panel,
            c + i * ldc + s * NR, ldc, tail, p0 == 0, pf, last && epilogue ? &ep : nullptr);
        i += rows;
      }
    }
  }
}

}  // namespace cnnkit::few_rows::avx512

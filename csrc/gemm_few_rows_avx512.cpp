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
constexpr int64_t MR = 14;  // rows per register tile: 28 accumulators

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

// Steps of a block whose rows of A lie lda elements apart, row 0 at a.
struct Segment {
  const float* a = nullptr;
  int64_t lda = 0, steps = 0;
};

// csrc/gemm.hpp's epilogue on 16 elements of a row whose sums are complete:
// v + bias, then the activation (not sigmoid, which takes a pass after).
inline __m512 finish(__m512 v, const __m512* bias, Activation activation, __m512 slope) {
  if (bias) v = _mm512_add_ps(v, *bias);
  with_activation(activation, [&](auto a) { v = activate_avx512<decltype(a)::value>(v, slope); });
  return v;
}

// An R x 32 tile of C over the steps of one k block and a packed panel of
// B (kc x 32, contiguous): up to 28 accumulators, 2 B vectors and a
// broadcast. The block's steps come as segments (seg), each a run of steps
// whose rows of A lie at a constant stride: one segment for an A in memory,
// one per kernel tap for a convolution's patches read in place
// (FewRowsImplicit), which change their rows' addresses at each tap. The
// accumulators run on across segments, so the block's sum is the same FMA
// chain in increasing p either way. `first` stores the block's sum,
// otherwise adds it to C (csrc/gemm_avx512.cpp's order); `tail` masks the
// columns past C's edge. `epilogue` (the last block only; its bias at this
// panel's first column) finishes the sums as they are stored: one pass over
// C less. With Pack, the panel is read from B in place (rows ldb apart, the
// columns past `tail` as zero) and written to `panel` as it goes, for the
// row tiles after this one: the packing costs no pass of its own (see
// columns()). With Two, rows [R / 2, R) are a second output row of a
// convolution, `second` elements after the first's.
template <int R, bool Two, bool Pack>
void tile(const Segment* seg, int segments, int64_t second, const float* b, int64_t ldb,
          float* panel, float* c, int64_t ldc, __mmask32 tail, bool first, Prefetch& pf,
          const Epilogue<float>* epilogue) {
  const __mmask16 m0 = __mmask16(tail), m1 = __mmask16(tail >> 16);
  __m512 acc0[R], acc1[R];
#pragma GCC unroll 14
  for (int i = 0; i < R; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
  // Row i of A at byte offset (i % 3) * stride from row 3 * (i / 3) of its
  // output row: one pointer per three rows and the stride make base + index
  // * scale addresses. With a pointer per row (a[i * lda + p]) the compiler
  // ran out of general registers and moved some through vector registers
  // inside the loop, taking FMA port slots (conv 3x3 at 169 rows: 145 -> 152
  // GFLOP/s with this).
  constexpr int W = Two ? R / 2 : R, GW = (W + 2) / 3, G = Two ? 2 * GW : GW;
  int64_t p = 0, countdown = pf.every;  // p: the block's steps so far
  for (int s = 0; s < segments; ++s) {
    const char* base[G];
    const int64_t stride = seg[s].lda * int64_t(sizeof(float));
#pragma GCC unroll 10
    for (int g = 0; g < G; ++g)
      base[g] = reinterpret_cast<const char*>(seg[s].a + (g >= GW ? second : 0)) +
                3 * (g % GW) * stride;
    // Four steps per iteration: the loop's bookkeeping (counter, prefetch
    // countdown, branches) can take FMA port slots; once per 96 FMAs instead
    // of 24 it cost AlexNet's 3x3 layers at batch 1 about 5% less (conv 384
    // -> 256 at 13x13: 1.97 -> 1.81-1.86 ms in isolation).
    const float* bp = Pack ? b + p * ldb : b + p * NR;
    float* pp = panel + p * NR;
    const int64_t steps = seg[s].steps;
#pragma GCC unroll 4
    for (int64_t q = 0; q < steps; ++q) {
      if (--countdown == 0) {
        countdown = pf.every;
        if (pf.left > 0) pf.one();
      }
      __m512 b0, b1;
      if constexpr (Pack) {
        b0 = _mm512_maskz_loadu_ps(m0, bp + q * ldb);
        b1 = _mm512_maskz_loadu_ps(m1, bp + q * ldb + 16);
        _mm512_store_ps(pp + q * NR, b0);
        _mm512_store_ps(pp + q * NR + 16, b1);
      } else {
        b0 = _mm512_load_ps(bp + q * NR), b1 = _mm512_load_ps(bp + q * NR + 16);
      }
#pragma GCC unroll 14
      for (int i = 0; i < R; ++i) {
        const int j = i % W, g = (i / W) * GW + j / 3;
        const float* row = reinterpret_cast<const float*>(base[g] + (j % 3) * stride);
        const __m512 ai = _mm512_set1_ps(row[q]);
        acc0[i] = _mm512_fmadd_ps(ai, b0, acc0[i]);
        acc1[i] = _mm512_fmadd_ps(ai, b1, acc1[i]);
      }
    }
    p += steps;
  }
  while (pf.left > 0) pf.one();  // more lines than steps (a few rows of A)
  __m512 bias0 = _mm512_setzero_ps(), bias1 = bias0;
  const bool has_bias = epilogue && epilogue->bias;
  if (has_bias) {
    bias0 = _mm512_maskz_loadu_ps(m0, epilogue->bias);
    bias1 = _mm512_maskz_loadu_ps(m1, epilogue->bias + 16);
  }
  const __m512 slope = _mm512_set1_ps(epilogue ? epilogue->negative_slope : 0.0f);
#pragma GCC unroll 14
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

using Tile = void (*)(const Segment*, int, int64_t, const float*, int64_t, float*, float*, int64_t,
                      __mmask32, bool, Prefetch&, const Epilogue<float>*);

// tile<rows, two, Pack>; two only for an even number of rows.
template <bool Pack, int... R>
Tile pick(int rows, bool two, std::integer_sequence<int, R...>) {
  Tile t = nullptr;
  ((t = rows == R + 1 ? (two && (R + 1) % 2 == 0 ? &tile<(R + 1), ((R + 1) % 2 == 0), Pack>
                                                 : &tile<R + 1, false, Pack>)
                      : t),
   ...);
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

// A row tile: rows [i0, i0 + rows) of A and C; with `two`, two output rows
// of a convolution's patches read in place (FewRowsImplicit), rows / 2 each.
struct RowTile {
  int64_t i0 = 0;
  int rows = 0;
  bool two = false;
  int64_t origin = 0;  // implicit: x's element under row i0's window's first tap
};

// The most segments a block of at most gemm_few_rows.cpp's kBlockMax (256)
// steps has: one per kernel tap it touches, and FewRowsImplicit's channels
// are at least kMinImplicitChannels (16).
constexpr int kMaxSegments = 256 / kMinImplicitChannels + 2;

// The pixel of x under the first tap of output position `row`'s window.
int64_t conv_origin(const FewRowsImplicit<float>& v, int64_t row) {
  const int64_t line = row / v.out_w, n = line / v.out_h, oh = line % v.out_h;
  return ((n * v.in_h + oh * v.stride_h) * v.in_w + row % v.out_w * v.stride_w) * v.pixel_stride;
}

// Row tiles of at most MR rows: of near-equal height for an A in memory
// (169 rows as 13 x 13, not 12 x 14 and a 1-row tile whose two FMA chains
// wait on their latency); a convolution's patches read in place go by
// output rows, the only runs of positions whose windows lie a constant
// stride apart: each row cut alike into tiles of at most MR, or two whole
// rows of one image per tile where they fit (7 x 7 maps: 14 + 14 + 14 + 7).
void split_rows_into_tiles(int64_t m, int64_t row0, const FewRowsImplicit<float>* conv,
                           std::vector<RowTile>& out) {
  out.clear();
  if (!conv) {
    const int64_t count = (m + MR - 1) / MR;
    for (int64_t t = 0, i = 0; t < count; ++t) {
      const int rows = int(m / count + (t < m % count ? 1 : 0));
      out.push_back(RowTile{i, rows, false});
      i += rows;
    }
    return;
  }
  const int64_t ow = conv->out_w, oh = conv->out_h, lines = m / ow, first = row0 / ow;
  if (2 * ow <= MR) {
    for (int64_t line = 0; line < lines;) {
      // two lines of the same image, else one
      const bool two = line + 1 < lines && (first + line + 1) % oh != 0;
      out.push_back(RowTile{line * ow, int((two ? 2 : 1) * ow), two,
                            conv_origin(*conv, row0 + line * ow)});
      line += two ? 2 : 1;
    }
    return;
  }
  const int64_t count = (ow + MR - 1) / MR;
  for (int64_t line = 0; line < lines; ++line)
    for (int64_t t = 0, i = 0; t < count; ++t) {
      const int rows = int(ow / count + (t < ow % count ? 1 : 0));
      out.push_back(RowTile{line * ow + i, rows, false, conv_origin(*conv, row0 + line * ow + i)});
      i += rows;
    }
}

// The segments of block [p0, p0 + kc) of a convolution's patches, their a
// relative to a row tile's origin: one per kernel tap (kh, kw) the block
// touches, its channels [c0, c1); the next output position's are stride_w
// pixels further on. Returns their count.
int conv_segments(const FewRowsImplicit<float>& v, int64_t p0, int64_t kc, Segment* seg) {
  int count = 0;
  for (int64_t p = p0; p < p0 + kc;) {
    const int64_t tap = p / v.channels, c0 = p % v.channels;
    const int64_t steps = std::min(v.channels - c0, p0 + kc - p);
    const int64_t kh = tap / v.kernel_w, kw = tap % v.kernel_w;
    const int64_t at = (kh * v.dilation_h * v.in_w + kw * v.dilation_w) * v.pixel_stride + c0;
    seg[count++] = Segment{v.x + at, v.stride_w * v.pixel_stride, steps};
    p += steps;
  }
  return count;
}

}  // namespace

void columns(int64_t m, int64_t k, int64_t kc_max, const FewRowsA<float>& a, const float* b,
             int64_t ldb, float* c, int64_t ldc, int64_t width, const Epilogue<float>* epilogue,
             const float* next_b, int64_t next_width) {
  thread_local std::vector<float, AlignedAllocator<float>> buffer, a_buffer;
  thread_local std::vector<RowTile> row_tiles;
  const FewRowsImplicit<float>* conv = a.implicit;
  const int64_t panels = (width + NR - 1) / NR;
  if (buffer.size() < size_t(kc_max * panels * NR)) buffer.resize(size_t(kc_max * panels * NR));
  float* packed = buffer.data();
  // A block from a.fill goes to rows a line longer than the block, so that
  // a tile's rows do not all fall on the same few L1 sets.
  const int64_t a_ld = kc_max + 16;
  if (a.fill && a_buffer.size() < size_t(m * a_ld)) a_buffer.resize(size_t(m * a_ld));
  split_rows_into_tiles(m, a.row0, conv, row_tiles);
  // The next k block's lines of B are prefetched into L2 while the current
  // one is multiplied, spread evenly over the row tiles' steps. (Issued as a
  // burst of ~100 lines before each row tile instead, they held the fill
  // buffers the tile's own loads need and cost ResNet-18's layer4 15%.)
  const int64_t tiles = panels * int64_t(row_tiles.size());
  Segment seg[kMaxSegments], tap[kMaxSegments];
  for (int64_t p0 = 0; p0 < k; p0 += kc_max) {
    const int64_t kc = std::min(kc_max, k - p0);
    const int taps = conv ? conv_segments(*conv, p0, kc, tap) : 0;
    if (a.fill) a.fill(a.context, a.row0, m, p0, kc, a_buffer.data(), a_ld);
    const float* ab = a.fill ? a_buffer.data() : a.data ? a.data + p0 : nullptr;
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
      for (size_t t = 0; t < row_tiles.size(); ++t) {
        const RowTile& rt = row_tiles[t];
        Prefetch pf;
        pf.left = std::max<int64_t>(0, std::min(per_tile, lines - line));
        pf.row = ahead ? ahead + line / row_lines * ldb : nullptr;
        pf.line = line % row_lines;
        pf.row_lines = row_lines, pf.ldb = ldb;
        pf.every = pf.left > 0 ? std::max<int64_t>(1, kc / pf.left) : kc + 1;
        line += pf.left;
        int segments = 1;
        int64_t second = 0;
        if (conv) {
          segments = taps;
          for (int i = 0; i < taps; ++i) seg[i] = Segment{tap[i].a + rt.origin, tap[i].lda, tap[i].steps};
          second = conv->stride_h * conv->in_w * conv->pixel_stride;
        } else {
          seg[0] = Segment{ab + rt.i0 * lda, lda, kc};
        }
        const bool packing = in_place && t == 0;
        const Tile run =
            packing ? pick<true>(rt.rows, rt.two, std::make_integer_sequence<int, MR>())
                    : pick<false>(rt.rows, rt.two, std::make_integer_sequence<int, MR>());
        Epilogue<float> ep;
        if (last && epilogue) {
          ep = *epilogue;
          if (ep.bias) ep.bias += s * NR;
        }
        run(seg, segments, second, packing ? b + p0 * ldb + s * NR : panel, ldb, panel,
            c + rt.i0 * ldc + s * NR, ldc, tail, p0 == 0, pf, last && epilogue ? &ep : nullptr);
      }
    }
  }
}

}  // namespace cnnkit::few_rows::avx512

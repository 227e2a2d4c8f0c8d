// GEMM internals, compiled once per instruction set: gemm.cpp includes this
// with CNNKIT_ISA_NS=baseline, gemm_avx2.cpp with CNNKIT_ISA_NS=avx2 and
// -mavx2 -mfma. Each unit supplies its own MicroKernel<T> (register tile and
// block sizes); the packing and the cache-blocking loops below are shared
// source, compiled inside each unit's namespace so that no inline function is
// emitted twice under one name with different instruction sets (the linker
// would keep either copy, and an AVX2 copy would then run on the baseline
// path).
//
// The method is GotoBLAS/BLIS's. For each block of nc columns of C and each
// block of kc steps of k, a kc x nc panel of op(B) is packed into NR-wide
// column slivers; for each block of mc rows, an mc x kc block of op(A) is
// packed into MR-tall row slivers. The micro-kernel then multiplies one A
// sliver by one B sliver into an MR x NR tile of C held in registers. Block
// sizes are chosen so that a B sliver stays in L1, the A block in L2 and the
// B panel in L2/L3 while they are reused. When C is narrow (the common
// convolution shapes: n = C_out), a row-major A is instead read in place,
// since packing it would cost as much as a good part of the multiply (see
// compute()). Whichever way a sliver reaches the micro-kernel, the same
// products are summed in the same order, so the choice never changes bits.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "gemm.hpp"
#include "interrupt.hpp"

namespace cnnkit::gemm_impl {

// One product's operands; see cnnkit::gemm for the meaning of each field.
template <class T>
struct Operands {
  bool trans_a, trans_b;
  int64_t k;
  const T* a;
  int64_t lda;
  const T* b;
  int64_t ldb;
  T* c;
  int64_t ldc;
  bool accumulate;
  // Optional: op(B) already packed by pack_operand() (b and ldb unused),
  // with b_stride = its width rounded up to NR; the epilogue; and whether
  // only the tiles reaching the upper triangle of a square C are computed.
  const T* b_packed = nullptr;
  int64_t b_stride = 0;
  const Epilogue<T>* epilogue = nullptr;
  bool upper = false;
  // Optional: op(A) written into the packed layout by the caller (a and
  // lda unused, trans_a false).
  const ASource<T>* a_source = nullptr;
  // Taken on the thread that called gemm, so that every thread of its team
  // sees that call's stop request (csrc/interrupt.hpp).
  StopToken stop;
};

// The part of C one thread computes: rows [i0, i1) x columns [j0, j1).
struct Range {
  int64_t i0, i1, j0, j1;
};

// The register tile of a path's micro-kernel, which thread ranges align to.
struct TileShape {
  int64_t mr, nr, kc;
};

// The most rows of op(A) for which gemm() streams a row-major op(B) in place
// (compute_skinny) instead of packing it.
constexpr int64_t kSkinnyRows = 8;

// A 64-byte aligned scratch buffer of at least `bytes` owned by the calling
// thread and reused by its later calls (defined in gemm.cpp).
void* workspace(std::size_t bytes);

// What every micro-kernel (MicroKernel below) shares: the A sliver's two
// forms and the entry points that run the kernel's register tile on them.
// Kernel supplies
//   template <class A> static void tile(int64_t kc, const A& a, const T* b, T* c,
//                                       int64_t ldc, int64_t mr, int64_t nr, bool overwrite);
// which reads element (i, p) of the sliver as *a.at(i, p).
template <class Kernel, class T, int64_t MR>
struct SliverEntryPoints {
  // The sliver packed: element (i, p) at a[p * MR + i].
  struct PackedA {
    const T* a;
    const T* at(int64_t i, int64_t p) const { return a + p * MR + i; }
  };
  // The sliver read in place from a row-major A: element (i, p) at
  // row[i][p]. Rows past the tile's mr point at its first row, so that reads
  // stay inside A; their results are never stored.
  struct RowsA {
    const T* row[MR];
    RowsA(const T* a, int64_t lda, int64_t mr) {
      for (int64_t i = 0; i < MR; ++i) row[i] = a + (i < mr ? i : 0) * lda;
    }
    const T* at(int64_t i, int64_t p) const { return row[i] + p; }
  };

  static void run(int64_t kc, const T* a, const T* b, T* c, int64_t ldc, int64_t mr, int64_t nr,
                  bool overwrite) {
    Kernel::tile(kc, PackedA{a}, b, c, ldc, mr, nr, overwrite);
  }
  // A full tile's rows, evenly spaced: element (i, p) at byte offset
  // (i % 3) * stride from the start of row 3 * (i / 3). One pointer per
  // three rows and the stride make base + index * scale addresses, where
  // RowsA's MR row pointers (and the loop counter) outnumber the general
  // registers: the compiler kept some on the stack and moved others
  // through vector registers in the inner loop, taking FMA port slots.
  struct StridedRowsA {
    static constexpr int64_t kGroups = (MR + 2) / 3;
    const char* base[kGroups];
    int64_t stride;  // bytes
    StridedRowsA(const T* a, int64_t lda) : stride(lda * int64_t(sizeof(T))) {
      for (int64_t g = 0; g < kGroups; ++g)
        base[g] = reinterpret_cast<const char*>(a) + 3 * g * stride;
    }
    const T* at(int64_t i, int64_t p) const {
      return reinterpret_cast<const T*>(base[i / 3] + (i % 3) * stride) + p;
    }
  };

  static void run_rows(int64_t kc, const T* a, int64_t lda, const T* b, T* c, int64_t ldc,
                       int64_t mr, int64_t nr, bool overwrite) {
    if (mr == MR)
      Kernel::tile(kc, StridedRowsA(a, lda), b, c, ldc, mr, nr, overwrite);
    else
      Kernel::tile(kc, RowsA(a, lda, mr), b, c, ldc, mr, nr, overwrite);
  }
};

#define CNNKIT_DECLARE_GEMM(ns)                                   \
  namespace ns {                                                  \
  template <class T>                                              \
  TileShape tile_shape() noexcept;                                \
  /* C over r = op(A) op(B) over r, on the calling thread; k > 0 */ \
  template <class T>                                              \
  void compute(const Operands<T>& g, const Range& r);             \
  /* columns [j0, j1) (multiples of NR) of op(B), all k, into dst */ \
  template <class T>                                              \
  void pack_operand(const Operands<T>& g, int64_t n, int64_t j0, int64_t j1, T* dst); \
  /* C over rows [0, m) x columns [j0, j1), m <= kSkinnyRows, op(B) row-major; k > 0 */ \
  template <class T>                                              \
  void compute_skinny(const Operands<T>& g, int64_t m, int64_t j0, int64_t j1); \
  }
CNNKIT_DECLARE_GEMM(baseline)
CNNKIT_DECLARE_GEMM(avx2)
CNNKIT_DECLARE_GEMM(avx512)
#undef CNNKIT_DECLARE_GEMM

#ifdef CNNKIT_ISA_NS
namespace CNNKIT_ISA_NS {

// Specialised by the including unit for float and double, which then
// instantiates tile_shape<T> and compute<T> for both:
//   static constexpr int64_t MR, NR;      register tile
//   static constexpr int64_t MC, KC, NC;  cache blocks (MC % MR == 0, NC % NR == 0)
//   static constexpr bool kInPlaceA;      whether run_rows() exists
//   static void run(int64_t kc, const T* a, const T* b, T* c, int64_t ldc,
//                   int64_t mr, int64_t nr, bool overwrite);
//   static void run_rows(int64_t kc, const T* a, int64_t lda, const T* b, T* c,
//                        int64_t ldc, int64_t mr, int64_t nr, bool overwrite);
// run() multiplies a packed MR x kc sliver of A by a packed kc x NR sliver of
// B, summing over p in increasing order from zero, and stores the top-left
// mr x nr of the result into C (overwrite) or adds it to C. run_rows() does
// the same with the A sliver read in place from a row-major A (row i at
// a + i * lda, only rows < mr read), with the same arithmetic, so that the
// two give the same bits.
template <class T>
struct MicroKernel;

inline int64_t round_up(int64_t x, int64_t multiple) {
  return (x + multiple - 1) / multiple * multiple;
}

// The length of every k block but the last: blocks of near-equal length no
// longer than kc_max, a function of k alone (the reduction order depends on
// it, so it must not depend on m, n or the thread count).
inline int64_t k_block(int64_t k, int64_t kc_max) {
  const int64_t blocks = (k + kc_max - 1) / kc_max;
  return (k + blocks - 1) / blocks;
}

// The epilogue on an mr x nr tile of C whose first column is column j0 of
// the caller's C. Plain loops, vectorised by each unit's flags where the
// activation allows; the arithmetic is the same on every path.
template <class T>
void finish_tile(const Epilogue<T>& ep, T* c, int64_t ldc, int64_t mr, int64_t nr,
                        int64_t j0) {
  const T* bias = ep.bias ? ep.bias + j0 : nullptr;
  const T slope = ep.negative_slope;
  for (int64_t i = 0; i < mr; ++i) {
    T* __restrict row = c + i * ldc;
    if (bias)
      for (int64_t j = 0; j < nr; ++j) row[j] = row[j] + bias[j];
    switch (ep.activation) {
      case Activation::none:
        break;
      case Activation::relu:  // NaN stays NaN, as with np.maximum
        for (int64_t j = 0; j < nr; ++j) row[j] = row[j] < T(0) ? T(0) : row[j];
        break;
      case Activation::leaky_relu:
        for (int64_t j = 0; j < nr; ++j) row[j] = row[j] > T(0) ? row[j] : slope * row[j];
        break;
      case Activation::relu6:  // as np.minimum(np.maximum(x, 0), 6): NaN stays NaN
        for (int64_t j = 0; j < nr; ++j)
          row[j] = row[j] < T(0) ? T(0) : row[j] > T(6) ? T(6) : row[j];
        break;
      case Activation::hard_swish:  // as x * np.clip(x / 6 + 0.5, 0, 1): NaN stays NaN
        for (int64_t j = 0; j < nr; ++j) {
          const T v = row[j];
          T t = v / T(6) + T(0.5);
          t = t < T(0) ? T(0) : t > T(1) ? T(1) : t;
          row[j] = v * t;
        }
        break;
      case Activation::sigmoid:
        // exp of a non-positive number only: no overflow for large |x|.
        for (int64_t j = 0; j < nr; ++j) {
          const T v = row[j], e = std::exp(-std::fabs(v));
          row[j] = v >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
        }
        break;
    }
  }
}

// Writes the top-left mr x nr of an MR x NR tile held in `acc` (row-major)
// into C. Used for edge tiles; the additions are the same as the full-tile
// path's, so an element's bits do not depend on where it falls in C.
template <class T, int64_t MR, int64_t NR>
inline void store_partial(const T* acc, T* c, int64_t ldc, int64_t mr, int64_t nr,
                          bool overwrite) {
  for (int64_t i = 0; i < mr; ++i) {
    T* row = c + i * ldc;
    const T* src = acc + i * NR;
    if (overwrite) {
      for (int64_t j = 0; j < nr; ++j) row[j] = src[j];
    } else {
      for (int64_t j = 0; j < nr; ++j) row[j] = row[j] + src[j];
    }
  }
}

// Packs rows [i0, i0 + mc) x columns [p0, p0 + kc) of op(A) into MR-tall
// slivers: element (i0 + s + i, p0 + p) goes to dst[s * kc + p * MR + i] for
// each sliver start s (a multiple of MR). Rows past i0 + mc are zero, so the
// micro-kernel always runs on full slivers. A kernel may supply
//   static void pack_a_rows(const T* src, int64_t lda, int64_t kc, T* dst);
// for a full sliver of a row-major A (a transpose of MR rows), which the
// generic loop below does one element at a time: its MR streams are often a
// multiple of 4 KiB apart (lda = 1024 floats), share one L1 set and evict
// each other before the next element of each line is read.
template <class K, class = void>
struct HasPackARows : std::false_type {};
template <class K>
struct HasPackARows<K, std::void_t<decltype(&K::pack_a_rows)>> : std::true_type {};

template <class K, class T>
void pack_a(const Operands<T>& g, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
            T* __restrict dst) {
  constexpr int64_t MR = K::MR;
  for (int64_t s = 0; s < mc; s += MR, dst += MR * kc) {
    const int64_t rows = mc - s < MR ? mc - s : MR;
    if (g.trans_a && rows == MR) {
      // Column p of op(A) is row p of A: MR contiguous elements per step. One
      // fixed-size copy each: left to itself the compiler vectorised across p,
      // gathering element by element (it was a fifth of a convolution's dW when the
      // patches came through here).
      const T* src = g.a + p0 * g.lda + (i0 + s);
      for (int64_t p = 0; p < kc; ++p, src += g.lda) std::memcpy(dst + p * MR, src, sizeof(T) * MR);
    } else if (g.trans_a) {
      const T* src = g.a + p0 * g.lda + (i0 + s);
      for (int64_t p = 0; p < kc; ++p, src += g.lda)
        for (int64_t i = 0; i < MR; ++i) dst[p * MR + i] = i < rows ? src[i] : T(0);
    } else if (rows == MR) {
      // Rows of op(A) are rows of A: interleave MR contiguous streams.
      const T* src = g.a + (i0 + s) * g.lda + p0;
      if constexpr (HasPackARows<K>::value) {
        K::pack_a_rows(src, g.lda, kc, dst);
      } else {
        for (int64_t p = 0; p < kc; ++p)
          for (int64_t i = 0; i < MR; ++i) dst[p * MR + i] = src[i * g.lda + p];
      }
    } else {
      const T* src = g.a + (i0 + s) * g.lda + p0;
      for (int64_t p = 0; p < kc; ++p)
        for (int64_t i = 0; i < MR; ++i) dst[p * MR + i] = i < rows ? src[i * g.lda + p] : T(0);
    }
  }
}

// Packs rows [p0, p0 + kc) x columns [j0, j0 + nc) of op(B) into NR-wide
// slivers: element (p0 + p, j0 + s + j) goes to dst[s * kc + p * NR + j].
// Columns past j0 + nc are zero. A kernel may supply
//   static void pack_b_cols(const T* src, int64_t ldb, int64_t kc, T* dst);
// for a full sliver of a transposed B (NR rows of B, a transpose), for the
// same reason as pack_a_rows above.
template <class K, class = void>
struct HasPackBCols : std::false_type {};
template <class K>
struct HasPackBCols<K, std::void_t<decltype(&K::pack_b_cols)>> : std::true_type {};

template <class K, class T>
void pack_b(const Operands<T>& g, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
            T* __restrict dst) {
  constexpr int64_t NR = K::NR;
  const int64_t full = nc / NR * NR;
  if (!g.trans_b) {
    // Rows of op(B) are rows of B: read each row once, front to back, and
    // deal its NR-wide pieces out to the slivers. Sliver by sliver instead,
    // the rows are visited with a stride of ldb, which the hardware
    // prefetchers do not follow past 2 KiB: every line came from L3.
    for (int64_t p = 0; p < kc; ++p) {
      const T* src = g.b + (p0 + p) * g.ldb + j0;
      T* out = dst + p * NR;
      for (int64_t s = 0; s < full; s += NR) std::memcpy(out + s * kc, src + s, sizeof(T) * NR);
      if (full < nc)
        for (int64_t j = 0; j < NR; ++j)
          out[full * kc + j] = full + j < nc ? src[full + j] : T(0);
    }
    return;
  }
  for (int64_t s = 0; s < nc; s += NR, dst += NR * kc) {
    const int64_t cols = nc - s < NR ? nc - s : NR;
    // Column j of op(B) is row j of B: interleave NR contiguous streams.
    const T* src = g.b + (j0 + s) * g.ldb + p0;
    if constexpr (HasPackBCols<K>::value) {
      if (cols == NR) {
        K::pack_b_cols(src, g.ldb, kc, dst);
        continue;
      }
    }
    for (int64_t p = 0; p < kc; ++p)
      for (int64_t j = 0; j < NR; ++j) dst[p * NR + j] = j < cols ? src[j * g.ldb + p] : T(0);
  }
}

template <class T>
TileShape tile_shape() noexcept {
  return {MicroKernel<T>::MR, MicroKernel<T>::NR, MicroKernel<T>::KC};
}

// A kernel may set
//   static constexpr bool kAOuter = true;
// to run a packed A block sliver by sliver, each over every B sliver of the
// panel, instead of the other way round: the A sliver then stays in L1 and
// the B slivers stream from L2 (the panel must fit there: NC about 1 MiB
// of it), and the C tiles are visited along rows. Same products per tile.
// Such a kernel's NC is sized for that; it may set
//   static constexpr int64_t kDirectPanel;
// for the columns x k elements of B that the in-place A path (which keeps the
// B sliver outer) packs at once, NC * KC by default.
template <class K, class = void>
struct DirectPanel : std::integral_constant<int64_t, K::NC * K::KC> {};
template <class K>
struct DirectPanel<K, std::void_t<decltype(K::kDirectPanel)>>
    : std::integral_constant<int64_t, K::kDirectPanel> {};

template <class K, class = void>
struct AOuter : std::false_type {};
template <class K>
struct AOuter<K, std::void_t<decltype(K::kAOuter)>> : std::bool_constant<K::kAOuter> {};

// Rows [ic, ic + mc) x columns [jc, jc + nc) of C over k steps [pc, pc + kc),
// from op(B) packed at b_pack and op(A) packed at a_pack, or read in place
// when a_pack is null.
//
// With `a_along` (an AOuter kernel, op(A) row-major in g.a), a_pack holds only the
// block's first sliver, packed by the caller, and room for a second: each
// later sliver is packed into the other slot while the one before it runs,
// 16 steps of k after each of its tiles. The packing's loads from L3 then
// overlap the multiply-adds instead of stalling them in a pass of their
// own, and the A block takes two slivers of L2 instead of MC rows. Same
// packed values, same products. sgemm 1024^3 from Python, one thread,
// thread CPU time, medians of 30 calls in 4 processes alternated with
// main's (load 2.3): 12.26-12.57 ms against 12.76-13.10; 4096 x 1024 x 256
// 12.76-13.26 against 13.29-13.72. Prefetching the next sliver's lines into
// L2 or L1 as well gained nothing more.
template <class K, class T>
void multiply_block(const Operands<T>& g, int64_t ic, int64_t mc, int64_t jc, int64_t nc,
                    int64_t pc, int64_t kc, const T* b_pack, T* a_pack, bool a_along = false) {
  constexpr int64_t MR = K::MR, NR = K::NR;
  // The first k block overwrites C unless the caller accumulates; the last
  // one completes the sums, so the epilogue follows it.
  const bool overwrite = pc == 0 && !g.accumulate;
  const bool finish = g.epilogue && pc + kc == g.k;
  const auto sliver = [&](int64_t ir) {
    return a_pack + (a_along ? (ir / MR) % 2 * MR : ir) * kc;
  };
  const auto tile = [&](int64_t ir, int64_t jr) {
    const int64_t mr = mc - ir < MR ? mc - ir : MR;
    const int64_t nr = nc - jr < NR ? nc - jr : NR;
    // Upper triangle only: skip tiles whose every column is left of their
    // first row.
    if (g.upper && jc + jr + nr <= ic + ir) return;
    T* const c = g.c + (ic + ir) * g.ldc + (jc + jr);
    bool done = false;
    if constexpr (K::kInPlaceA) {
      if (!a_pack) {
        K::run_rows(kc, g.a + (ic + ir) * g.lda + pc, g.lda, b_pack + jr * kc, c, g.ldc, mr, nr,
                    overwrite);
        done = true;
      }
    }
    if (!done) K::run(kc, sliver(ir), b_pack + jr * kc, c, g.ldc, mr, nr, overwrite);
    if (finish) finish_tile(*g.epilogue, c, g.ldc, mr, nr, jc + jr);
  };
  if (AOuter<K>::value && a_pack) {
    const int64_t tiles = (nc + NR - 1) / NR, chunks = (kc + 15) / 16;
    for (int64_t ir = 0; ir < mc; ir += MR) {
      const int64_t next = ir + MR, rows = mc - next < MR ? mc - next : MR;
      for (int64_t jr = 0, t = 0; jr < nc; jr += NR, ++t) {
        tile(ir, jr);
        if (!a_along || next >= mc) continue;
        // Tile t's share of the next sliver's chunks of 16 steps.
        const int64_t p0 = t * chunks / tiles * 16, p_end = (t + 1) * chunks / tiles * 16;
        const int64_t p1 = p_end < kc ? p_end : kc;
        if (p0 < p1) pack_a<K>(g, ic + next, rows, pc + p0, p1 - p0, sliver(next) + p0 * MR);
      }
    }
    return;
  }
  // B sliver outer, A sliver inner: the B sliver stays in L1 while the A
  // block streams from L2. A read in place always goes this way, the order
  // its conv shapes were tuned in (the A sliver outer was not tried there).
  for (int64_t jr = 0; jr < nc; jr += NR)
    for (int64_t ir = 0; ir < mc; ir += MR) tile(ir, jr);
}

template <class T>
void compute(const Operands<T>& g, const Range& r) {
  using K = MicroKernel<T>;
  constexpr int64_t MR = K::MR, NR = K::NR;
  const int64_t kb = k_block(g.k, K::KC);
  const int64_t m = r.i1 - r.i0, n = r.j1 - r.j0;
  const int64_t n_round = round_up(n, NR);
  // With B packed in advance (r.j0 is then a multiple of NR), block pc's
  // sliver for column j starts at b_packed + pc * b_stride + j * kc.
  const bool packed = g.b_packed != nullptr;
  const auto packed_at = [&](int64_t pc, int64_t j, int64_t kc) {
    return g.b_packed + pc * g.b_stride + j * kc;
  };
  // A row-major A can be read in place. Worth it when C is narrow: packing
  // costs about one pass over A, which few B slivers would amortise (at
  // n = 64 it is a fifth of the multiply time). Not when A's rows are a
  // multiple of 4 KiB apart: they would share cache sets and evict each
  // other and the B sliver, which the packed copy avoids.
  const bool direct_a = K::kInPlaceA && !g.trans_a && !g.a_source && n <= 16 * NR &&
                        (g.lda * static_cast<int64_t>(sizeof(T))) % 4096 != 0;
  // C is then narrower than a B panel (16 NR <= NC), so the B buffer holds
  // `span` steps of k: several k blocks (all of them when B came packed).
  const int64_t span =
      packed ? g.k : direct_a ? (DirectPanel<K>::value / K::KC / n_round) * kb : kb;

  // Buffers sized for this range's largest blocks: B first, so that its
  // slivers keep the workspace's 64-byte alignment for the micro-kernel's
  // aligned loads; A after it, rounded to 64 bytes.
  const int64_t b_elems =
      packed ? 0
             : round_up((n < K::NC ? n_round : K::NC) * (span < g.k ? span : g.k),
                        64 / static_cast<int64_t>(sizeof(T)));
  const int64_t a_elems = direct_a ? 0 : (m < K::MC ? round_up(m, MR) : K::MC) * kb;
  T* const b_pack = b_elems + a_elems > 0
                        ? static_cast<T*>(workspace((b_elems + a_elems) * sizeof(T)))
                        : nullptr;
  T* const a_pack = direct_a ? nullptr : b_pack + b_elems;

  if (direct_a) {
    // Pack B over a span of k (k block pc at b_pack + (pc - p0) * n_round),
    // then finish each row block of C over the whole span before the next:
    // the C block stays in L2 across k blocks instead of C being swept from
    // L3 once per k block, which measured up to 20% slower at large k.
    for (int64_t p0 = 0; p0 < g.k; p0 += span) {
      const int64_t p1 = g.k - p0 < span ? g.k : p0 + span;
      if (!packed)
        for (int64_t pc = p0; pc < p1; pc += kb)
          pack_b<K>(g, pc, p1 - pc < kb ? p1 - pc : kb, r.j0, n, b_pack + (pc - p0) * n_round);
      for (int64_t ic = r.i0; ic < r.i1; ic += K::MC) {
        const int64_t mc = r.i1 - ic < K::MC ? r.i1 - ic : K::MC;
        if (g.upper && r.j1 <= ic) break;
        if (g.stop) return;
        for (int64_t pc = p0; pc < p1; pc += kb) {
          const int64_t kc = p1 - pc < kb ? p1 - pc : kb;
          multiply_block<K>(g, ic, mc, r.j0, n, pc, kc,
                            packed ? packed_at(pc, r.j0, kc) : b_pack + (pc - p0) * n_round,
                            a_pack);
        }
      }
    }
    return;
  }
  // Rows that fit one A block, of a transposed B: every B sliver meets
  // that block's slivers once, so nothing is gained by packing a whole B
  // panel first, which (as in the dense backward's g W^T: 64 rows, 8192
  // columns) spills to L3 and is read back. Each B sliver is packed instead
  // right before the A slivers run over it, while it is in L1; its NR rows
  // of B are contiguous stretches. (A row-major B is packed a panel at a
  // time, row by row, for the prefetchers: see pack_b.) Same packing, same
  // products.
  if (!packed && g.trans_b && m <= K::MC && !g.upper) {
    for (int64_t jc = r.j0; jc < r.j1; jc += K::NC) {
      const int64_t nc = r.j1 - jc < K::NC ? r.j1 - jc : K::NC;
      for (int64_t pc = 0; pc < g.k; pc += kb) {
        if (g.stop) return;
        const int64_t kc = g.k - pc < kb ? g.k - pc : kb;
        if (g.a_source)
          g.a_source->fill(g.a_source->context, r.i0, m, pc, kc, MR, a_pack);
        else
          pack_a<K>(g, r.i0, m, pc, kc, a_pack);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int64_t nr = nc - jr < NR ? nc - jr : NR;
          pack_b<K>(g, pc, kc, jc + jr, nr, b_pack);
          multiply_block<K>(g, r.i0, m, jc + jr, nr, pc, kc, b_pack, a_pack);
        }
      }
    }
    return;
  }
  for (int64_t jc = r.j0; jc < r.j1; jc += K::NC) {
    const int64_t nc = r.j1 - jc < K::NC ? r.j1 - jc : K::NC;
    for (int64_t pc = 0; pc < g.k; pc += kb) {
      if (g.stop) return;
      const int64_t kc = g.k - pc < kb ? g.k - pc : kb;
      const T* b_block = b_pack;
      if (packed)
        b_block = packed_at(pc, jc, kc);
      else
        pack_b<K>(g, pc, kc, jc, nc, b_pack);
      for (int64_t ic = r.i0; ic < r.i1; ic += K::MC) {
        const int64_t mc = r.i1 - ic < K::MC ? r.i1 - ic : K::MC;
        if (g.upper && jc + nc <= ic) break;  // this and later row blocks lie below
        if (g.stop) return;
        // A row-major op(A) is packed along (see multiply_block). A
        // transposed one keeps whole blocks: the block pass reads each of
        // its rows front to back, a sliver at a time reads 14-element pieces
        // that split lines with the next sliver (Gram's F^T F, packed along,
        // was 2-5% slower in three alternated rounds -- about this machine's
        // noise, but no gain). So does a caller's fill, whose gathers were
        // measured per block.
        const bool along = AOuter<K>::value && !g.a_source && !g.trans_a;
        if (g.a_source)
          g.a_source->fill(g.a_source->context, ic, mc, pc, kc, MR, a_pack);
        else
          pack_a<K>(g, ic, along && mc > MR ? MR : mc, pc, kc, a_pack);
        multiply_block<K>(g, ic, mc, jc, nc, pc, kc, b_block, a_pack, along);
      }
    }
  }
}

// A multiply-add rounded as the unit's micro-kernel rounds it: fused on the
// AVX2 and AVX-512 paths (their kernels use FMA instructions), a product and
// then a sum on the portable one (acc += a * b under -ffp-contract=off).
template <class T>
inline T kernel_madd(T a, T b, T acc) {
#ifdef __FMA__
  return std::fma(a, b, acc);
#else
  return acc + a * b;
#endif
}

// C over rows [0, m) x columns [j0, j1) for a few rows of op(A) (m <=
// kSkinnyRows) and a row-major op(B) read in place, without packing: a
// fully connected layer at batch 1 to 8, where packing B (the whole weight
// matrix, 151 MB for AlexNet's first one) on every call costs more than the
// product, which reads each element of B once for m multiply-adds. The
// reduction is the micro-kernel's, element by element: the same k blocks
// (k_block), each summed from zero in increasing p with the kernel's
// multiply-add, the block sums added to C in order, then the epilogue; so
// C(i, j) has the bits gemm() gives it through the packed path, whatever m,
// the column range or the thread count.
//
// The product is bound by streaming B from memory, so B is read the way the
// hardware prefetchers follow best: kRows rows at a time, each front to
// back over the whole column range (up to kWideBytes of running sums, which
// stay in L2), the columns taken kNarrow at a time so that those rows'
// pieces and their sums are in L1 while every row of A goes over them.
// (Reading each row in stretches sized to keep all sums in L1 instead --
// 2 KiB at m = 8 -- the prefetchers restarted at every stretch: AlexNet's
// 151 MB fc6 weights streamed at 7-9 GB/s at batch 8, against 16 GB/s at
// batch 1.)
template <class T>
void compute_skinny(const Operands<T>& g, int64_t m, int64_t j0, int64_t j1) {
  constexpr int64_t kLine = 64 / int64_t(sizeof(T));
  constexpr int64_t kWideBytes = int64_t(256) << 10;  // running sums, all rows
  constexpr int64_t kNarrow = 1024 / int64_t(sizeof(T));
  constexpr int64_t kRows = 8;  // B rows per pass over the sums
  const int64_t wide_max = kWideBytes / int64_t(sizeof(T)) / m / kLine * kLine;
  const int64_t kb = k_block(g.k, MicroKernel<T>::KC);
  T* const sums = static_cast<T*>(workspace(size_t(kWideBytes)));
  const auto a_at = [&](int64_t i, int64_t p) {
    return g.trans_a ? g.a[p * g.lda + i] : g.a[i * g.lda + p];
  };
  for (int64_t jw = j0; jw < j1; jw += wide_max) {
    const int64_t nw = j1 - jw < wide_max ? j1 - jw : wide_max;  // sums' row stride
    for (int64_t pc = 0; pc < g.k; pc += kb) {
      if (g.stop) return;
      const int64_t kc = g.k - pc < kb ? g.k - pc : kb;
      for (int64_t i = 0; i < m * nw; ++i) sums[i] = T(0);
      int64_t p = pc;
      for (; p + kRows <= pc + kc; p += kRows) {
        for (int64_t jc = 0; jc < nw; jc += kNarrow) {
          const int64_t nc = nw - jc < kNarrow ? nw - jc : kNarrow;
          const T* __restrict b[kRows];
          for (int64_t u = 0; u < kRows; ++u) b[u] = g.b + (p + u) * g.ldb + jw + jc;
          // Rows of A in fours, then pairs: each B element loaded serves
          // that many chains, each chain one element's sum in increasing p.
          int64_t i = 0;
          for (; i + 4 <= m; i += 4) {
            T x[4][kRows];
            for (int64_t r = 0; r < 4; ++r)
              for (int64_t u = 0; u < kRows; ++u) x[r][u] = a_at(i + r, p + u);
            T* __restrict s0 = sums + i * nw + jc;
            T* __restrict s1 = s0 + nw;
            T* __restrict s2 = s1 + nw;
            T* __restrict s3 = s2 + nw;
#pragma omp simd
            for (int64_t j = 0; j < nc; ++j) {
              T v0 = s0[j], v1 = s1[j], v2 = s2[j], v3 = s3[j];
#pragma GCC unroll 8
              for (int64_t u = 0; u < kRows; ++u) {
                const T bu = b[u][j];
                v0 = kernel_madd(x[0][u], bu, v0);
                v1 = kernel_madd(x[1][u], bu, v1);
                v2 = kernel_madd(x[2][u], bu, v2);
                v3 = kernel_madd(x[3][u], bu, v3);
              }
              s0[j] = v0;
              s1[j] = v1;
              s2[j] = v2;
              s3[j] = v3;
            }
          }
          for (; i + 2 <= m; i += 2) {
            T x[kRows], y[kRows];
            for (int64_t u = 0; u < kRows; ++u) x[u] = a_at(i, p + u), y[u] = a_at(i + 1, p + u);
            T* __restrict s = sums + i * nw + jc;
            T* __restrict t = s + nw;
#pragma omp simd
            for (int64_t j = 0; j < nc; ++j) {
              T v = s[j], w = t[j];
#pragma GCC unroll 8
              for (int64_t u = 0; u < kRows; ++u) {
                v = kernel_madd(x[u], b[u][j], v);
                w = kernel_madd(y[u], b[u][j], w);
              }
              s[j] = v;
              t[j] = w;
            }
          }
          for (; i < m; ++i) {
            T x[kRows];
            for (int64_t u = 0; u < kRows; ++u) x[u] = a_at(i, p + u);
            T* __restrict s = sums + i * nw + jc;
#pragma omp simd
            for (int64_t j = 0; j < nc; ++j) {
              T v = s[j];
#pragma GCC unroll 8
              for (int64_t u = 0; u < kRows; ++u) v = kernel_madd(x[u], b[u][j], v);
              s[j] = v;
            }
          }
        }
      }
      for (; p < pc + kc; ++p) {
        const T* __restrict b0 = g.b + p * g.ldb + jw;
        for (int64_t i = 0; i < m; ++i) {
          const T a0 = a_at(i, p);
          T* __restrict s = sums + i * nw;
#pragma omp simd
          for (int64_t j = 0; j < nw; ++j) s[j] = kernel_madd(a0, b0[j], s[j]);
        }
      }
      const bool overwrite = pc == 0 && !g.accumulate;
      for (int64_t i = 0; i < m; ++i)
        store_partial<T, 1, 1>(sums + i * nw, g.c + i * g.ldc + jw, g.ldc, 1, nw, overwrite);
    }
    if (g.epilogue) finish_tile(*g.epilogue, g.c + jw, g.ldc, m, nw, jw);
  }
}

template <class T>
void pack_operand(const Operands<T>& g, int64_t n, int64_t j0, int64_t j1, T* dst) {
  using K = MicroKernel<T>;
  const int64_t kb = k_block(g.k, K::KC), n_round = round_up(n, K::NR);
  const int64_t cols = (j1 < n ? j1 : n) - j0;
  if (cols <= 0) return;
  for (int64_t pc = 0; pc < g.k; pc += kb) {
    const int64_t kc = g.k - pc < kb ? g.k - pc : kb;
    pack_b<K>(g, pc, kc, j0, cols, dst + pc * n_round + j0 * kc);
  }
}

}  // namespace CNNKIT_ISA_NS
#endif  // CNNKIT_ISA_NS

}  // namespace cnnkit::gemm_impl

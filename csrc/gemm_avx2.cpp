// GEMM micro-kernels for CPUs with AVX2 and FMA (this file is compiled with
// -mavx2 -mfma), and the shared packing and blocking loops compiled for them.
#define CNNKIT_ISA_NS avx2
#include "gemm_impl.hpp"

#include <immintrin.h>

namespace cnnkit::gemm_impl::avx2 {

namespace {

// The few vector operations the kernel needs, per element type.
struct F32 {
  using T = float;
  using V = __m256;
  static constexpr int64_t W = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const T* p) { return _mm256_load_ps(p); }
  static V loadu(const T* p) { return _mm256_loadu_ps(p); }
  static V broadcast(const T* p) { return _mm256_broadcast_ss(p); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static void store(T* p, V v) { _mm256_store_ps(p, v); }
  static void storeu(T* p, V v) { _mm256_storeu_ps(p, v); }
};

struct F64 {
  using T = double;
  using V = __m256d;
  static constexpr int64_t W = 4;
  static V zero() { return _mm256_setzero_pd(); }
  static V load(const T* p) { return _mm256_load_pd(p); }
  static V loadu(const T* p) { return _mm256_loadu_pd(p); }
  static V broadcast(const T* p) { return _mm256_broadcast_sd(p); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static void store(T* p, V v) { _mm256_store_pd(p, v); }
  static void storeu(T* p, V v) { _mm256_storeu_pd(p, v); }
};

// A 6 x (2 vectors) tile, i.e. 6 x 16 floats or 6 x 8 doubles: 12
// accumulators, 2 B vectors and 1 A broadcast use 15 of the 16 ymm registers.
// 12 independent FMA chains cover the FMA latency (4-5 cycles) times its
// throughput (2 per cycle), and each step issues 8 loads for 12 FMAs, within
// the load ports' budget. A 4 x 3-vector tile needs fewer loads (7), but
// 2-vector widths divide the channel counts convolutions use (n = 32, 64,
// 128, ...), so full tiles are the rule there, and 4 x 3 measured no faster.
template <class Vec, int64_t MC_, int64_t KC_, int64_t NC_>
struct FmaKernel : SliverEntryPoints<FmaKernel<Vec, MC_, KC_, NC_>, typename Vec::T, 6> {
  using T = typename Vec::T;
  using V = typename Vec::V;
  static constexpr int64_t MR = 6, NR = 2 * Vec::W, MC = MC_, KC = KC_, NC = NC_;
  static constexpr bool kInPlaceA = true;

  template <class A>
  static void tile(int64_t kc, const A& a, const T* b, T* c, int64_t ldc, int64_t mr, int64_t nr,
                   bool overwrite) {
    // Start fetching the C tile now so that its lines have arrived when the
    // sums are added to it (+5-10% when C's rows alias in cache, as with
    // ldc = 1024). A row spans at most two lines.
    for (int64_t i = 0; i < mr; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR - 1), _MM_HINT_T0);
    }
    // Named accumulators rather than an array: GCC keeps an indexed array
    // of vectors in memory, storing it back on every step.
    V c00 = Vec::zero(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,
      c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int64_t p = 0; p < kc; ++p, b += NR) {
      const V b0 = Vec::load(b), b1 = Vec::load(b + Vec::W);
      V ai = Vec::broadcast(a.at(0, p));
      c00 = Vec::fmadd(ai, b0, c00);
      c01 = Vec::fmadd(ai, b1, c01);
      ai = Vec::broadcast(a.at(1, p));
      c10 = Vec::fmadd(ai, b0, c10);
      c11 = Vec::fmadd(ai, b1, c11);
      ai = Vec::broadcast(a.at(2, p));
      c20 = Vec::fmadd(ai, b0, c20);
      c21 = Vec::fmadd(ai, b1, c21);
      ai = Vec::broadcast(a.at(3, p));
      c30 = Vec::fmadd(ai, b0, c30);
      c31 = Vec::fmadd(ai, b1, c31);
      ai = Vec::broadcast(a.at(4, p));
      c40 = Vec::fmadd(ai, b0, c40);
      c41 = Vec::fmadd(ai, b1, c41);
      ai = Vec::broadcast(a.at(5, p));
      c50 = Vec::fmadd(ai, b0, c50);
      c51 = Vec::fmadd(ai, b1, c51);
    }
    const V acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    if (mr == MR && nr == NR) {
      for (int64_t i = 0; i < MR; ++i) {
        T* row = c + i * ldc;
        if (overwrite) {
          Vec::storeu(row, acc[i][0]);
          Vec::storeu(row + Vec::W, acc[i][1]);
        } else {
          Vec::storeu(row, Vec::add(Vec::loadu(row), acc[i][0]));
          Vec::storeu(row + Vec::W, Vec::add(Vec::loadu(row + Vec::W), acc[i][1]));
        }
      }
    } else {
      alignas(32) T sums[MR * NR];
      for (int64_t i = 0; i < MR; ++i) {
        Vec::store(sums + i * NR, acc[i][0]);
        Vec::store(sums + i * NR + Vec::W, acc[i][1]);
      }
      store_partial<T, MR, NR>(sums, c, ldc, mr, nr, overwrite);
    }
  }
};

}  // namespace

// A sliver of B (kc x NR) is 16 KiB at kc = 256 in both types and stays in
// the 32 KiB L1; the A block (MC x kc) fills part of the 1 MiB L2; the B
// panel (kc x NC) sits in L2/L3. On Zen 4, MC from 144 to 480 and KC from
// 192 to 384 measured within noise of each other.
template <>
struct MicroKernel<float> : FmaKernel<F32, 240, 256, 2048> {};
template <>
struct MicroKernel<double> : FmaKernel<F64, 120, 256, 1024> {};

template TileShape tile_shape<float>() noexcept;
template TileShape tile_shape<double>() noexcept;
template void compute<float>(const Operands<float>&, const Range&);
template void compute<double>(const Operands<double>&, const Range&);
template void pack_operand<float>(const Operands<float>&, int64_t, int64_t, int64_t, float*);
template void compute_skinny<float>(const Operands<float>&, int64_t, int64_t, int64_t);
template void pack_operand<double>(const Operands<double>&, int64_t, int64_t, int64_t, double*);
template void compute_skinny<double>(const Operands<double>&, int64_t, int64_t, int64_t);

}  // namespace cnnkit::gemm_impl::avx2

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

// An MR x (2 vectors) tile: with MR = 6 that is 12 accumulators, 2 B vectors
// and 1 A broadcast, 15 of the 16 ymm registers. 12 independent FMA chains
// cover the FMA latency (4 cycles) times its throughput (2 per cycle), and
// each step issues 8 loads for 12 FMAs, within the load ports' budget.
template <class Vec, int64_t MR_, int64_t MC_, int64_t KC_, int64_t NC_>
struct FmaKernel {
  using T = typename Vec::T;
  using V = typename Vec::V;
  static constexpr int64_t MR = MR_, NR = 2 * Vec::W, MC = MC_, KC = KC_, NC = NC_;

  static void run(int64_t kc, const T* a, const T* b, T* c, int64_t ldc, int64_t mr, int64_t nr,
                  bool overwrite) {
    V acc[MR][2];
    for (int64_t i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = Vec::zero();
    for (int64_t p = 0; p < kc; ++p, a += MR, b += NR) {
      const V b0 = Vec::load(b), b1 = Vec::load(b + Vec::W);
      for (int64_t i = 0; i < MR; ++i) {
        const V ai = Vec::broadcast(a + i);
        acc[i][0] = Vec::fmadd(ai, b0, acc[i][0]);
        acc[i][1] = Vec::fmadd(ai, b1, acc[i][1]);
      }
    }
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
      alignas(32) T tile[MR * NR];
      for (int64_t i = 0; i < MR; ++i) {
        Vec::store(tile + i * NR, acc[i][0]);
        Vec::store(tile + i * NR + Vec::W, acc[i][1]);
      }
      store_partial<T, MR, NR>(tile, c, ldc, mr, nr, overwrite);
    }
  }
};

}  // namespace

// A sliver of B (kc x NR) is 16 KiB at kc = 256 in both types and stays in
// the 32 KiB L1; the A block (MC x kc) fills part of the 1 MiB L2; the B
// panel (kc x NC) sits in L2/L3.
template <>
struct MicroKernel<float> : FmaKernel<F32, 6, 240, 256, 2048> {};
template <>
struct MicroKernel<double> : FmaKernel<F64, 6, 120, 256, 1024> {};

template TileShape tile_shape<float>() noexcept;
template TileShape tile_shape<double>() noexcept;
template void compute<float>(const Operands<float>&, const Range&);
template void compute<double>(const Operands<double>&, const Range&);

}  // namespace cnnkit::gemm_impl::avx2

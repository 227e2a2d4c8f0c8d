// Portable GEMM micro-kernel plus the dispatcher: argument checks, trivial
// shapes, the split of C over threads and the choice of instruction-set path.
#define CNNKIT_ISA_NS baseline
#include "gemm_impl.hpp"

#include <omp.h>

#include <algorithm>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>

#include "cpu.hpp"
#include "gemm.hpp"
#include "parallel.hpp"

namespace cnnkit {

namespace gemm_impl {

namespace baseline {

// A register tile in plain C++. The loops have compile-time trip counts, so
// the compiler keeps `acc` in vector registers and vectorises over j with
// whatever the target's baseline offers (SSE2 on x86-64, NEON on aarch64).
// 4 x 8 floats or 4 x 4 doubles are 8 SSE2 accumulators, which leaves room
// for the B row and the A broadcast in x86-64's 16 vector registers. The
// shape is fragile: GCC 12 gives up on 6 x 8 and 4 x 12 (5-10x slower).
template <class T, int64_t MR_, int64_t NR_, int64_t MC_, int64_t KC_, int64_t NC_>
struct PortableKernel {
  static constexpr int64_t MR = MR_, NR = NR_, MC = MC_, KC = KC_, NC = NC_;
  // Reading A in place through row pointers defeats GCC's vectoriser here.
  static constexpr bool kInPlaceA = false;

  static void run(int64_t kc, const T* __restrict a, const T* __restrict b, T* c, int64_t ldc,
                  int64_t mr, int64_t nr, bool overwrite) {
    T acc[MR * NR] = {};
    for (int64_t p = 0; p < kc; ++p, a += MR, b += NR)
      for (int64_t i = 0; i < MR; ++i)
        for (int64_t j = 0; j < NR; ++j) acc[i * NR + j] += a[i] * b[j];
    if (mr == MR && nr == NR)
      store_partial<T, MR, NR>(acc, c, ldc, MR, NR, overwrite);  // constant bounds: vectorised
    else
      store_partial<T, MR, NR>(acc, c, ldc, mr, nr, overwrite);
  }
};

template <>
struct MicroKernel<float> : PortableKernel<float, 4, 8, 128, 256, 2048> {};
template <>
struct MicroKernel<double> : PortableKernel<double, 4, 4, 64, 256, 1024> {};

template TileShape tile_shape<float>() noexcept;
template TileShape tile_shape<double>() noexcept;
template void compute<float>(const Operands<float>&, const Range&);
template void compute<double>(const Operands<double>&, const Range&);

}  // namespace baseline

void* workspace(std::size_t bytes) {
  constexpr std::align_val_t kAlign{64};
  struct Buffer {
    void* data = nullptr;
    std::size_t size = 0;
    ~Buffer() { ::operator delete(data, kAlign); }
  };
  // One buffer per thread, grown to the largest request and kept: a fresh
  // multi-MiB allocation per call would cost page faults on every call.
  thread_local Buffer buffer;
  if (buffer.size < bytes) {
    ::operator delete(buffer.data, kAlign);
    buffer.data = nullptr;
    buffer.size = 0;
    buffer.data = ::operator new(bytes, kAlign);
    buffer.size = bytes;
  }
  return buffer.data;
}

}  // namespace gemm_impl

namespace {

using gemm_impl::Operands;
using gemm_impl::Range;
using gemm_impl::TileShape;

// Below this many multiply-adds per thread, starting a team costs more than
// it saves.
constexpr int64_t kMinMacsPerThread = int64_t(1) << 18;

template <class T>
struct Path {
  TileShape tile;
  void (*compute)(const Operands<T>&, const Range&);
};

template <class T>
Path<T> active_path() noexcept {
#ifdef CNNKIT_HAVE_AVX512
  if (active_isa() == Isa::avx512)
    return {gemm_impl::avx512::tile_shape<T>(), &gemm_impl::avx512::compute<T>};
#endif
#ifdef CNNKIT_HAVE_AVX2
  if (active_isa() == Isa::avx2)
    return {gemm_impl::avx2::tile_shape<T>(), &gemm_impl::avx2::compute<T>};
#endif
  return {gemm_impl::baseline::tile_shape<T>(), &gemm_impl::baseline::compute<T>};
}

void check_args(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, int64_t lda,
                int64_t ldb, int64_t ldc) {
  if (m < 0 || n < 0 || k < 0)
    throw std::invalid_argument("gemm: sizes must be non-negative, got m=" + std::to_string(m) +
                                ", n=" + std::to_string(n) + ", k=" + std::to_string(k));
  const auto check_ld = [](const char* name, int64_t ld, int64_t rows, int64_t row_len) {
    if (rows > 0 && ld < row_len)
      throw std::invalid_argument(std::string("gemm: ") + name + " must be at least " +
                                  std::to_string(row_len) + ", got " + std::to_string(ld));
  };
  check_ld("lda", lda, trans_a ? k : m, trans_a ? m : k);
  check_ld("ldb", ldb, trans_b ? n : k, trans_b ? k : n);
  check_ld("ldc", ldc, m, n);
}

template <class T>
void run(bool parallel, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a,
         int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc, bool accumulate) {
  check_args(trans_a, trans_b, m, n, k, lda, ldb, ldc);
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate)
      for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, T(0));
    return;
  }
  const Operands<T> g{trans_a, trans_b, k, a, lda, b, ldb, c, ldc, accumulate};
  const Path<T> path = active_path<T>();

  // Each thread computes a band of C on its own, packing its own copy of
  // the operand it shares with the others: split the rows when B is the
  // smaller operand (each thread packs all of B), the columns otherwise.
  // Bands are whole register tiles, so only the last one has edge tiles.
  const int64_t tiles_m = (m + path.tile.mr - 1) / path.tile.mr;
  const int64_t tiles_n = (n + path.tile.nr - 1) / path.tile.nr;
  const double macs = double(m) * double(n) * double(k);
  int nt = parallel ? threads_for(macs < 1e18 ? static_cast<int64_t>(macs) : int64_t(1e18),
                                  kMinMacsPerThread)
                    : 1;
  bool split_rows = n <= m;
  if (split_rows && tiles_m < nt && tiles_n > tiles_m) split_rows = false;
  if (!split_rows && tiles_n < nt && tiles_m > tiles_n) split_rows = true;
  nt = static_cast<int>(std::min<int64_t>(nt, split_rows ? tiles_m : tiles_n));
  if (nt <= 1) {
    path.compute(g, {0, m, 0, n});
    return;
  }

  // An exception must not leave the parallel region: keep the first and
  // rethrow it on the calling thread.
  std::exception_ptr error;
#pragma omp parallel num_threads(nt)
  {
    // The team may be smaller than asked (e.g. nested inside another
    // region): split by the team actually running.
    const int64_t t = omp_get_thread_num(), team = omp_get_num_threads();
    const int64_t tiles = split_rows ? tiles_m : tiles_n;
    const int64_t step = split_rows ? path.tile.mr : path.tile.nr;
    const int64_t extent = split_rows ? m : n;
    const int64_t lo = tiles * t / team * step;
    const int64_t hi = std::min(extent, tiles * (t + 1) / team * step);
    if (lo < hi) {
      try {
        path.compute(g, split_rows ? Range{lo, hi, 0, n} : Range{0, m, lo, hi});
      } catch (...) {
#pragma omp critical(cnnkit_gemm_error)
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
          const T* b, int64_t ldb, T* c, int64_t ldc, bool accumulate) {
  run(true, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
}

template <class T>
void gemm_serial(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a,
                 int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc, bool accumulate) {
  run(false, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t,
                          const float*, int64_t, float*, int64_t, bool);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, const double*, int64_t,
                           const double*, int64_t, double*, int64_t, bool);
template void gemm_serial<float>(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t,
                                 const float*, int64_t, float*, int64_t, bool);
template void gemm_serial<double>(bool, bool, int64_t, int64_t, int64_t, const double*, int64_t,
                                  const double*, int64_t, double*, int64_t, bool);

}  // namespace cnnkit

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
#include <type_traits>

#include "cpu.hpp"
#include "gemm.hpp"
#include "gemm_small_k.hpp"
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
template void pack_operand<float>(const Operands<float>&, int64_t, int64_t, int64_t, float*);
template void compute_skinny<float>(const Operands<float>&, int64_t, int64_t, int64_t);
template void pack_operand<double>(const Operands<double>&, int64_t, int64_t, int64_t, double*);
template void compute_skinny<double>(const Operands<double>&, int64_t, int64_t, int64_t);

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
  void (*pack)(const Operands<T>&, int64_t, int64_t, int64_t, T*);
  void (*skinny)(const Operands<T>&, int64_t, int64_t, int64_t);
};

template <class T>
Path<T> path_for(Isa isa) noexcept {
#ifdef CNNKIT_HAVE_AVX512
  if (isa == Isa::avx512)
    return {gemm_impl::avx512::tile_shape<T>(), &gemm_impl::avx512::compute<T>,
            &gemm_impl::avx512::pack_operand<T>, &gemm_impl::avx512::compute_skinny<T>};
#endif
#ifdef CNNKIT_HAVE_AVX2
  if (isa == Isa::avx2)
    return {gemm_impl::avx2::tile_shape<T>(), &gemm_impl::avx2::compute<T>,
            &gemm_impl::avx2::pack_operand<T>, &gemm_impl::avx2::compute_skinny<T>};
#endif
  (void)isa;
  return {gemm_impl::baseline::tile_shape<T>(), &gemm_impl::baseline::compute<T>,
          &gemm_impl::baseline::pack_operand<T>, &gemm_impl::baseline::compute_skinny<T>};
}

void check_sizes(int64_t m, int64_t n, int64_t k) {
  if (m < 0 || n < 0 || k < 0)
    throw std::invalid_argument("gemm: sizes must be non-negative, got m=" + std::to_string(m) +
                                ", n=" + std::to_string(n) + ", k=" + std::to_string(k));
}

void check_ld(const char* name, int64_t ld, int64_t rows, int64_t row_len) {
  if (rows > 0 && ld < row_len)
    throw std::invalid_argument(std::string("gemm: ") + name + " must be at least " +
                                std::to_string(row_len) + ", got " + std::to_string(ld));
}

void check_args(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, int64_t lda,
                int64_t ldb, int64_t ldc) {
  check_sizes(m, n, k);
  check_ld("lda", lda, trans_a ? k : m, trans_a ? m : k);
  check_ld("ldb", ldb, trans_b ? n : k, trans_b ? k : n);
  check_ld("ldc", ldc, m, n);
}

// Runs body(lo, hi) for t in [0, team) on a team of up to nt threads; the
// team may be smaller than asked (e.g. nested inside another region), so
// bounds(t, team) splits by the team actually running. An exception must not
// leave the parallel region: the first is rethrown on the calling thread.
template <class Body>
void on_team(int nt, Body&& body) {
  std::exception_ptr error;
#pragma omp parallel num_threads(nt)
  {
    try {
      body(int64_t(omp_get_thread_num()), int64_t(omp_get_num_threads()));
    } catch (...) {
#pragma omp critical(cnnkit_gemm_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

// C (m x n) for k > 0 on `path`, split over up to num_threads() threads
// when `parallel`.
template <class T>
void multiply(bool parallel, const Path<T>& path, const Operands<T>& g, int64_t m, int64_t n) {
  // Each thread computes a band of C on its own, packing its own copy of
  // the operand it shares with the others: split the rows when B is the
  // smaller operand (each thread packs all of B) or comes packed, the
  // columns otherwise. Bands are whole register tiles, so only the last one
  // has edge tiles.
  const int64_t tiles_m = (m + path.tile.mr - 1) / path.tile.mr;
  const int64_t tiles_n = (n + path.tile.nr - 1) / path.tile.nr;
  const double macs = double(m) * double(n) * double(g.k) / (g.upper ? 2 : 1);
  int nt = parallel ? threads_for(macs < 1e18 ? static_cast<int64_t>(macs) : int64_t(1e18),
                                  kMinMacsPerThread)
                    : 1;
  bool split_rows = n <= m || g.b_packed || g.upper;
  if (!g.upper) {
    if (split_rows && tiles_m < nt && tiles_n > tiles_m) split_rows = false;
    if (!split_rows && tiles_n < nt && tiles_m > tiles_n) split_rows = true;
  }
  nt = static_cast<int>(std::min<int64_t>(nt, split_rows ? tiles_m : tiles_n));
  if (nt <= 1) {
    path.compute(g, {0, m, 0, n});
    return;
  }
  const int64_t tiles = split_rows ? tiles_m : tiles_n;
  const int64_t step = split_rows ? path.tile.mr : path.tile.nr;
  const int64_t extent = split_rows ? m : n;
  on_team(nt, [&](int64_t t, int64_t team) {
    int64_t lo = tiles * t / team * step, hi = std::min(extent, tiles * (t + 1) / team * step);
    if (g.upper) {
      // Row tile i holds about n - i * mr columns of the triangle: cut where
      // the running sum of that work passes t / team of the total.
      const auto cut = [&](int64_t part) {
        double total = 0;
        for (int64_t i = 0; i < tiles; ++i) total += double(n - i * step);
        double sum = 0;
        int64_t i = 0;
        while (i < tiles && sum < total * double(part) / double(team)) sum += double(n - step * i++);
        return std::min(extent, i * step);
      };
      lo = cut(t);
      hi = cut(t + 1);
    }
    if (lo < hi) path.compute(g, split_rows ? Range{lo, hi, 0, n} : Range{0, m, lo, hi});
  });
}

// C (m x n, m <= kSkinnyRows) for k > 0 with a row-major op(B) read in
// place (compute_skinny), the columns split over up to num_threads()
// threads when `parallel`; in whole cache lines, so no two threads write
// one line of C.
template <class T>
void multiply_skinny(bool parallel, const Path<T>& path, const Operands<T>& g, int64_t m,
                     int64_t n) {
  constexpr int64_t kLine = 64 / int64_t(sizeof(T));
  const int64_t lines = (n + kLine - 1) / kLine;
  const double macs = double(m) * double(n) * double(g.k);
  // A quarter of the packed paths' threshold: with a row or few, each
  // multiply-add reads its own element of B from memory, so 2^16 of them
  // (256 KiB of float weights) already take longer than waking a team.
  // ResNet-18's fc at batch 1 (1 x 512 x 1000, 2 MB) stayed on one thread.
  int nt = parallel ? threads_for(macs < 1e18 ? static_cast<int64_t>(macs) : int64_t(1e18),
                                  kMinMacsPerThread / 4)
                    : 1;
  nt = static_cast<int>(std::min<int64_t>(nt, lines));
  if (nt <= 1) return path.skinny(g, m, 0, n);
  on_team(nt, [&](int64_t t, int64_t team) {
    const int64_t lo = lines * t / team * kLine, hi = std::min(n, lines * (t + 1) / team * kLine);
    if (lo < hi) path.skinny(g, m, lo, hi);
  });
}

template <class T>
void finish_all(const Epilogue<T>* ep, T* c, int64_t ldc, int64_t m, int64_t n) {
  if (ep) gemm_impl::baseline::finish_tile(*ep, c, ldc, m, n, 0);
}

template <class T>
void run(bool parallel, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a,
         int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc, bool accumulate,
         const Epilogue<T>* epilogue = nullptr, bool upper = false) {
  check_args(trans_a, trans_b, m, n, k, lda, ldb, ldc);
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate)
      for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, T(0));
    finish_all(epilogue, c, ldc, m, n);
    return;
  }
  // Many rows against a short, narrow op(B) (matmul and Dense on
  // MobileNet-sized operands, a 1x1 convolution's input gradient): A read
  // in place with no packing, the same bits (csrc/gemm_small_k.hpp).
  if constexpr (std::is_same_v<T, float>) {
    if (parallel && !trans_a && !accumulate && !upper && gemm_small_k_applies(m, n, k, epilogue))
      return gemm_small_k(m, n, k, a, lda, trans_b, b, ldb, c, ldc, epilogue);
  }
  Operands<T> g{trans_a, trans_b, k, a, lda, b, ldb, c, ldc, accumulate};
  g.epilogue = epilogue;
  g.upper = upper;
  if (m <= gemm_impl::kSkinnyRows && !trans_b && !upper)
    return multiply_skinny(parallel, path_for<T>(active_isa()), g, m, n);
  multiply(parallel, path_for<T>(active_isa()), g, m, n);
}

template <class T>
void run_packed(bool parallel, bool trans_a, int64_t m, const T* a, int64_t lda,
                const PackedB<T>& b, T* c, int64_t ldc, bool accumulate,
                const Epilogue<T>* epilogue) {
  const int64_t n = b.n(), k = b.k();
  check_sizes(m, n, k);
  check_ld("lda", lda, trans_a ? k : m, trans_a ? m : k);
  check_ld("ldc", ldc, m, n);
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate)
      for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, T(0));
    finish_all(epilogue, c, ldc, m, n);
    return;
  }
  const Path<T> path = path_for<T>(b.isa());
  Operands<T> g{trans_a, false, k, a, lda, nullptr, 0, c, ldc, accumulate};
  g.b_packed = b.data();
  g.b_stride = gemm_impl::baseline::round_up(n, path.tile.nr);
  g.epilogue = epilogue;
  multiply(parallel, path, g, m, n);
}

}  // namespace

template <class T>
int64_t gemm_row_tile() noexcept {
  return path_for<T>(active_isa()).tile.mr;
}

template <class T>
void gemm_source_serial(int64_t m, int64_t n, int64_t k, const ASource<T>& a, bool trans_b,
                        const T* b, int64_t ldb, T* c, int64_t ldc, bool accumulate,
                        const StopToken& stop) {
  check_sizes(m, n, k);
  check_ld("ldb", ldb, trans_b ? n : k, trans_b ? k : n);
  check_ld("ldc", ldc, m, n);
  if (!a.fill) throw std::invalid_argument("gemm: the A source has no fill function");
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate)
      for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, T(0));
    return;
  }
  // Never the skinny path: it reads A element by element in place.
  Operands<T> g{false, trans_b, k, nullptr, 0, b, ldb, c, ldc, accumulate};
  g.a_source = &a;
  g.stop = stop;
  path_for<T>(active_isa()).compute(g, {0, m, 0, n});
}

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
          const T* b, int64_t ldb, T* c, int64_t ldc, bool accumulate) {
  run(true, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
}

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
          const T* b, int64_t ldb, T* c, int64_t ldc, bool accumulate,
          const Epilogue<T>* epilogue) {
  run(true, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, accumulate, epilogue);
}

template <class T>
void apply_epilogue(const Epilogue<T>& epilogue, T* c, int64_t ldc, int64_t m, int64_t n) {
  if (m <= 0 || n <= 0) return;
  if (!epilogue.bias && epilogue.activation == Activation::none) return;
  // Rows are independent: threads split them, each element computed alike.
  const int nt = static_cast<int>(std::min<int64_t>(m, threads_for(m * n, int64_t(1) << 16)));
  if (nt <= 1) return gemm_impl::baseline::finish_tile(epilogue, c, ldc, m, n, 0);
  on_team(nt, [&](int64_t t, int64_t team) {
    const int64_t lo = m * t / team, hi = m * (t + 1) / team;
    if (lo < hi) gemm_impl::baseline::finish_tile(epilogue, c + lo * ldc, ldc, hi - lo, n, 0);
  });
}

template <class T>
void activation_backward(Activation activation, T negative_slope, const T* y, const T* dy, T* out,
                         int64_t count) {
  // Written as the autograd's NumPy would, dy times the derivative, so that
  // the bits match an unfused layer's.
  const int nt = threads_for(count, int64_t(1) << 16);
  with_activation(activation, [&](auto a) {
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t i = 0; i < count; ++i)
      out[i] = dy[i] * activation_derivative(decltype(a)::value, y[i], negative_slope);
  });
}

template <class T>
PackedB<T> pack_b(bool trans_b, int64_t k, int64_t n, const T* b, int64_t ldb) {
  check_sizes(0, n, k);
  check_ld("ldb", ldb, trans_b ? n : k, trans_b ? k : n);
  PackedB<T> out;
  out.k_ = k;
  out.n_ = n;
  out.isa_ = active_isa();
  const Path<T> path = path_for<T>(out.isa_);
  const int64_t n_round = gemm_impl::baseline::round_up(n, path.tile.nr);
  const size_t elems = size_t(std::max<int64_t>(1, n_round * k));
  constexpr std::align_val_t kAlign{64};
  out.data_ = std::shared_ptr<T>(static_cast<T*>(::operator new(elems * sizeof(T), kAlign)),
                                 [](T* p) { ::operator delete(p, std::align_val_t{64}); });
  if (n == 0 || k == 0) return out;
  const Operands<T> g{false, trans_b, k, nullptr, 0, b, ldb, nullptr, 0, false};
  // Slivers are independent: threads split them.
  const int64_t slivers = n_round / path.tile.nr;
  const int nt = static_cast<int>(
      std::min<int64_t>(slivers, threads_for(n_round * k, int64_t(1) << 16)));
  T* const dst = out.data_.get();
  if (nt <= 1) {
    path.pack(g, n, 0, n_round, dst);
    return out;
  }
  on_team(nt, [&](int64_t t, int64_t team) {
    path.pack(g, n, slivers * t / team * path.tile.nr, slivers * (t + 1) / team * path.tile.nr,
              dst);
  });
  return out;
}

template <class T>
void gemm_packed(bool trans_a, int64_t m, const T* a, int64_t lda, const PackedB<T>& b, T* c,
                 int64_t ldc, bool accumulate, const Epilogue<T>* epilogue) {
  run_packed(true, trans_a, m, a, lda, b, c, ldc, accumulate, epilogue);
}

template <class T>
void gemm_packed_serial(bool trans_a, int64_t m, const T* a, int64_t lda, const PackedB<T>& b,
                        T* c, int64_t ldc, bool accumulate, const Epilogue<T>* epilogue) {
  run_packed(false, trans_a, m, a, lda, b, c, ldc, accumulate, epilogue);
}

template <class T>
void gemm_upper(bool trans_a, bool trans_b, int64_t n, int64_t k, const T* a, int64_t lda,
                const T* b, int64_t ldb, T* c, int64_t ldc, bool accumulate) {
  run(true, trans_a, trans_b, n, n, k, a, lda, b, ldb, c, ldc, accumulate,
      static_cast<const Epilogue<T>*>(nullptr), true);
}

template <class T>
void gemm_upper_serial(bool trans_a, bool trans_b, int64_t n, int64_t k, const T* a,
                       int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc, bool accumulate) {
  run(false, trans_a, trans_b, n, n, k, a, lda, b, ldb, c, ldc, accumulate,
      static_cast<const Epilogue<T>*>(nullptr), true);
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

#define CNNKIT_INSTANTIATE(T)                                                                      \
  template void gemm<T>(bool, bool, int64_t, int64_t, int64_t, const T*, int64_t, const T*,       \
                        int64_t, T*, int64_t, bool, const Epilogue<T>*);                          \
  template void activation_backward<T>(Activation, T, const T*, const T*, T*, int64_t);         \
  template void apply_epilogue<T>(const Epilogue<T>&, T*, int64_t, int64_t, int64_t);           \
  template PackedB<T> pack_b<T>(bool, int64_t, int64_t, const T*, int64_t);                       \
  template void gemm_packed<T>(bool, int64_t, const T*, int64_t, const PackedB<T>&, T*, int64_t,  \
                               bool, const Epilogue<T>*);                                         \
  template void gemm_packed_serial<T>(bool, int64_t, const T*, int64_t, const PackedB<T>&, T*,    \
                                      int64_t, bool, const Epilogue<T>*);                         \
  template void gemm_upper<T>(bool, bool, int64_t, int64_t, const T*, int64_t, const T*, int64_t, \
                              T*, int64_t, bool);                                                 \
  template void gemm_upper_serial<T>(bool, bool, int64_t, int64_t, const T*, int64_t, const T*,   \
                                     int64_t, T*, int64_t, bool);                                 \
  template int64_t gemm_row_tile<T>() noexcept;                                                   \
  template void gemm_source_serial<T>(int64_t, int64_t, int64_t, const ASource<T>&, bool,         \
                                      const T*, int64_t, T*, int64_t, bool, const StopToken&);
CNNKIT_INSTANTIATE(float)
CNNKIT_INSTANTIATE(double)
#undef CNNKIT_INSTANTIATE

}  // namespace cnnkit

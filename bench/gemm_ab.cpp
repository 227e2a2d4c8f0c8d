// A/B timing of two versions of the AVX-512 GEMM (csrc/gemm_impl.hpp and
// csrc/gemm_avx512.cpp) in one process, for changes too small to see in
// separate runs on a shared machine: each round times one version, then the
// other (the order alternating by round), and prints the ratio of their
// medians, A's time over B's (above 1: B is faster).
// Times are the thread's CPU time. This file is compiled three times: as
// each version's unit (UNIT names its entry point, NS the namespace its
// templates are compiled in, which must differ between the two, or the
// linker keeps one copy of each template for both), and as the driver:
//
//   mkdir -p /tmp/gemm_a && for f in gemm_impl.hpp gemm_avx512.cpp; do
//     git show main:csrc/$f > /tmp/gemm_a/$f; done
//   F="-O3 -std=c++17 -ffp-contract=off -Wno-subobject-linkage -mavx512f -mavx512bw"
//   F="$F -mavx512vl -mavx512dq -mavx2 -mfma"
//   g++ $F -DUNIT=gemm_a -DNS=avx512_a -I/tmp/gemm_a -Icsrc -c bench/gemm_ab.cpp -o /tmp/a.o
//   g++ $F -DUNIT=gemm_b -DNS=avx512_b -Icsrc -c bench/gemm_ab.cpp -o /tmp/b.o
//   g++ -O2 -c bench/gemm_ab.cpp -o /tmp/driver.o
//   g++ /tmp/driver.o /tmp/a.o /tmp/b.o BUILD/libcnnkit_kernels.a -fopenmp -o /tmp/gemm_ab
//   /tmp/gemm_ab M N K [TRANS_A TRANS_B DOUBLE [ROUNDS [REPEATS]]]
//
// (The unit includes gemm_avx512.cpp by name, so -I/tmp/gemm_a finds the
// other version first.) Link the objects in the other order too: where code
// lands can move a result by a percent or two. The driver also says whether
// the two versions' results are bit-identical.
#include <cstdint>

#ifdef UNIT
#define avx512 NS
#include "gemm_avx512.cpp"
#undef avx512

extern "C" void UNIT(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void* a, int64_t lda,
                     const void* b, int64_t ldb, void* c, int64_t ldc, bool dbl) {
  using namespace cnnkit::gemm_impl;
  if (dbl) {
    const Operands<double> g{ta, tb, k, static_cast<const double*>(a), lda,
                             static_cast<const double*>(b), ldb, static_cast<double*>(c), ldc,
                             false};
    NS::compute<double>(g, {0, m, 0, n});
  } else {
    const Operands<float> g{ta, tb, k, static_cast<const float*>(a), lda,
                            static_cast<const float*>(b), ldb, static_cast<float*>(c), ldc, false};
    NS::compute<float>(g, {0, m, 0, n});
  }
}

#else
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

using Gemm = void(bool, bool, int64_t, int64_t, int64_t, const void*, int64_t, const void*,
                  int64_t, void*, int64_t, bool);
extern "C" Gemm gemm_a, gemm_b;

namespace {

double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

template <class T>
std::vector<T> random_matrix(int64_t size) {
  std::vector<T> v(size);
  for (auto& x : v) x = T(std::rand() / double(RAND_MAX) - 0.5);
  return v;
}

template <class T>
int run(int64_t m, int64_t n, int64_t k, bool ta, bool tb, int rounds, int repeats) {
  const auto a = random_matrix<T>(m * k), b = random_matrix<T>(k * n);
  std::vector<T> c[2] = {std::vector<T>(m * n), std::vector<T>(m * n)};
  Gemm* const version[2] = {gemm_a, gemm_b};
  const auto call = [&](int v) {
    version[v](ta, tb, m, n, k, a.data(), ta ? m : k, b.data(), tb ? k : n, c[v].data(), n,
               sizeof(T) == 8);
  };
  call(0), call(1);
  std::printf("results %s\n",
              std::memcmp(c[0].data(), c[1].data(), c[0].size() * sizeof(T)) ? "DIFFER" : "same bits");
  const double flops = 2.0 * double(m) * double(n) * double(k);
  std::vector<double> ratios;
  double best[2] = {1e30, 1e30};
  for (int r = 0; r < rounds; ++r) {
    double median[2];
    for (int w = 0; w < 2; ++w) {
      const int v = (w + r) % 2;
      std::vector<double> t;
      for (int i = 0; i < repeats; ++i) {
        const double t0 = cpu_now();
        call(v);
        t.push_back(cpu_now() - t0);
      }
      std::sort(t.begin(), t.end());
      median[v] = t[t.size() / 2];
      best[v] = std::min(best[v], t[0]);
    }
    ratios.push_back(median[0] / median[1]);
    std::printf("round %2d: A %8.3f ms (%6.1f GFLOP/s)  B %8.3f ms (%6.1f GFLOP/s)  A/B %.3f\n", r,
                median[0] * 1e3, flops / median[0] * 1e-9, median[1] * 1e3,
                flops / median[1] * 1e-9, ratios.back());
  }
  std::sort(ratios.begin(), ratios.end());
  std::printf("best: A %.3f ms, B %.3f ms; A/B of the medians: median %.3f (%.3f to %.3f)\n",
              best[0] * 1e3, best[1] * 1e3, ratios[ratios.size() / 2], ratios.front(),
              ratios.back());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s M N K [TRANS_A TRANS_B DOUBLE [ROUNDS [REPEATS]]]\n", argv[0]);
    return 2;
  }
  const int64_t m = std::atol(argv[1]), n = std::atol(argv[2]), k = std::atol(argv[3]);
  const bool ta = argc > 4 && std::atoi(argv[4]), tb = argc > 5 && std::atoi(argv[5]);
  const bool dbl = argc > 6 && std::atoi(argv[6]);
  const int rounds = argc > 7 ? std::atoi(argv[7]) : 10, repeats = argc > 8 ? std::atoi(argv[8]) : 10;
  if (m <= 0 || n <= 0 || k <= 0 || rounds <= 0 || repeats <= 0) {
    std::fprintf(stderr, "M, N, K, ROUNDS and REPEATS must be positive\n");
    return 2;
  }
  return dbl ? run<double>(m, n, k, ta, tb, rounds, repeats)
             : run<float>(m, n, k, ta, tb, rounds, repeats);
}
#endif

// Where the time of one AVX-512 sgemm goes (issue 12's accounting): the whole
// product; then compute()'s blocking loop rebuilt from its parts, with the
// B packing and the micro-kernel calls timed apart and one cost (packing A
// along, C's traffic) taken out at a time; then the micro-kernel alone on
// slivers in L1, with the B panel in L2, and storing into a C. Times are the
// thread's CPU time, best and median of many runs, so that other processes
// on a shared machine inflate them less (compare runs made close together).
// Built and run with one command line (wrapped here):
//
//   g++ -O3 -std=c++17 -ffp-contract=off -Wno-subobject-linkage -mavx512f -mavx512bw
//       -mavx512vl -mavx512dq -mavx2 -mfma -Icsrc bench/gemm_accounting.cpp
//       BUILD/libcnnkit_kernels.a -fopenmp -o /tmp/gemm_accounting && /tmp/gemm_accounting [N [REPEATS]]
//
// BUILD is the build directory (the static library supplies the workspace).
// The AVX-512 unit is compiled in here under its own namespace name, so that
// its packing and blocking templates can be called one by one.
#include <immintrin.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>
#define avx512 avx512_accounting
#include "gemm_avx512.cpp"
#undef avx512

namespace {

using namespace cnnkit::gemm_impl;
using namespace cnnkit::gemm_impl::avx512_accounting;
using K = MicroKernel<float>;

double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Best and median of `repeats` runs of f, in seconds.
template <class F>
std::pair<double, double> timed(int repeats, F f) {
  std::vector<double> t;
  for (int r = 0; r < repeats; ++r) {
    const double t0 = cpu_now();
    f();
    t.push_back(cpu_now() - t0);
  }
  std::sort(t.begin(), t.end());
  return {t[0], t[t.size() / 2]};
}

void report(const char* what, double flops, std::pair<double, double> t) {
  std::printf("%-52s best %7.3f ms (%5.1f GFLOP/s), median %7.3f ms (%5.1f GFLOP/s)\n", what,
              t.first * 1e3, flops / t.first * 1e-9, t.second * 1e3, flops / t.second * 1e-9);
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t n = argc > 1 ? std::atol(argv[1]) : 1024;
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 20;
  std::vector<float> a(n * n), b(n * n), c(n * n);
  for (auto& x : a) x = std::rand() / float(RAND_MAX) - 0.5f;
  for (auto& x : b) x = std::rand() / float(RAND_MAX) - 0.5f;
  const Operands<float> g{false, false, n, a.data(), n, b.data(), n, c.data(), n, false};
  const double flops = 2.0 * n * n * n;
  report("whole product (compute)", flops, timed(repeats, [&] { compute<float>(g, {0, n, 0, n}); }));

  // compute()'s general loop rebuilt from its parts, with one cost taken
  // out at a time. Each run reports the micro-kernel calls (multiply_block)
  // and the B packing apart:
  //   along      as compute(): each A sliver packed while the one before it
  //              runs, inside the kernel calls (csrc/gemm_impl.hpp)
  //   along, no C  the same, C replaced by a small array with rows NR
  //              apart (ldc = NR): each tile's rows are contiguous, and the
  //              next tile along a row overlaps all but one of them, so C
  //              stays in L1 -- what the real C (4 KiB rows, from L3) adds
  //   block      A packed a block at a time (timed apart), as before packing
  //              along: the kernel calls then hold the kernel and C
  //   block, no C  the kernel alone, over the loop's real A and B blocks
  // (The results of the "no C" runs are garbage; only their time counts.)
  const int64_t kb = k_block(n, K::KC);
  float* b_pack = static_cast<float*>(std::aligned_alloc(64, K::NC * kb * 4 + 4096));
  float* a_pack = static_cast<float*>(std::aligned_alloc(64, K::MC * kb * 4 + 4096));
  std::vector<float> c_small(n * K::NR + n);
  Operands<float> no_c = g;
  no_c.c = c_small.data();
  no_c.ldc = K::NR;
  for (const bool along : {true, false}) {
    for (const Operands<float>* op : {&g, static_cast<const Operands<float>*>(&no_c)}) {
      std::vector<double> pb, pa, kern;
      for (int r = 0; r < repeats; ++r) {
        double tb = 0, ta = 0, tk = 0;
        for (int64_t jc = 0; jc < n; jc += K::NC) {
          const int64_t nc = std::min<int64_t>(n - jc, K::NC);
          for (int64_t pc = 0; pc < n; pc += kb) {
            const int64_t kc = std::min(n - pc, kb);
            double t0 = cpu_now();
            pack_b<K>(*op, pc, kc, jc, nc, b_pack);
            tb += cpu_now() - t0;
            for (int64_t ic = 0; ic < n; ic += K::MC) {
              const int64_t mc = std::min<int64_t>(n - ic, K::MC);
              t0 = cpu_now();
              pack_a<K>(*op, ic, along ? std::min(mc, K::MR) : mc, pc, kc, a_pack);
              ta += cpu_now() - t0;
              t0 = cpu_now();
              multiply_block<K>(*op, ic, mc, jc, nc, pc, kc, b_pack, a_pack, along);
              tk += cpu_now() - t0;
            }
          }
        }
        pb.push_back(tb), pa.push_back(ta), kern.push_back(tk);
      }
      for (auto* v : {&pb, &pa, &kern}) std::sort(v->begin(), v->end());
      char what[96];
      std::snprintf(what, sizeof what, "kernel calls, A %s%s", along ? "along" : "block",
                    op == &g ? "" : ", no C");
      report(what, flops, {kern[0], kern[repeats / 2]});
      std::printf("%-52s packing B: median %.3f ms; A (%s): median %.3f ms\n", "",
                  pb[repeats / 2] * 1e3, along ? "first slivers" : "blocks", pa[repeats / 2] * 1e3);
    }
  }

  // The micro-kernel alone, over the last packed blocks (kc = kb).
  std::vector<float> tile(K::MR * K::NR);
  const int64_t slivers = K::MC / K::MR, b_slivers = std::min<int64_t>(n, K::NC) / K::NR;
  const double tile_flops = 2.0 * K::MR * K::NR * kb;
  report("kernel, one A and one B sliver (L1), C fixed", tile_flops * 2000, timed(repeats, [&] {
           for (int i = 0; i < 2000; ++i)
             K::run(kb, a_pack, b_pack, tile.data(), K::NR, K::MR, K::NR, true);
         }));
  report("kernel, A sliver (L1) over the B panel (L2), C fixed", tile_flops * slivers * b_slivers,
         timed(repeats, [&] {
           for (int64_t s = 0; s < slivers; ++s)
             for (int64_t j = 0; j < b_slivers; ++j)
               K::run(kb, a_pack + s * K::MR * kb, b_pack + j * K::NR * kb, tile.data(), K::NR,
                      K::MR, K::NR, true);
         }));
  for (const int64_t ldc : {n, n + 16}) {
    std::vector<float> c2(ldc * K::MC);
    char what[80];
    std::snprintf(what, sizeof what, "the same, adding into a C of ldc %ld", long(ldc));
    report(what, tile_flops * slivers * b_slivers, timed(repeats, [&] {
             for (int64_t s = 0; s < slivers; ++s)
               for (int64_t j = 0; j < b_slivers; ++j)
                 K::run(kb, a_pack + s * K::MR * kb, b_pack + j * K::NR * kb,
                        c2.data() + s * K::MR * ldc + j * K::NR, ldc, K::MR, K::NR, false);
           }));
  }
  std::free(a_pack);
  std::free(b_pack);
}

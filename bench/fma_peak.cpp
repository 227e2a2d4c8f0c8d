// The FP32 fused multiply-add peak of one core, to read GEMM speeds against
// (bench/cases/gemm.py): 24 independent zmm (or 12 ymm) FMA chains, which
// saturate the FMA pipes, and one dependent chain, whose speed is the clock
// divided by the FMA latency (4 cycles on Intel cores since Skylake and on
// Zen 4/5). Time is the thread's CPU time, best of many short runs, so that
// other processes on a shared machine inflate it less.
//
//   g++ -O2 -mavx512f bench/fma_peak.cpp -o /tmp/fma_peak && /tmp/fma_peak
//
// Prints GFLOP/s for zmm and ymm FMAs, the clock implied by the dependent
// chain, and zmm FMAs per cycle (2 on a core with two 512-bit FMA pipes).
#include <time.h>

#include <cstdio>
#include <cstdlib>

namespace {

double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define FMA_Z(r) "vfmadd231ps %%zmm30, %%zmm31, %%zmm" #r "\n"
#define FMA_Y(r) "vfmadd231ps %%ymm14, %%ymm15, %%ymm" #r "\n"

double zmm_chains(long iters) {  // 24 FMAs per iteration, independent
  const double t0 = cpu_now();
  __asm__ volatile(
      "1:\n" FMA_Z(0) FMA_Z(1) FMA_Z(2) FMA_Z(3) FMA_Z(4) FMA_Z(5) FMA_Z(6) FMA_Z(7) FMA_Z(8)
          FMA_Z(9) FMA_Z(10) FMA_Z(11) FMA_Z(12) FMA_Z(13) FMA_Z(14) FMA_Z(15) FMA_Z(16)
              FMA_Z(17) FMA_Z(18) FMA_Z(19) FMA_Z(20) FMA_Z(21) FMA_Z(22) FMA_Z(23)
      "dec %0\n jnz 1b\n"
      : "+r"(iters)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20",
        "xmm21", "xmm22", "xmm23");
  return cpu_now() - t0;
}

double ymm_chains(long iters) {  // 12 FMAs per iteration, independent
  const double t0 = cpu_now();
  __asm__ volatile("1:\n" FMA_Y(0) FMA_Y(1) FMA_Y(2) FMA_Y(3) FMA_Y(4) FMA_Y(5) FMA_Y(6) FMA_Y(7)
                       FMA_Y(8) FMA_Y(9) FMA_Y(10) FMA_Y(11) "dec %0\n jnz 1b\n"
                   : "+r"(iters)
                   :
                   : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
                     "xmm9", "xmm10", "xmm11");
  return cpu_now() - t0;
}

double one_chain(long iters) {  // 4 dependent FMAs per iteration
  const double t0 = cpu_now();
  __asm__ volatile("1:\n" FMA_Z(0) FMA_Z(0) FMA_Z(0) FMA_Z(0) "dec %0\n jnz 1b\n"
                   : "+r"(iters)
                   :
                   : "xmm0");
  return cpu_now() - t0;
}

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 15;
  const long n = 20000000;
  double z = 1e9, y = 1e9, lat = 1e9;
  for (int r = 0; r < repeats; ++r) {
    const double tz = zmm_chains(n), ty = ymm_chains(n), tl = one_chain(n);
    z = tz < z ? tz : z;
    y = ty < y ? ty : y;
    lat = tl < lat ? tl : lat;
  }
  const double ghz = 4.0 * n / lat / 1e9 * 4;  // 4-cycle latency
  const double zmm_per_ns = 24.0 * n / z / 1e9;
  std::printf("zmm FMA: %.1f GFLOP/s  ymm FMA: %.1f GFLOP/s  clock ~%.2f GHz  zmm FMA/cycle %.2f\n",
              zmm_per_ns * 32, 12.0 * n / y / 1e9 * 16, ghz, zmm_per_ns / ghz);
}

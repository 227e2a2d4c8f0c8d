#include "cpu.hpp"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#if defined(CNNKIT_HAVE_AVX512) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

namespace cnnkit {

namespace {

#if defined(CNNKIT_HAVE_AVX512) && (defined(__GNUC__) || defined(__clang__))
// cpuid says what the CPU implements; xgetbv says which register state the
// OS saves on a context switch. Both must hold: an OS that does not save the
// opmask and ZMM registers would corrupt them between time slices (or fault).
bool cpu_has_avx512() noexcept {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  if (!(ecx & (1u << 27))) return false;  // OSXSAVE: xgetbv is usable
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  const unsigned need = (1u << 16) | (1u << 17) | (1u << 30) | (1u << 31);  // F, DQ, BW, VL
  if ((ebx & need) != need) return false;
  uint32_t xcr0_lo, xcr0_hi;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  // SSE (1), AVX (2), opmask (5), ZMM_Hi256 (6), Hi16_ZMM (7).
  const uint32_t state = (1u << 1) | (1u << 2) | (1u << 5) | (1u << 6) | (1u << 7);
  return (xcr0_lo & state) == state;
}
#endif

}  // namespace

bool isa_supported(Isa isa) noexcept {
  switch (isa) {
    case Isa::baseline:
      return true;
    case Isa::avx2:
#if defined(CNNKIT_HAVE_AVX2) && (defined(__GNUC__) || defined(__clang__))
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
      return false;
#endif
    case Isa::avx512:
#if defined(CNNKIT_HAVE_AVX512) && (defined(__GNUC__) || defined(__clang__))
      {
        static const bool ok = isa_supported(Isa::avx2) && cpu_has_avx512();
        return ok;
      }
#else
      return false;
#endif
  }
  return false;
}

Isa best_isa() noexcept {
  if (isa_supported(Isa::avx512)) return Isa::avx512;
  return isa_supported(Isa::avx2) ? Isa::avx2 : Isa::baseline;
}

const char* isa_name(Isa isa) noexcept {
  switch (isa) {
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
    default:
      return "baseline";
  }
}

bool parse_isa(const char* name, Isa& out) noexcept {
  for (Isa isa : {Isa::baseline, Isa::avx2, Isa::avx512})
    if (std::strcmp(name, isa_name(isa)) == 0) {
      out = isa;
      return true;
    }
  return false;
}

namespace {
Isa initial_isa() noexcept {
  const char* env = std::getenv("CNNKIT_ISA");
  Isa requested;
  if (env && parse_isa(env, requested) && isa_supported(requested)) return requested;
  return best_isa();
}
std::atomic<int> g_isa{static_cast<int>(initial_isa())};
}  // namespace

Isa active_isa() noexcept { return static_cast<Isa>(g_isa.load(std::memory_order_relaxed)); }

void set_active_isa(Isa isa) {
  if (!isa_supported(isa))
    throw std::invalid_argument(std::string("the ") + isa_name(isa) +
                                " path is not available on this CPU or in this build");
  g_isa.store(static_cast<int>(isa), std::memory_order_relaxed);
}

}  // namespace cnnkit

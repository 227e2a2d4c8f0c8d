#include "cpu.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace cnnkit {

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
  }
  return false;
}

Isa best_isa() noexcept { return isa_supported(Isa::avx2) ? Isa::avx2 : Isa::baseline; }

const char* isa_name(Isa isa) noexcept { return isa == Isa::avx2 ? "avx2" : "baseline"; }

bool parse_isa(const char* name, Isa& out) noexcept {
  if (std::strcmp(name, "baseline") == 0) {
    out = Isa::baseline;
    return true;
  }
  if (std::strcmp(name, "avx2") == 0) {
    out = Isa::avx2;
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

// Instruction-set selection. Wheels are built for the architecture's baseline;
// the AVX2/FMA and AVX-512 translation units are used only when the running
// CPU (and, for AVX-512, the operating system's saved register state) has them.
#pragma once

namespace cnnkit {

// Ordered: each path's CPU requirements include the previous one's.
// avx512 means AVX-512 F, BW, VL and DQ (plus AVX2/FMA), with the opmask and
// ZMM state enabled by the OS (XCR0).
enum class Isa { baseline = 0, avx2 = 1, avx512 = 2 };

bool isa_supported(Isa isa) noexcept;
Isa best_isa() noexcept;
// The path kernels use now. Starts as CNNKIT_ISA from the environment when that
// names a supported path ("baseline", "avx2", "avx512"), otherwise best_isa().
Isa active_isa() noexcept;
// Throws std::invalid_argument when the CPU (or this build) lacks `isa`.
void set_active_isa(Isa isa);
const char* isa_name(Isa isa) noexcept;
// Returns false when `name` is not a known path.
bool parse_isa(const char* name, Isa& out) noexcept;

}  // namespace cnnkit

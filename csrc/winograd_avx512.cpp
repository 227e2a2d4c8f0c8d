// The Winograd transforms for CPUs with AVX-512 (compiled with -mavx512f/bw/vl/dq, -mfma
// and a preference for 512-bit vectors).
#define CNNKIT_ISA_NS avx512
#include "winograd_impl.hpp"

// Batch normalisation's row loops for CPUs with AVX-512 (this file is compiled
// with -mavx512f/bw/vl/dq, -mfma and a preference for 512-bit vectors; no FMA
// contraction, so the bits are the baseline's).
#define CNNKIT_ISA_NS avx512
#include "batch_norm_rows_impl.hpp"

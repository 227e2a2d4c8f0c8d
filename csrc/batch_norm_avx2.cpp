// Batch normalisation's row loops for CPUs with AVX2 (this file is compiled
// with -mavx2 -mfma; no FMA contraction, so the bits are the baseline's).
#define CNNKIT_ISA_NS avx2
#include "batch_norm_rows_impl.hpp"

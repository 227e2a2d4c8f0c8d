// The Winograd transforms for CPUs with AVX2 and FMA (compiled with -mavx2 -mfma).
#define CNNKIT_ISA_NS avx2
#include "winograd_impl.hpp"

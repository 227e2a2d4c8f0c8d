// The pooling loops for CPUs with AVX2 and FMA (this file is compiled with -mavx2 -mfma).
#define CNNKIT_ISA_NS avx2
#include "pool_impl.hpp"

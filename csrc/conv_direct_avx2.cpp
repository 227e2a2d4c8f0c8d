// The direct convolution loops for CPUs with AVX2 and FMA (compiled with -mavx2 -mfma).
#define CNNKIT_ISA_NS avx2
#include "conv_direct_impl.hpp"

// The direct convolution loops for CPUs with AVX-512 (this file is compiled with
// -mavx512f/bw/vl/dq, -mfma and a preference for 512-bit vectors).
#define CNNKIT_ISA_NS avx512
#include "conv_direct_impl.hpp"

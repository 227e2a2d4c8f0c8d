// The IoU loops for CPUs with AVX2 and FMA (this file is compiled with -mavx2 -mfma).
#define CNNKIT_ISA_NS avx2
#include "boxes_iou_impl.hpp"

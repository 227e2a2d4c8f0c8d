// C = A B for products with few rows (batch-1 inference: 49 or 196 rows of
// patches against 2304-4608 x 256-512 weights), B read in place, row-major.
//
// Why: at batch 1 the deep layers' weights are far larger than their
// products' other operands, so the product is bound by how often the weights
// cross the memory bus. The packed GEMM (csrc/gemm.hpp) reads them to pack
// them into memory and reads the packed copy back, or -- with
// csrc/conv_weight_cache.hpp -- reads them and a cached copy to prove the
// packed one current, then the packed one: three streams where one would do.
// Here B is read once: k block by k block (256 rows), the next block's
// lines prefetched into L2, a few every so many steps of each row tile,
// while the current one is multiplied; each 32-column panel of a block is
// packed by the first 12-row tile of A that reads it (the first block, not
// yet in cache, is packed whole, each row read front to back as the
// hardware prefetchers like) and read from L1 by the other tiles.
//
// Bits: the same as gemm() on the AVX-512 path, whose float k blocks
// (csrc/gemm_avx512.cpp, kc = 256) this file repeats: each block's products
// summed by FMA from zero in increasing p, the block sums added to C in
// increasing block order, then csrc/gemm.hpp's epilogue. So conv and matmul
// keep their bits whether or not they come through here, and the thread count
// (threads share the column panels or bands of rows) changes nothing.
// tests/test_conv_few_rows.py checks the equality against the packed path.
//
// A convolution's patches need not be gathered: FewRowsImplicit reads them
// in place, each row tile the positions of one or two output rows, whose
// windows lie a constant stride apart, and each k block as one run of steps
// per kernel tap it touches, the FMA chain running on across the taps.
#pragma once

#include <cstdint>

#include "gemm.hpp"

namespace cnnkit {

// Whether gemm_few_rows takes an m x k times k x n product of element type T
// on the active instruction-set path: float on AVX-512, 1 <= m <= kMaxRows
// (or kMaxRowsLargeB when B has kLargeB bytes or more, or when several
// threads would share bands of its rows: gemm_few_rows.cpp's
// banded_applies), 1 <= n <= kMaxColumns (or any n >= 1 for kMinRowsWide <=
// m <= kMaxRows), k >= 1. The bits are the packed
// GEMM's either way, so the answer may depend on the thread count.
template <class T>
bool gemm_few_rows_applies(int64_t m, int64_t n, int64_t k) noexcept;

// Whether gemm_few_rows takes the product with A a convolution's patches
// read in place (FewRowsImplicit): where gemm_few_rows_applies, and for
// float on AVX-512 also up to kMaxRowsLargeB rows at up to kMaxColumns
// columns whatever the weights' size. Without a gather, the patches cost
// no more than an A in memory, and the few-row tiles beat the packed GEMM
// that gathered them (conv_forward, one thread, CPU time, load ~2.5, main's
// build alternated with this one): ResNet-18's 1x1 stride-2 downsample at
// batch 1 (784 x 64 x 128) 0.105-0.110 -> 0.083 ms, AlexNet's conv2 (729 x
// 1600 x 192) 2.77-3.02 -> 2.60-2.76, ResNet-18's 3x3 stride-2 from 56 x
// 56 x 64 (784 x 576 x 128) 0.73-0.76 -> 0.73-0.75.
template <class T>
bool gemm_few_rows_implicit_applies(int64_t m, int64_t n, int64_t k) noexcept;

// C (m x n, row stride ldc) = A (m x k, lda) B (k x n, ldb), all row-major,
// then the epilogue if not null. Only where gemm_few_rows_applies; threads:
// up to num_threads(), over chunks of at most 512 columns or, where A is the
// larger share of the reads, over bands of rows (gemm_few_rows.cpp). C must not overlap A or B.
template <class T>
void gemm_few_rows(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
                   int64_t ldb, T* c, int64_t ldc, const Epilogue<T>* epilogue);

// The same product on the calling thread only, for callers that share
// tiles of a larger product between threads themselves.
template <class T>
void gemm_few_rows_serial(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
                          int64_t ldb, T* c, int64_t ldc, const Epilogue<T>* epilogue);

// A (m x k) for the product below: in place (row i at data + i * ld), or,
// when fill is set, an A that exists only as a rule -- a convolution's
// patch matrix -- supplied one k block at a time: fill writes rows
// [i0, i0 + rows) x columns [p0, p0 + kc) to dst (row stride ld_dst). So
// no m x k copy of it is ever written: the block's rows go to a per-thread
// buffer that stays in L2 (a patch matrix of AlexNet's 13 x 13 layers is
// 2.3 MB, more than the L2). Threads that share C's columns each fill
// every block themselves, threads that share its rows their band: fill
// must be safe to call from several threads at once. (Filling each block
// once into a buffer all threads read, each filling a band of its rows
// with a barrier per block, measured slower at two threads: ResNet-18's
// 14x14x256 3x3 layer at batch 1, best wall of 200 under load ~7,
// 0.85-0.87 ms against 0.78-0.81, 7x7x512 0.87-0.96 against 0.85-0.92. A
// repeated fill is 4-6% of a thread's product on those layers, 1.31
// against 1.26 ms for the same product from a pointwise conv at one
// thread; the other thread's band then comes from its core's cache, and
// the barriers wait for the slower thread. Sharing the rows instead halves
// each thread's fill without a barrier: gemm_few_rows.cpp's split_rows.)
// A 2-D convolution's patch matrix read in place (no copy of the patches):
// row (n, oh, ow) of an out_h x out_w map, column (kh, kw, c) of a kernel
// with kernel_w columns over `channels` input channels, is x[n, oh *
// stride_h + kh * dilation_h, ow * stride_w + kw * dilation_w, c] of x laid
// out (batch, in_h, in_w, channels) with any padding already in it (a
// zero-padded copy). Row tiles then follow the output rows, whose patches
// lie a constant stride apart. channels >= kMinImplicitChannels.
template <class T>
struct FewRowsImplicit {
  const T* x = nullptr;
  int64_t in_h = 0, in_w = 0, channels = 0, kernel_w = 0, out_h = 0, out_w = 0;
  int64_t pixel_stride = 0;  // elements from one pixel of x to the next (>= channels)
  int64_t stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
};

template <class T>
struct FewRowsA {
  const T* data = nullptr;
  int64_t ld = 0;
  // fill(context, i0, rows, p0, kc, dst, ld_dst): rows [i0, i0 + rows) of
  // the block to dst's rows [0, rows).
  void (*fill)(const void* context, int64_t i0, int64_t rows, int64_t p0, int64_t kc, T* dst,
               int64_t ld_dst) = nullptr;
  const void* context = nullptr;
  // The first row of the whole A that row 0 of this one is (fill and
  // implicit only): threads that share the rows take an A each, starting at
  // their band.
  int64_t row0 = 0;
  // Or A as a convolution's patches read in place (data and fill unset):
  // bands of rows, if threads share them, are whole output rows.
  const FewRowsImplicit<T>* implicit = nullptr;
};

// gemm_few_rows with A from `a`: the same bits as for the A it describes.
template <class T>
void gemm_few_rows(int64_t m, int64_t n, int64_t k, const FewRowsA<T>& a, const T* b, int64_t ldb,
                   T* c, int64_t ldc, const Epilogue<T>* epilogue);

namespace few_rows {
// The most rows the path takes: beyond, the packed GEMM's 14 x 32 register
// tile and L1-resident slivers are faster (measured in gemm_few_rows.cpp).
constexpr int64_t kMaxRows = 256;
// Except with large weights, which conv's packed path streams once per tile
// of about 1 MiB of patches (84 rows at 2304 patch columns). conv_forward,
// one thread, CPU time, load ~10, few-row against packed: 392 x 2304 x 512
// (ResNet-18's layer4.0.conv1 at batch 8, 4.7 MB of weights) 6.9 against
// 9.3 ms with caches flushed in C++, 6.9-7.1 against 8.0 from Python; 500
// rows 9.0 against 12.7, 1024 rows 20.3 against 24.2. Below 2 MiB it
// depended on the run: AlexNet's conv2 at batch 1 (729 x 1600 x 192, 1.2
// MB) 3.25 against 3.46 in C++ but 3.26-3.30 against 3.08-3.22 from
// Python; 784 x 576 x 128 (0.3 MB) 1.07 against 1.02; and at 1568 x 1152 x
// 256 the packed path won, 7.6 against 8.6.
constexpr int64_t kMaxRowsLargeB = 1024;
constexpr int64_t kLargeB = int64_t(2) << 20;
// The widest B taken for fewer than kMinRowsWide rows. Threads cut the
// columns into chunks of at most 512, so a wider B is read as 2 KiB pieces
// of rows far apart, which the prefetchers follow poorly: a 1 x 9216 x 4096
// product (AlexNet's fc6 at batch 1) ran at 3-4 GB/s against the skinny
// GEMM's 10-12. With more rows the product, not the reading of B, sets the
// pace, and the packed path would pack B on every call: from 16 rows (up
// to kMaxRows) wider B come here too. conv 1x1 + bias + ReLU, one thread, CPU time, caches
// flushed between calls, main's build and this one alternated 3 times, load
// ~3.5, median ms: SqueezeNet's classifier (169 x 512 x 1000) 1.34 -> 1.20,
// MobileNet v2's 7 x 7 x 320 -> 1280 0.43 -> 0.35, 14 x 14 x 96 -> 576
// 0.20 -> 0.17, 7 x 7 x 160 -> 960 0.18 -> 0.15 (with the epilogue fused
// into the tiles' stores, gemm_few_rows_avx512.cpp).
constexpr int64_t kMaxColumns = 512;
constexpr int64_t kMinRowsWide = 16;
// The fewest input channels FewRowsImplicit takes: a k block (at most 256
// steps) then touches at most 18 kernel taps.
constexpr int64_t kMinImplicitChannels = 16;
}  // namespace few_rows

}  // namespace cnnkit

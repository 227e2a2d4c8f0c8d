// Winograd convolution F(4x4, 3x3) for 2-D 3x3 convolutions with stride 1,
// dilation 1 and one group, channels-last: forward and input gradient.
// Internal to the conv family (csrc/conv.cpp chooses it).
//
// Why: a 3x3 convolution spends 9 multiply-adds per output per channel pair in
// the im2col GEMM; F(4x4, 3x3) computes a 4x4 output tile from a 6x6 input
// tile with 36, i.e. 2.25 per output, at the price of linear transforms of
// the input and output tiles (O(channels), not O(channels^2)) and of a few
// bits of float32 accuracy (Lavin & Gray 2016). The filters are transformed
// into 36 matrices U[e] (C_in x C_out) and packed for the GEMM once, shared
// by all threads and blocks, and cached across calls while the weights do
// not change (see winograd.cpp); the input is cut into
// blocks of tiles, each block transformed into 36 matrices V[e] (tiles x C_in),
// and the 36 products M[e] = V[e] U[e] run as GEMMs (csrc/gemm.hpp) before the
// output transform. The workspace is per thread and sized by the block, never
// by the batch.
//
// Accuracy (float32, measured against float64 on bench/cases/conv.py's 3x3
// shapes, bench/winograd.py, its table in bench/RESULTS.md): at most 1.8e-5
// of the largest output magnitude (im2col: 4e-7); tests/test_winograd.py
// bounds it by 1e-4.
//
// Determinism: each output element is computed by one task from its own tile,
// with GEMM bits that do not depend on how the rows are cut (gemm.hpp), so
// results are identical for any number of threads.
#pragma once

#include "conv.hpp"

namespace cnnkit {

// Whether the problem has the shape Winograd handles (2-D, 3x3, stride 1,
// dilation 1, groups 1, at least one output and one channel on each side).
bool winograd_applies(const ConvProblem& p);
// Whether conv_forward / conv_backward_input choose it for
// ConvAlgorithm::automatic: it applies, it is enabled (set_winograd_enabled),
// and the problem is one where it measured faster than im2col.
bool winograd_preferred(const ConvProblem& p);

// The switch for the automatic choice; starts false when the environment has
// CNNKIT_WINOGRAD=0, true otherwise. ConvAlgorithm::winograd ignores it.
bool winograd_enabled() noexcept;
void set_winograd_enabled(bool on) noexcept;

// The transformed and packed filters are kept across calls, keyed by the
// weights' address and checked against a copy of their values on every use
// (winograd.cpp says why and how much). For tests and diagnostics: counts
// since start-up, and the entries and bytes held now.
struct WinogradCacheStats {
  int64_t hits = 0, misses = 0, entries = 0, bytes = 0;
};
WinogradCacheStats winograd_cache_stats();
void clear_winograd_cache();

namespace detail {
// y = activation(conv(x, w) + b) (b may be null); requires winograd_applies(p).
// With a residual (y's shape; activation none), the stored values get it
// added, then add_relu's rectifier when `relu` (see conv_forward_residual).
// y's pixels lie ldy elements apart (out_channels when ldy <= 0); the
// residual's are dense.
template <class T>
void winograd_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y,
                      Activation activation = Activation::none, T negative_slope = T(0.2),
                      const T* residual = nullptr, bool relu = false, int64_t ldy = 0);
// dx = the gradient of conv with respect to x; requires winograd_applies(p).
template <class T>
void winograd_backward_input(const ConvProblem& p, const T* w, const T* dy, T* dx);
}  // namespace detail

}  // namespace cnnkit

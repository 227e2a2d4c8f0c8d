// Convolution in 1 to 3 spatial dimensions, channels-last, forward and
// backward, on top of the packed GEMM (csrc/gemm.hpp).
//
// x (N, *in, C_in), w (*kernel, C_in / groups, C_out), y (N, *out, C_out).
// Viewed as matrices, y = P w per group, where P ("patches", the im2col
// matrix) has a row per output position and a column per (kernel offset,
// input channel of the group); w is already that (kernel * C_in/groups) x
// C_out matrix. P is never materialised for the whole batch: the forward
// pass gathers it in tiles of rows into a per-thread buffer whose size
// depends only on the tile, and multiplies each tile; the weight gradient
// P^T dy gathers P^T straight into the GEMM's packed slivers
// (gemm_source_serial), with no buffer. Pointwise convolutions (1x1, stride
// 1, no padding, one group) skip the gather: x is P.
//
// Determinism: every output element's reduction runs in an order fixed by
// the problem alone (gemm's bits do not depend on how C is cut, so the
// forward pass may cut its rows by the thread count; the backward passes'
// partial sums are cut by the problem only), so results are identical for
// any number of threads.
#pragma once

#include <cstdint>

#include "gemm.hpp"
#include "geometry.hpp"

namespace cnnkit {

// How conv_forward and conv_backward_input compute: `automatic` picks the
// fastest path for the shape (direct loops, im2col GEMM or Winograd, see
// csrc/winograd.hpp); `no_winograd` never takes Winograd; `winograd` takes it
// whenever winograd_applies (the caller checks the shape first).
enum class ConvAlgorithm { automatic, no_winograd, winograd };

struct ConvProblem {
  Geometry g;  // rank 1 to 3; unused trailing dimensions are 1
  int64_t batch = 0, in_channels = 0, out_channels = 0, groups = 1;
  ConvAlgorithm algorithm = ConvAlgorithm::automatic;

  int64_t in_per_group() const { return in_channels / groups; }
  int64_t out_per_group() const { return out_channels / groups; }
  // Columns of P for one group, rows of w.
  int64_t patch_size() const { return g.kernel_size() * in_per_group(); }
  // Rows of P: output positions over the batch.
  int64_t rows() const { return batch * g.out_size(); }
  bool is_pointwise() const;
};

// y = conv(x, w) + b; b may be null.
template <class T>
void conv_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y);
// y = activation(conv(x, w) + b), the bias and activation applied in the
// store of each GEMM tile (csrc/gemm.hpp's Epilogue) on the im2col and
// pointwise paths, in a pass over y after the direct loops otherwise. The
// bits are those of conv_forward followed by the activation.
template <class T>
void conv_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y,
                  Activation activation, T negative_slope);
// The same with y's pixels ldy >= out_channels elements apart (y then a
// channel slice of a wider channels-last buffer, as a concatenation's
// inputs are): the GEMM paths and Winograd store there directly, the
// direct, depthwise and stem loops through a scratch copied out row by row.
// The bits are those of the dense call.
template <class T>
void conv_forward(const ConvProblem& p, const T* x, const T* w, const T* b, T* y, int64_t ldy,
                  Activation activation, T negative_slope);
// A residual block's convolution, Add and ReLU: y = relu(conv(x, w) + b +
// residual) with the bits of conv_forward(p, x, w, b, y) then
// add_relu(y, residual) (csrc/add_relu.hpp; without `relu`, the plain sum).
// residual has y's dense shape; the sum is made as each tile is stored on
// the Winograd and im2col paths, in one pass after the others. y's pixels
// lie ldy elements apart (out_channels when ldy <= 0).
template <class T>
void conv_forward_residual(const ConvProblem& p, const T* x, const T* w, const T* b,
                           const T* residual, bool relu, T* y, int64_t ldy = 0);
// dx = the gradient with respect to x, given dy.
template <class T>
void conv_backward_input(const ConvProblem& p, const T* w, const T* dy, T* dx);
// dw = the gradient with respect to w, given x and dy.
template <class T>
void conv_backward_weight(const ConvProblem& p, const T* x, const T* dy, T* dw);
// db[c] = the sum of dy over every position and batch item.
template <class T>
void conv_backward_bias(const ConvProblem& p, const T* dy, T* db);
// A fused activation's backward and the bias gradient in one pass over dy:
// masked = dy * activation'(y) as activation_backward (csrc/gemm.hpp) and
// db = the sum of masked as conv_backward_bias, with the bits of those two
// calls. A training step's largest layers then read dy once less.
template <class T>
void conv_backward_activation_bias(const ConvProblem& p, Activation activation, T negative_slope,
                                   const T* y, const T* dy, T* masked, T* db);
// dw, and db when not null, of a convolution whose forward applied
// `activation` (y its output), from the unmasked dy, for callers that need
// no dx (an input layer): the bits of conv_backward_activation_bias then
// conv_backward_weight, without writing the masked dy. Only the
// few-input-channel loops mask as they read (the usual input layer);
// returns false, computing nothing, for other problems.
template <class T>
bool conv_backward_weight_fused(const ConvProblem& p, Activation activation, T negative_slope,
                                const T* x, const T* y, const T* dy, T* dw, T* db);

// The gradient of a convolution's output that a max pool with disjoint
// windows (stride >= window) hands back, kept in the pool's terms: its
// geometry (whose input is the convolution's output), its output gradient
// dy and the spatial indices of its maxima (max_pool_with_indices), and,
// when the convolution's ReLU is masked at the maxima, the pool's output
// relu_y (as max_pool_backward_indices takes them).
template <class T>
struct PooledGradient {
  const Geometry* g = nullptr;
  const int64_t* indices = nullptr;
  const T* dy = nullptr;
  const T* relu_y = nullptr;
  int64_t* hits = nullptr;  // out: how many (window, channel) pairs found their index
};
// dw and db (when not null) of an input layer (no dx wanted) whose output
// went through that max pool, without the pool's full-size dx: each band of
// the convolution's dy is made from the pooled gradient as the weight loops
// reach it (the values max_pool_backward_indices writes, 0 + dy at the
// maximum and 0 elsewhere), so dw and db have the bits of
// max_pool_backward_indices followed by conv_backward_weight_fused. A
// training step's first layer then neither writes nor reads a dy of its
// full output size. Returns false, with dw and db incomplete, when the
// few-input-channel loops do not apply, the windows overlap, or an index
// lies outside its window (the caller then takes the two calls).
template <class T>
bool conv_backward_weight_pooled(const ConvProblem& p, const PooledGradient<T>& pooled,
                                 const T* x, T* dw, T* db);

}  // namespace cnnkit

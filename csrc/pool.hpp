// Pooling kernels on channels-last arrays: x is (batch, *in, channels) and the
// windowed kernels write (batch, *out, channels), with the spatial extents,
// windows, strides and padding described by a Geometry (rank 1 to 3; the
// unused trailing dimensions have extent, window and stride 1).
//
// Windows are clipped to the input: max pooling ignores padded positions and
// average pooling divides by the number of real elements in each window (Keras
// "same" semantics). NaN propagates through max pooling. Preconditions: every
// dilation is 1 and every window holds at least one input element (see
// first_empty_window_dim). Results do not depend on the thread count.
#pragma once

#include <cstdint>

#include "geometry.hpp"

namespace cnnkit {

// The first spatial dimension in which some window lies entirely in the
// padding, or -1 when every window holds an input element.
int first_empty_window_dim(const Geometry& g) noexcept;

template <class T>
void max_pool(const Geometry& g, int64_t batch, int64_t channels, const T* x, T* y);
template <class T>
void avg_pool(const Geometry& g, int64_t batch, int64_t channels, const T* x, T* y);

// dx = the gradient of sum(dy * max_pool(x)) with respect to x: each window's
// dy goes to its first maximal element in row-major window order (the first
// NaN when the window holds one); overlapping windows accumulate.
template <class T>
void max_pool_backward(const Geometry& g, int64_t batch, int64_t channels, const T* x,
                       const T* dy, T* dx);
// max_pool that also writes, for each output element, the spatial index (in
// the flattened *in of its image, as torch's return_indices) of the element
// that max_pool_backward routes its gradient to: the first maximal one in
// row-major window order, the first NaN when the window holds one.
template <class T>
void max_pool_with_indices(const Geometry& g, int64_t batch, int64_t channels, const T* x, T* y,
                           int64_t* indices);
// max_pool_backward from those indices: dx[n, indices[n, o, c], c] +=
// dy[n, o, c], summed in output order. Equal to max_pool_backward given the
// indices of max_pool_with_indices(x), without reading x or recomputing any
// window. Returns false, with dx incomplete, when an index lies outside
// [0, in_size) (none is used then): the check costs nothing beside the
// reads the gradient makes anyway.
// With relu_y (this max_pool's output, when its input is a ReLU's output),
// dy is first multiplied by relu_y > 0, the ReLU's derivative at the maxima,
// as activation_backward computes it.
template <class T>
bool max_pool_backward_indices(const Geometry& g, int64_t batch, int64_t channels,
                               const int64_t* indices, const T* dy, T* dx,
                               const T* relu_y = nullptr);
// dx = the gradient of sum(dy * avg_pool(x)): dy / count to each real element.
template <class T>
void avg_pool_backward(const Geometry& g, int64_t batch, int64_t channels, const T* dy, T* dx);

// x is (batch, positions, channels), y is (batch, channels); positions >= 1.
// The average accumulates in double, also for float.
template <class T>
void global_max_pool(const T* x, int64_t batch, int64_t positions, int64_t channels, T* y);
template <class T>
void global_avg_pool(const T* x, int64_t batch, int64_t positions, int64_t channels, T* y);

}  // namespace cnnkit

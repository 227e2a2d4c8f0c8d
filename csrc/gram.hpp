// Gram matrices of feature maps (the "style" matrix of neural style transfer)
// and their gradient. A batch item's features are F, a row-major
// positions x channels matrix (a channels-last map with its spatial
// dimensions flattened); its Gram matrix is G = F^T F / d, channels x channels.
//
// Both are built on cnnkit::gemm (csrc/gemm.hpp), so they inherit its
// reduction order: each element of G is summed over positions in an order
// that depends only on the sizes and the instruction-set path, never on the
// thread count. G is exactly symmetric: one triangle is computed, in tiles,
// and mirrored.
#pragma once

#include <cstdint>

namespace cnnkit {

// The divisor d: 1, the number of positions, or positions * channels.
enum class GramNorm { none, positions, size };

// For n in [0, batch): g[n] = F_n^T F_n / d, with F_n the positions x channels
// matrix at x + n * positions * channels and g[n] the channels x channels
// matrix at g + n * channels * channels. With zero positions g is all zeros
// whatever `norm` is (nothing is divided by zero). T is float or double.
template <class T>
void gram(const T* x, int64_t batch, int64_t positions, int64_t channels, GramNorm norm, T* g);

// The gradient of gram(): for each n, dx[n] = F_n (dG_n + dG_n^T) / d, with
// dG_n the channels x channels matrix at dg + n * channels * channels and
// dx[n] laid out like F_n.
template <class T>
void gram_backward(const T* x, const T* dg, int64_t batch, int64_t positions, int64_t channels,
                   GramNorm norm, T* dx);

}  // namespace cnnkit

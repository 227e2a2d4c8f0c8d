// Portable pooling loops plus the drivers that split the work over threads
// and pick the instruction-set path.
#define CNNKIT_ISA_NS baseline
#include "pool_impl.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <type_traits>
#include <vector>

#include "cpu.hpp"
#include "gemm.hpp"
#include "interrupt.hpp"
#include "parallel.hpp"
#include "pool.hpp"

namespace cnnkit {

namespace {

template <class T>
struct Loops {
  decltype(&pool_impl::baseline::max_pool_rows<T>) max_rows, avg_rows;
  decltype(&pool_impl::baseline::max_pool_backward_rows<T>) max_backward;
  decltype(&pool_impl::baseline::avg_pool_backward_rows<T>) avg_backward;
  decltype(&pool_impl::baseline::global_max_block<T>) global_max;
  decltype(&pool_impl::baseline::global_avg_block<T>) global_avg;
  decltype(&pool_impl::baseline::max_pool_indices_rows<T>) max_indices_rows;
  decltype(&pool_impl::baseline::max_pool_backward_indices_rows<T>) max_backward_indices;
  decltype(&pool_impl::baseline::max_pool_backward_local_rows<T>) max_backward_local;
};

template <class T>
Loops<T> loops() {
#ifdef CNNKIT_HAVE_AVX512
  if (active_isa() == Isa::avx512) {
    namespace ns = pool_impl::avx512;
    return {&ns::max_pool_rows<T>,          &ns::avg_pool_rows<T>,
            &ns::max_pool_backward_rows<T>, &ns::avg_pool_backward_rows<T>,
            &ns::global_max_block<T>,       &ns::global_avg_block<T>,
            &ns::max_pool_indices_rows<T>,  &ns::max_pool_backward_indices_rows<T>,
            &ns::max_pool_backward_local_rows<T>};
  }
#endif
#ifdef CNNKIT_HAVE_AVX2
  if (active_isa() == Isa::avx2) {
    namespace ns = pool_impl::avx2;
    return {&ns::max_pool_rows<T>,          &ns::avg_pool_rows<T>,
            &ns::max_pool_backward_rows<T>, &ns::avg_pool_backward_rows<T>,
            &ns::global_max_block<T>,       &ns::global_avg_block<T>,
            &ns::max_pool_indices_rows<T>,  &ns::max_pool_backward_indices_rows<T>,
            &ns::max_pool_backward_local_rows<T>};
  }
#endif
  namespace ns = pool_impl::baseline;
  return {&ns::max_pool_rows<T>,          &ns::avg_pool_rows<T>,
          &ns::max_pool_backward_rows<T>, &ns::avg_pool_backward_rows<T>,
          &ns::global_max_block<T>,       &ns::global_avg_block<T>,
          &ns::max_pool_indices_rows<T>,  &ns::max_pool_backward_indices_rows<T>,
          &ns::max_pool_backward_local_rows<T>};
}

// Work units for threads_for: every window element of every channel.
int64_t window_work(const Geometry& g, int64_t batch, int64_t channels) {
  return batch * g.out_size() * g.kernel_size() * channels;
}

// Each output row is computed by one thread from the input alone, so the
// forward results do not depend on the thread count.
template <class T, class Rows>
void forward(const Geometry& g, int64_t batch, int64_t channels, const T* x, T* y, Rows rows) {
  const int64_t n_rows = batch * g.out[0] * g.out[1];
  if (n_rows == 0 || channels == 0) return;
  const int nt = threads_for(window_work(g, batch, channels));
  // About 64 blocks of rows per thread, contiguous per thread (static
  // schedule), so that a stop request is seen between blocks.
  const int64_t per_block = std::max<int64_t>(1, n_rows / (int64_t(nt) * 64));
  const int64_t blocks = (n_rows + per_block - 1) / per_block;
  const StopToken stop;
  // Last block first: the layer before has just written x in order, and its
  // last rows are the ones still in this core's cache; walked from the start,
  // x's first rows would push them out before they are read (111x111x64
  // 3x3/2 pooling right after a pass that writes x, the loop alone, one
  // thread, CPU time: 0.134 -> 0.123 ms; inside SqueezeNet 1.1, after its
  // first Conv, the change was within the noise of a loaded machine).
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t i = 0; i < blocks; ++i) {
    if (stop) continue;
    const int64_t r0 = (blocks - 1 - i) * per_block;
    rows(g, channels, x, y, r0, std::min(n_rows, r0 + per_block));
  }
}

// Splits dx into tasks, each a block of input rows (along the first spatial
// dimension) of one image, and calls rows(n, lo, hi, scratch) for each. A task
// computes its rows completely, adding window gradients in output order (see
// for_each_window_over), so the result does not depend on the split; windows
// across a block boundary are visited by both tasks. A block's dx rows (about
// block_bytes of them) are zeroed and accumulated while they are in cache.
template <class T, class Rows>
void gather_rows(const Geometry& g, int64_t batch, int64_t channels, int64_t scratch_per_thread,
                 Rows rows, int64_t block_bytes = int64_t(128) << 10) {
  if (batch * g.in_size() * channels == 0) return;
  const int nt = threads_for(window_work(g, batch, channels));
  // Blocks of whole output rows: about 128 KiB of dx each, fewer rows when
  // that leaves too few tasks for the threads.
  const int64_t row_bytes = g.stride[0] * g.in[1] * g.in[2] * channels * int64_t(sizeof(T));
  int64_t per_block = std::clamp<int64_t>(block_bytes / row_bytes, 1, g.out[0]);
  while (per_block > 1 && batch * ((g.out[0] + per_block - 1) / per_block) < 4 * nt)
    per_block = (per_block + 1) / 2;
  const int64_t blocks = (g.out[0] + per_block - 1) / per_block;
  // Block b owns the input rows from where its first window starts to where
  // the next block's does; the first and last blocks extend to the edges.
  const auto row_of = [&](int64_t b) {
    if (b == 0) return int64_t(0);
    if (b == blocks) return g.in[0];
    return std::clamp<int64_t>(b * per_block * g.stride[0] - g.pad_before[0], 0, g.in[0]);
  };
  std::vector<T> scratch(static_cast<size_t>(nt * scratch_per_thread));
  const StopToken stop;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t i = 0; i < batch * blocks; ++i) {
    if (stop) continue;
    const int64_t b = i % blocks;
    rows(i / blocks, row_of(b), row_of(b + 1),
         scratch.data() + omp_get_thread_num() * scratch_per_thread);
  }
}

// Global pooling splits each image's channels into blocks, one block per
// task; block(n, c0, c1, acc) gets room for kChannelBlock doubles in acc.
constexpr int64_t kChannelBlock = 256;

template <class Block>
void global_blocks(int64_t batch, int64_t positions, int64_t channels, Block block) {
  const int64_t blocks = (channels + kChannelBlock - 1) / kChannelBlock;
  const int nt = threads_for(batch * positions * channels);
  std::vector<double> acc(static_cast<size_t>(nt * kChannelBlock));
  const StopToken stop;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t i = 0; i < batch * blocks; ++i) {
    if (stop) continue;
    const int64_t c0 = (i % blocks) * kChannelBlock;
    block(i / blocks, c0, std::min(channels, c0 + kChannelBlock),
          acc.data() + omp_get_thread_num() * kChannelBlock);
  }
}

#ifdef CNNKIT_HAVE_AVX512
// Outputs [r0, r1) of 2-D float max pooling on the AVX-512 path: each run
// along the second dimension by pool_impl::avx512::max_pool_line (3x3/2
// windows, one thread, CPU time, warm caches: ResNet-18's 112x112x64 0.16 ->
// 0.13 ms, SqueezeNet's 55x55x128 0.063 -> 0.043, 13x13x256 0.0055 ->
// 0.0041).
void max_pool_rows_avx512(const Geometry& g, int64_t channels, const float* x, float* y,
                          int64_t r0, int64_t r1) {
  // The window's rows, on the stack for the usual windows (blocks of a few
  // outputs are common: an allocation each cost more than the pooling).
  const float* few[16];
  std::vector<const float*> many(g.kernel[0] > 16 ? size_t(g.kernel[0]) : 0);
  const float** rows = g.kernel[0] > 16 ? many.data() : few;
  const int64_t row = g.in[1] * channels;
  for (int64_t r = r0; r < r1;) {
    const int64_t n = r / (g.out[0] * g.out[1]), o0 = r / g.out[1] % g.out[0];
    const int64_t o1 = r % g.out[1], count = std::min(r1 - r, g.out[1] - o1);
    const pool_impl::Span span = pool_impl::window_span(g, 0, o0);
    for (int64_t i = span.begin; i < span.end; ++i)
      rows[i - span.begin] = x + (n * g.in[0] + i) * row;
    pool_impl::avx512::max_pool_line(rows, span.end - span.begin, g.in[1], channels,
                                     channels, g.kernel[1], g.stride[1],
                                     g.pad_before[1] - o1 * g.stride[1], count,
                                     y + r * channels, channels);
    r += count;
  }
}
#endif

}  // namespace

int first_empty_window_dim(const Geometry& g) noexcept {
  for (int d = 0; d < g.rank; ++d) {
    const int64_t last_start = (g.out[d] - 1) * g.stride[d] - g.pad_before[d];
    if (g.pad_before[d] >= g.kernel[d] || last_start >= g.in[d]) return d;
  }
  return -1;
}

template <class T>
void max_pool(const Geometry& g, int64_t batch, int64_t channels, const T* x, T* y) {
#ifdef CNNKIT_HAVE_AVX512
  if constexpr (std::is_same_v<T, float>) {
    // Overlapping windows: disjoint ones (VGG's 2x2/2) stream their input
    // once, as fast either way.
    if (active_isa() == Isa::avx512 && g.in[2] == 1 && g.kernel[2] == 1 &&
        !pool_impl::windows_disjoint(g))
      return forward(g, batch, channels, x, y, &max_pool_rows_avx512);
  }
#endif
  forward(g, batch, channels, x, y, loops<T>().max_rows);
}

template <class T>
void max_pool_with_indices(const Geometry& g, int64_t batch, int64_t channels, const T* x, T* y,
                           int64_t* indices) {
  const auto loop = loops<T>().max_indices_rows;
  forward(g, batch, channels, x, y, [&](const Geometry& gg, int64_t ch, const T* xx, T* yy,
                                        int64_t r0, int64_t r1) {
    loop(gg, ch, xx, yy, indices, r0, r1);
  });
}

template <class T>
bool max_pool_backward_indices(const Geometry& g, int64_t batch, int64_t channels,
                               const int64_t* indices, const T* dy, T* dx, const T* relu_y) {
  const Loops<T> all = loops<T>();
  const bool disjoint = pool_impl::windows_disjoint(g);
  std::atomic<bool> foreign{false};
  if (disjoint) {
    // Each dx element written once (max_pool_backward_local_rows).
    gather_rows<T>(
        g, batch, channels, 0,
        [&](int64_t n, int64_t lo, int64_t hi, T*) {
          if (!all.max_backward_local(g, channels, indices, dy, relu_y, dx, n, lo, hi))
            foreign.store(true, std::memory_order_relaxed);
        },
        int64_t(1) << 20);
    if (!foreign.load()) return true;
  }
  // Elsewhere the mask is applied first, in a pass of its own.
  std::vector<T> masked;
  if (relu_y) {
    masked.resize(size_t(batch * g.out_size() * channels));
    activation_backward(Activation::relu, T(0), relu_y, dy, masked.data(), int64_t(masked.size()));
    dy = masked.data();
  }
  if (!disjoint) {
    // Larger blocks than the recomputing backward's: a window across a block
    // boundary is visited by both blocks, and visits cost more than cache here.
    gather_rows<T>(
        g, batch, channels, 0,
        [&](int64_t n, int64_t lo, int64_t hi, T*) {
          if (!all.max_backward_indices(g, channels, indices, dy, dx, n, lo, hi))
            foreign.store(true, std::memory_order_relaxed);
        },
        int64_t(1) << 20);
    if (!foreign.load()) return true;
  }
  // An index outside its window (none from max_pool) can name an element of
  // another task's rows, so the gradient is scattered serially, in output order.
  const int64_t in_size = g.in_size(), out_size = g.out_size();
  std::fill_n(dx, batch * in_size * channels, T(0));
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t o = 0; o < out_size * channels; ++o) {
      const int64_t i = (n * out_size) * channels + o, at = indices[i];
      if (at < 0 || at >= in_size) return false;
      dx[(n * in_size + at) * channels + o % channels] += dy[i];
    }
  return true;
}

template <class T>
void avg_pool(const Geometry& g, int64_t batch, int64_t channels, const T* x, T* y) {
  forward(g, batch, channels, x, y, loops<T>().avg_rows);
}

template <class T>
void max_pool_backward(const Geometry& g, int64_t batch, int64_t channels, const T* x,
                       const T* dy, T* dx) {
  const auto loop = loops<T>().max_backward;
  gather_rows<T>(g, batch, channels, 2 * channels, [&](int64_t n, int64_t lo, int64_t hi, T* s) {
    loop(g, channels, x, dy, dx, n, lo, hi, s);
  });
}

template <class T>
void avg_pool_backward(const Geometry& g, int64_t batch, int64_t channels, const T* dy, T* dx) {
  const auto loop = loops<T>().avg_backward;
  gather_rows<T>(g, batch, channels, channels, [&](int64_t n, int64_t lo, int64_t hi, T* s) {
    loop(g, channels, dy, dx, n, lo, hi, s);
  });
}

template <class T>
void global_max_pool(const T* x, int64_t batch, int64_t positions, int64_t channels, T* y) {
  const auto loop = loops<T>().global_max;
  global_blocks(batch, positions, channels, [&](int64_t n, int64_t c0, int64_t c1, double*) {
    loop(x + n * positions * channels, positions, channels, c0, c1, y + n * channels);
  });
}

template <class T>
void global_avg_pool(const T* x, int64_t batch, int64_t positions, int64_t channels, T* y) {
  const auto loop = loops<T>().global_avg;
  global_blocks(batch, positions, channels, [&](int64_t n, int64_t c0, int64_t c1, double* acc) {
    loop(x + n * positions * channels, positions, channels, c0, c1, acc, y + n * channels);
  });
}

#define CNNKIT_INSTANTIATE_POOL(T)                                                             \
  template void max_pool<T>(const Geometry&, int64_t, int64_t, const T*, T*);                 \
  template void avg_pool<T>(const Geometry&, int64_t, int64_t, const T*, T*);                 \
  template void max_pool_with_indices<T>(const Geometry&, int64_t, int64_t, const T*, T*,     \
                                         int64_t*);                                           \
  template bool max_pool_backward_indices<T>(const Geometry&, int64_t, int64_t, const int64_t*, \
                                             const T*, T*, const T*);                         \
  template void max_pool_backward<T>(const Geometry&, int64_t, int64_t, const T*, const T*,   \
                                     T*);                                                     \
  template void avg_pool_backward<T>(const Geometry&, int64_t, int64_t, const T*, T*);        \
  template void global_max_pool<T>(const T*, int64_t, int64_t, int64_t, T*);                  \
  template void global_avg_pool<T>(const T*, int64_t, int64_t, int64_t, T*);
CNNKIT_INSTANTIATE_POOL(float)
CNNKIT_INSTANTIATE_POOL(double)
#undef CNNKIT_INSTANTIATE_POOL

}  // namespace cnnkit

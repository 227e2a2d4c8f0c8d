#include "layout.hpp"

#include <algorithm>

#include "parallel.hpp"

namespace cnnkit {

namespace {

// Positions [p0, p1) of one image of C channels (a compile-time count): each
// position's C values stored together, which the compiler turns into vector
// loads from the C planes and shuffles (an image's 3 channels: 0.042 ms ->
// 0.025 at 224 x 224, one thread, warm caches), where the general loop
// stores one value a plane's stride apart at a time.
template <int C, class T>
void few_channels(const T* __restrict image, int64_t positions, int64_t p0, int64_t p1,
                  T* __restrict out) {
  for (int64_t p = p0; p < p1; ++p)
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) out[p * C + c] = image[c * positions + p];
}

}  // namespace

template <class T>
void channels_last(const T* x, int64_t batch, int64_t channels, int64_t positions, T* y) {
  if (batch <= 0 || channels <= 0 || positions <= 0) return;
  // Blocks of positions whose rows (all channels) fill about 16 KiB, and
  // channels in bands of 64 so that wide inputs still read whole lines.
  constexpr int64_t kBand = 64;
  const int64_t block = std::clamp<int64_t>((int64_t(16) << 10) / (channels * int64_t(sizeof(T))),
                                            16, 4096);
  const int64_t blocks = (positions + block - 1) / block, tasks = batch * blocks;
  const int nt = static_cast<int>(
      std::min<int64_t>(tasks, threads_for(batch * channels * positions, int64_t(1) << 16)));
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t n = task / blocks, p0 = task % blocks * block;
    const int64_t p1 = std::min(positions, p0 + block);
    const T* image = x + n * channels * positions;
    T* out = y + n * positions * channels;
    if (channels == 3) {
      few_channels<3>(image, positions, p0, p1, out);
      continue;
    }
    for (int64_t c0 = 0; c0 < channels; c0 += kBand) {
      const int64_t c1 = std::min(channels, c0 + kBand);
      for (int64_t c = c0; c < c1; ++c) {
        const T* from = image + c * positions;
        for (int64_t p = p0; p < p1; ++p) out[p * channels + c] = from[p];
      }
    }
  }
}

template void channels_last<float>(const float*, int64_t, int64_t, int64_t, float*);
template void channels_last<double>(const double*, int64_t, int64_t, int64_t, double*);

}  // namespace cnnkit

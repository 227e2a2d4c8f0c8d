#include "windows.hpp"

#include <cstring>

#include "interrupt.hpp"
#include "parallel.hpp"

namespace cnnkit {

void sliding_windows(const WindowGrid& g, const unsigned char* src, unsigned char* dst) {
  const int64_t rows = g.rows(), cols = g.cols();
  const int64_t windows = g.batch * rows * cols;
  const int64_t line = g.window_w * g.pixel_bytes;  // one window row, contiguous in src and dst
  const int64_t crop = g.window_h * line;
  const int64_t image_line = g.width * g.pixel_bytes;
  // At least a megabyte per thread: a smaller copy is over before a team starts.
  const int threads = threads_for(windows * crop, 1 << 20);
  // Each window writes its own disjoint block of dst.
  const StopToken stop;
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
  for (int64_t w = 0; w < windows; ++w) {
    if (stop) continue;
    const int64_t n = w / (rows * cols), r = (w / cols) % rows, c = w % cols;
    const unsigned char* from =
        src + ((n * g.height + r * g.stride_h) * g.width + c * g.stride_w) * g.pixel_bytes;
    unsigned char* to = dst + w * crop;
    for (int64_t i = 0; i < g.window_h; ++i) std::memcpy(to + i * line, from + i * image_line, size_t(line));
  }
}

}  // namespace cnnkit

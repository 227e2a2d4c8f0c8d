#include "parallel.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <stdexcept>

namespace cnnkit {

namespace {
std::atomic<int> g_threads{std::max(1, omp_get_max_threads())};
}

int num_threads() noexcept { return g_threads.load(std::memory_order_relaxed); }

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("n must be a positive number of threads");
  g_threads.store(n, std::memory_order_relaxed);
}

int threads_for(int64_t work, int64_t min_work_per_thread) noexcept {
  const int64_t by_work = std::max<int64_t>(1, work / std::max<int64_t>(1, min_work_per_thread));
  return static_cast<int>(std::min<int64_t>(num_threads(), by_work));
}

}  // namespace cnnkit

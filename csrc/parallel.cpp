#include "parallel.hpp"

#include <omp.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>

namespace cnnkit {

namespace {
std::atomic<int> g_threads{std::max(1, omp_get_max_threads())};
std::atomic<bool> g_forked{false};

// GNU OpenMP's thread team survives fork() as bookkeeping without threads: the
// child's first parallel region of more than one thread waits for them forever.
// A forked child (a multiprocessing "fork" worker) therefore runs on one thread.
void on_fork_child() {
  g_forked.store(true);
  g_threads.store(1);
}
const int g_fork_handler = pthread_atfork(nullptr, nullptr, on_fork_child);
}  // namespace

int num_threads() noexcept { return g_threads.load(std::memory_order_relaxed); }

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("n must be a positive number of threads");
  if (n > 1 && g_forked.load())
    throw std::runtime_error(
        "set_num_threads(): this process was forked (os.fork, multiprocessing's \"fork\" "
        "start method), where GNU OpenMP cannot start threads, so cnnkit runs on 1 thread "
        "here; got n=" + std::to_string(n) +
        ". Start worker processes with the \"spawn\" or \"forkserver\" method for more");
  g_threads.store(n, std::memory_order_relaxed);
}

int threads_for(int64_t work, int64_t min_work_per_thread) noexcept {
  const int64_t by_work = std::max<int64_t>(1, work / std::max<int64_t>(1, min_work_per_thread));
  return static_cast<int>(std::min<int64_t>(num_threads(), by_work));
}

}  // namespace cnnkit

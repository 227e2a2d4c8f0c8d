// Thread count shared by every kernel. Kept here rather than in OpenMP's
// per-thread ICV so that a count set from one Python thread applies to calls
// made from any other.
#pragma once

#include <cstdint>

namespace cnnkit {

int num_threads() noexcept;
// n >= 1; throws std::invalid_argument otherwise, and std::runtime_error for
// n > 1 in a forked child (which runs on one thread, see parallel.cpp).
void set_num_threads(int n);
// Threads worth using for `work` units of roughly equal, small cost: tiny
// problems run on the calling thread, where a team start-up would dominate.
int threads_for(int64_t work, int64_t min_work_per_thread = 1 << 15) noexcept;

}  // namespace cnnkit

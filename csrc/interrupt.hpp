// Stopping a long kernel early (Ctrl-C). The bindings run kernels with the
// GIL released, so Python's SIGINT handler only sets a flag that no one reads
// until the kernel returns: a convolution or GEMM of a minute could not be
// interrupted. A binding therefore opens a KernelCall around the kernel,
// naming a poll (src/interrupt.hpp asks Python whether a signal handler
// raised), and kernels test a StopToken between tiles.
//
// Cost: testing a StopToken taken on a thread with no KernelCall (a call
// from C++) is a null pointer test; elsewhere it adds a relaxed atomic load.
// On the calling thread a countdown decides when to read the clock, adapted
// so that reads come about once a millisecond however fine the tiles are,
// and a poll happens once the call has run for `kPollInterval`, then once
// per interval: kernels shorter than that never poll. Once a poll says
// stop, every thread of the call skips its remaining tiles, the kernel
// returns with its outputs incomplete, and the binding raises instead of
// returning them.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace cnnkit {

class KernelCall {
 public:
  using Poll = bool (*)(void* context);  // true: stop the call
  static constexpr std::chrono::milliseconds kPollInterval{100};

  // Makes this call the calling thread's current one until destroyed. A null
  // poll never stops the call.
  KernelCall(Poll poll, void* context) noexcept;
  ~KernelCall();
  KernelCall(const KernelCall&) = delete;
  KernelCall& operator=(const KernelCall&) = delete;

  bool stopped() const noexcept { return stop_.load(std::memory_order_relaxed); }

 private:
  friend class StopToken;
  bool poll_if_due() noexcept;

  Poll poll_;
  void* context_;
  int64_t countdown_ = 1, stride_ = 1;
  std::chrono::steady_clock::time_point last_clock_, next_poll_;
  std::atomic<bool> stop_{false};
  KernelCall* outer_;
};

inline thread_local KernelCall* current_kernel_call = nullptr;

// Take one on the calling thread before a parallel region (it captures that
// thread's KernelCall) and test it in the region's loops:
//   const StopToken stop;
//   #pragma omp parallel for ...
//   for (...) { if (stop) continue; ... }
class StopToken {
 public:
  StopToken() noexcept : call_(current_kernel_call) {}
  explicit operator bool() const noexcept {
    if (call_ == nullptr) return false;
    if (call_->stopped()) return true;
    return current_kernel_call == call_ && call_->poll_if_due();
  }

 private:
  KernelCall* call_;
};

}  // namespace cnnkit

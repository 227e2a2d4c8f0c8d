#include "interrupt.hpp"

namespace cnnkit {

KernelCall::KernelCall(Poll poll, void* context) noexcept
    : poll_(poll),
      context_(context),
      last_clock_(std::chrono::steady_clock::now()),
      next_poll_(last_clock_ + kPollInterval),
      outer_(current_kernel_call) {
  current_kernel_call = this;
}

KernelCall::~KernelCall() { current_kernel_call = outer_; }

bool KernelCall::poll_if_due() noexcept {
  if (poll_ == nullptr || --countdown_ > 0) return false;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_clock_ < std::chrono::milliseconds(1))
    stride_ = stride_ < (int64_t(1) << 20) ? stride_ * 2 : stride_;
  else if (stride_ > 1)
    stride_ /= 2;
  countdown_ = stride_;
  last_clock_ = now;
  if (now < next_poll_) return false;
  next_poll_ = now + kPollInterval;
  if (!poll_(context_)) return false;
  stop_.store(true, std::memory_order_relaxed);
  return true;
}

}  // namespace cnnkit

// Running a kernel without the GIL, stoppable by Ctrl-C: the poll of
// csrc/interrupt.hpp, answered by Python's signal handlers.
#pragma once

#include <pybind11/pybind11.h>

#include <optional>

#include "interrupt.hpp"

namespace cnnkit::bind {

namespace py = pybind11;

// Set at import (module.cpp). Python runs signal handlers only on its main
// thread, so a kernel called from any other thread has nothing to poll.
inline unsigned long python_main_thread = 0;

// Calls kernel() with the GIL released. On the main thread, once the call
// has run for KernelCall::kPollInterval, it takes the GIL back briefly to run
// pending signal handlers; if one raises (KeyboardInterrupt for Ctrl-C), the
// kernel is stopped between tiles and that exception is raised here. The
// kernel's outputs are then incomplete, so callers must not return them:
// the exception propagates instead.
template <class Kernel>
void without_gil(Kernel&& kernel) {
  std::optional<py::error_already_set> raised;
  const auto poll = [](void* context) noexcept {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() == 0) return false;
    static_cast<std::optional<py::error_already_set>*>(context)->emplace();
    return true;
  };
  {
    const bool main = PyThread_get_thread_ident() == python_main_thread;
    KernelCall call(main ? +poll : nullptr, &raised);
    py::gil_scoped_release release;
    kernel();
  }
  if (raised) throw *raised;
}

}  // namespace cnnkit::bind

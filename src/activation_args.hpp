// The activation a GEMM-based kernel fuses into its output (csrc/gemm.hpp's
// Epilogue), as the bindings of conv and matmul take it.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

#include "gemm.hpp"
#include "validate.hpp"

namespace cnnkit::bind {

struct ActivationArg {
  Activation kind = Activation::none;
  double negative_slope = 0.2;
};

// activation: None, "linear", "relu", "leaky_relu", "sigmoid", "relu6" or
// "hard_swish" (forward only: see no_backward_of);
// negative_slope: a finite number >= 0 (leaky_relu's slope; with a negative
// slope the backward mask could not be read from the output's sign).
inline ActivationArg activation_arg(py::handle name, py::handle slope, const char* fn) {
  ActivationArg a;
  a.negative_slope = threshold_arg(slope, fn, "negative_slope");
  if (std::isinf(a.negative_slope))
    throw py::value_error(prefix(fn, "negative_slope") + "must be finite, got inf");
  if (name.is_none()) return a;
  const std::string s =
      str_arg(name, fn, "activation",
              "None or one of 'linear', 'relu', 'leaky_relu', 'sigmoid', 'relu6', "
              "'hard_swish'");
  if (s == "linear") return a;
  if (s == "relu")
    a.kind = Activation::relu;
  else if (s == "leaky_relu")
    a.kind = Activation::leaky_relu;
  else if (s == "sigmoid")
    a.kind = Activation::sigmoid;
  else if (s == "relu6")
    a.kind = Activation::relu6;
  else if (s == "hard_swish")
    a.kind = Activation::hard_swish;
  else
    throw py::value_error(prefix(fn, "activation") +
                          "must be None or one of 'linear', 'relu', 'leaky_relu', 'sigmoid', "
                          "'relu6', 'hard_swish', got '" + s + "'");
  return a;
}

// The backward kernels read the activation's derivative from its output y;
// hard_swish's cannot be (two inputs in [-3, 0] share an output).
inline void no_backward_of(const ActivationArg& a, const char* fn) {
  if (a.kind == Activation::hard_swish)
    throw py::value_error(prefix(fn, "activation") +
                          "cannot be 'hard_swish': its gradient cannot be read from its output y "
                          "(apply hard_swish as an op of its own to train through it)");
}

}  // namespace cnnkit::bind

// Bindings of local response normalization (csrc/lrn.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>
#include <vector>

#include "lrn.hpp"
#include "validate.hpp"

namespace cnnkit::bind {

namespace {

struct LrnArgs {
  int64_t size;
  double alpha, beta, bias;
};

LrnArgs lrn_args(py::handle size, py::handle alpha, py::handle beta, py::handle bias,
                 const char* fn) {
  LrnArgs a{int_arg(size, fn, "size", 1, int64_t(1) << 31), real_arg(alpha, fn, "alpha"),
            real_arg(beta, fn, "beta"), real_arg(bias, fn, "bias")};
  for (auto [name, v] : {std::pair{"alpha", a.alpha}, {"beta", a.beta}, {"bias", a.bias}})
    if (!std::isfinite(v))
      throw py::value_error(prefix(fn, name) + "must be finite, got " + std::to_string(v));
  return a;
}

py::array features(py::handle obj, const char* fn, const char* name) {
  py::array a = as_array(obj, fn, name);
  if (a.ndim() < 2)
    throw py::value_error(prefix(fn, name) + "must have shape (N, ..., C), got shape " +
                          shape_str(a));
  return a;
}

std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

py::object lrn(py::handle x_obj, py::handle size, py::handle alpha, py::handle beta,
               py::handle bias) {
  const char* fn = "lrn";
  const py::array raw = features(x_obj, fn, "x");
  const Float type = float_type(raw, fn, "x");
  const LrnArgs a = lrn_args(size, alpha, beta, bias, fn);
  return with_float(type, [&](auto tag) -> py::object {
    using T = decltype(tag);
    py::array_t<T> out(shape_of(raw));
    if (out.size() == 0) return out;
    const auto x = contiguous<T>(raw, fn, "x");
    const int64_t channels = raw.shape(raw.ndim() - 1);
    const int64_t rows = static_cast<int64_t>(out.size()) / channels;
    const T* px = x.data();
    T* o = out.mutable_data();
    py::gil_scoped_release release;
    cnnkit::lrn(px, rows, channels, a.size, a.alpha, a.beta, a.bias, o);
    return out;
  });
}

py::object lrn_backward(py::handle x_obj, py::handle dy_obj, py::handle size, py::handle alpha,
                        py::handle beta, py::handle bias) {
  const char* fn = "lrn_backward";
  const py::array raw = features(x_obj, fn, "x");
  const py::array dy_raw = as_array(dy_obj, fn, "dy");
  if (shape_of(dy_raw) != shape_of(raw))
    throw py::value_error(prefix(fn, "dy") + "must have the shape of x " + shape_str(raw) +
                          ", got shape " + shape_str(dy_raw));
  const Float type = wider(float_type(raw, fn, "x"), float_type(dy_raw, fn, "dy"));
  const LrnArgs a = lrn_args(size, alpha, beta, bias, fn);
  return with_float(type, [&](auto tag) -> py::object {
    using T = decltype(tag);
    py::array_t<T> out(shape_of(raw));
    if (out.size() == 0) return out;
    const auto x = contiguous<T>(raw, fn, "x");
    const auto dy = contiguous<T>(dy_raw, fn, "dy");
    const int64_t channels = raw.shape(raw.ndim() - 1);
    const int64_t rows = static_cast<int64_t>(out.size()) / channels;
    const T* px = x.data();
    const T* pg = dy.data();
    T* o = out.mutable_data();
    py::gil_scoped_release release;
    cnnkit::lrn_backward(px, pg, rows, channels, a.size, a.alpha, a.beta, a.bias, o);
    return out;
  });
}

}  // namespace

void bind_lrn(py::module_& m) {
  m.def("lrn", &lrn);
  m.def("lrn_backward", &lrn_backward);
}

}  // namespace cnnkit::bind

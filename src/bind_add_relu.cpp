// Binding of the fused residual add and ReLU (csrc/add_relu.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <vector>

#include "add_relu.hpp"
#include "validate.hpp"

namespace cnnkit::bind {

namespace {

py::object add_relu(py::handle a_obj, py::handle b_obj) {
  const char* fn = "add_relu";
  const py::array a_raw = as_array(a_obj, fn, "a");
  const py::array b_raw = as_array(b_obj, fn, "b");
  const Float type = wider(float_type(a_raw, fn, "a"), float_type(b_raw, fn, "b"));
  const std::vector<py::ssize_t> shape(a_raw.shape(), a_raw.shape() + a_raw.ndim());
  if (std::vector<py::ssize_t>(b_raw.shape(), b_raw.shape() + b_raw.ndim()) != shape)
    throw py::value_error(prefix(fn, "b") + "must have the shape of a " + shape_str(a_raw) +
                          ", got shape " + shape_str(b_raw));
  return with_float(type, [&](auto tag) -> py::object {
    using T = decltype(tag);
    py::array_t<T> out(shape);
    if (out.size() == 0) return out;
    const auto a = contiguous<T>(a_raw, fn, "a");
    const auto b = contiguous<T>(b_raw, fn, "b");
    const T* pa = a.data();
    const T* pb = b.data();
    T* o = out.mutable_data();
    const int64_t n = static_cast<int64_t>(out.size());
    py::gil_scoped_release release;
    cnnkit::add_relu(pa, pb, n, o);
    return out;
  });
}

}  // namespace

void bind_add_relu(py::module_& m) { m.def("add_relu", &add_relu); }

}  // namespace cnnkit::bind

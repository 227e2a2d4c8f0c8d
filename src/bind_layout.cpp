// Binding of the channels-first to channels-last copy (csrc/layout.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <vector>

#include "layout.hpp"
#include "validate.hpp"

namespace cnnkit::bind {

namespace {

py::object channels_last(py::handle x_obj) {
  const char* fn = "channels_last";
  const py::array raw = as_array(x_obj, fn, "x");
  if (raw.ndim() < 2)
    throw py::value_error(prefix(fn, "x") + "must have shape (N, C, ...), got shape " +
                          shape_str(raw));
  const Float type = float_type(raw, fn, "x");
  const int64_t batch = raw.shape(0), channels = raw.shape(1);
  int64_t positions = 1;
  std::vector<py::ssize_t> shape{raw.shape(0)};
  for (py::ssize_t d = 2; d < raw.ndim(); ++d) {
    positions *= raw.shape(d);
    shape.push_back(raw.shape(d));
  }
  shape.push_back(raw.shape(1));
  return with_float(type, [&](auto tag) -> py::object {
    using T = decltype(tag);
    py::array_t<T> out(shape);
    if (out.size() == 0) return out;
    const auto x = contiguous<T>(raw, fn, "x");
    const T* px = x.data();
    T* py_ = out.mutable_data();
    py::gil_scoped_release release;
    cnnkit::channels_last(px, batch, channels, positions, py_);
    return out;
  });
}

}  // namespace

void bind_layout(py::module_& m) { m.def("channels_last", &channels_last, py::arg("x")); }

}  // namespace cnnkit::bind

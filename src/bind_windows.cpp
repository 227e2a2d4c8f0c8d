// Binding of the sliding-window kernel (csrc/windows.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "spatial_args.hpp"
#include "validate.hpp"
#include "windows.hpp"
#include "without_gil.hpp"

namespace cnnkit::bind {

namespace {

py::array sliding_windows(py::handle images_obj, py::handle window_obj, py::handle stride_obj) {
  const char* fn = "sliding_windows";
  py::array raw = as_array(images_obj, fn, "images");
  if (raw.ndim() != 4)
    throw py::value_error(prefix(fn, "images") + "must have shape (N, H, W, C), got shape " +
                          shape_str(raw));
  const auto window = per_dim(window_obj, 2, fn, "window");
  const auto stride = per_dim(stride_obj, 2, fn, "stride");
  WindowGrid g;
  g.batch = raw.shape(0);
  g.height = raw.shape(1);
  g.width = raw.shape(2);
  g.window_h = window[0];
  g.window_w = window[1];
  g.stride_h = stride[0];
  g.stride_w = stride[1];
  if (g.window_h > g.height || g.window_w > g.width)
    throw py::value_error(prefix(fn, "window") + "must fit in the images, at most (" +
                          std::to_string(g.height) + ", " + std::to_string(g.width) + "), got (" +
                          std::to_string(g.window_h) + ", " + std::to_string(g.window_w) + ")");
  // Byte copies keep any dtype (and byte order) as it is.
  const py::array src = contiguous_as(raw, raw.dtype(), fn, "images");
  g.pixel_bytes = raw.shape(3) * static_cast<int64_t>(raw.itemsize());
  py::array out(raw.dtype(), std::vector<py::ssize_t>{g.batch, g.rows(), g.cols(), g.window_h,
                                                      g.window_w, raw.shape(3)});
  if (out.size() == 0) return out;  // at once, not one empty copy per window
  const auto* from = static_cast<const unsigned char*>(src.data());
  auto* to = static_cast<unsigned char*>(out.mutable_data());
  without_gil([&] { cnnkit::sliding_windows(g, from, to); });
  return out;
}

}  // namespace

void bind_windows(py::module_& m) { m.def("sliding_windows", &sliding_windows); }

}  // namespace cnnkit::bind

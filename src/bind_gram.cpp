// Bindings of the Gram-matrix kernels (csrc/gram.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "gram.hpp"
#include "validate.hpp"
#include "without_gil.hpp"

namespace cnnkit::bind {

namespace {

GramNorm normalize_arg(py::handle obj, const char* fn) {
  if (obj.is_none()) return GramNorm::none;
  if (!PyUnicode_Check(obj.ptr()))
    throw py::type_error(prefix(fn, "normalize") + "must be None or a str, got " + type_name(obj));
  const std::string s = str_arg(obj, fn, "normalize", "None, 'positions' or 'size'");
  if (s == "positions") return GramNorm::positions;
  if (s == "size") return GramNorm::size;
  throw py::value_error(prefix(fn, "normalize") + "must be None, 'positions' or 'size', got '" +
                        s + "'");
}

// Channels-last features (N, *spatial, C) seen as N matrices of
// positions x channels.
struct Features {
  py::array raw;
  Float type;
  int64_t batch, positions, channels;
};

Features features_arg(py::handle obj, const char* fn) {
  py::array a = as_array(obj, fn, "x");
  if (a.ndim() < 3 || a.ndim() > 5)
    throw py::value_error(prefix(fn, "x") +
                          "must have shape (N, *spatial, C) with 1 to 3 spatial dimensions, got "
                          "shape " + shape_str(a));
  const Float type = float_type(a, fn, "x");
  // The product of the spatial extents can overflow only when another extent
  // is 0, and then there is nothing to compute: count it as 0 positions.
  int64_t positions = a.size() == 0 ? 0 : 1;
  for (py::ssize_t d = 1; d + 1 < a.ndim() && positions; ++d) positions *= a.shape(d);
  return {a, type, a.shape(0), positions, a.shape(a.ndim() - 1)};
}

py::object gram(py::handle x_obj, py::handle norm_obj) {
  const char* fn = "gram";
  const GramNorm norm = normalize_arg(norm_obj, fn);
  const Features f = features_arg(x_obj, fn);
  return with_float(f.type, [&](auto tag) -> py::object {
    using T = decltype(tag);
    const auto x = contiguous<T>(f.raw, fn, "x");
    const auto c = static_cast<py::ssize_t>(f.channels);
    py::array_t<T> out({static_cast<py::ssize_t>(f.batch), c, c});
    if (out.size() == 0) return out;  // at once, whatever the other extents
    const T* px = x.data();
    T* o = out.mutable_data();
    without_gil([&] { cnnkit::gram(px, f.batch, f.positions, f.channels, norm, o); });
    return out;
  });
}

py::object gram_backward(py::handle x_obj, py::handle dg_obj, py::handle norm_obj) {
  const char* fn = "gram_backward";
  const GramNorm norm = normalize_arg(norm_obj, fn);
  const Features f = features_arg(x_obj, fn);
  const py::array dg_raw = as_array(dg_obj, fn, "dG");
  if (dg_raw.ndim() != 3 || dg_raw.shape(0) != f.batch || dg_raw.shape(1) != f.channels ||
      dg_raw.shape(2) != f.channels) {
    const std::string n = std::to_string(f.batch), c = std::to_string(f.channels);
    throw py::value_error(prefix(fn, "dG") + "must have shape (N, C, C) = (" + n + ", " + c +
                          ", " + c + ") to match x, got shape " + shape_str(dg_raw));
  }
  const Float type = wider(f.type, float_type(dg_raw, fn, "dG"));
  return with_float(type, [&](auto tag) -> py::object {
    using T = decltype(tag);
    const auto x = contiguous<T>(f.raw, fn, "x");
    const auto dg = contiguous<T>(dg_raw, fn, "dG");
    py::array_t<T> out(std::vector<py::ssize_t>(f.raw.shape(), f.raw.shape() + f.raw.ndim()));
    if (out.size() == 0) return out;
    const T* px = x.data();
    const T* pg = dg.data();
    T* o = out.mutable_data();
    without_gil([&] { cnnkit::gram_backward(px, pg, f.batch, f.positions, f.channels, norm, o); });
    return out;
  });
}

}  // namespace

void bind_gram(py::module_& m) {
  m.def("gram", &gram);
  m.def("gram_backward", &gram_backward);
}

}  // namespace cnnkit::bind

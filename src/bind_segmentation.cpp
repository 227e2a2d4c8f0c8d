// Binding of the segmentation kernels (csrc/segmentation.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>
#include <vector>

#include "segmentation.hpp"
#include "validate.hpp"

namespace cnnkit::bind {

namespace {

// (H, W) or (H, W, C) uint8 / float32 / float64, non-empty, finite; returned
// as float64 intensities the way skimage.util.img_as_float64 converts
// (uint8 times 1/255, floats as they are).
std::vector<double> image_arg(py::handle obj, const char* fn, int64_t& h, int64_t& w, int64_t& c) {
  py::array a = as_array(obj, fn, "image");
  if (a.ndim() != 2 && a.ndim() != 3)
    throw py::value_error(prefix(fn, "image") + "must have shape (H, W) or (H, W, C), got shape " +
                          shape_str(a));
  h = a.shape(0);
  w = a.shape(1);
  c = a.ndim() == 3 ? a.shape(2) : 1;
  const char kind = a.dtype().kind();
  const bool u8 = kind == 'u' && a.itemsize() == 1;
  if (!u8 && kind != 'f')
    throw py::type_error(prefix(fn, "image") + "must have dtype uint8, float32 or float64, got " +
                         std::string(py::str(a.dtype())));
  if (!u8) float_type(a, fn, "image");
  if (h == 0 || w == 0 || c == 0)
    throw py::value_error(prefix(fn, "image") + "must not be empty, got shape " + shape_str(a));
  if (h * w >= (int64_t(1) << 30))
    throw py::value_error(prefix(fn, "image") + "must have fewer than 2^30 pixels, got shape " +
                          shape_str(a));
  std::vector<double> out(size_t(h * w * c));
  if (u8) {
    const auto src = contiguous<uint8_t>(a);
    const uint8_t* p = src.data();
    const double unit = 1.0 / 255.0;
    for (size_t i = 0; i < out.size(); ++i) out[i] = double(p[i]) * unit;
  } else {
    const auto src = contiguous<double>(a);
    std::copy(src.data(), src.data() + out.size(), out.begin());
    for (size_t i = 0; i < out.size(); ++i)
      if (!std::isfinite(out[i]))
        throw py::value_error(prefix(fn, "image") + "must be finite, got " +
                              std::to_string(out[i]) + " at flat index " + std::to_string(i));
  }
  return out;
}

double positive_arg(py::handle obj, const char* fn, const char* name) {
  const double v = real_arg(obj, fn, name);
  if (!(v > 0.0) || !std::isfinite(v))
    throw py::value_error(prefix(fn, name) + "must be a positive finite number, got " +
                          std::string(py::str(py::float_(v))));
  return v;
}

// sigma: 0 (no smoothing) up to a bound that keeps the kernel small enough
// to allocate (radius 4 sigma).
double sigma_arg(py::handle obj, const char* fn) {
  const double v = real_arg(obj, fn, "sigma");
  if (!(v >= 0.0) || !(v <= 1000.0))
    throw py::value_error(prefix(fn, "sigma") + "must be a number in [0, 1000], got " +
                          std::string(py::str(py::float_(v))));
  return v;
}

int64_t min_size_arg(py::handle obj, const char* fn) {
  if (obj.is_none() || PyBool_Check(obj.ptr()) || PyFloat_Check(obj.ptr()) ||
      !PyIndex_Check(obj.ptr()))
    throw py::type_error(prefix(fn, "min_size") + "must be an int, got " + type_name(obj));
  const py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(obj.ptr()));
  if (!index) throw py::error_already_set();
  int overflow = 0;
  long long v = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
  if (overflow > 0) v = INT64_MAX;  // larger than any image: one segment
  if (overflow < 0) v = INT64_MIN;
  if (v < 1) throw py::value_error(prefix(fn, "min_size") + "must be >= 1, got " + std::string(py::str(obj)));
  return v;
}

py::array_t<int64_t> felzenszwalb(py::handle image_obj, py::handle scale_obj, py::handle sigma_obj,
                                  py::handle min_size_obj) {
  const char* fn = "felzenszwalb";
  FelzenszwalbParams params;
  params.scale = positive_arg(scale_obj, fn, "scale");
  params.sigma = sigma_arg(sigma_obj, fn);
  params.min_size = min_size_arg(min_size_obj, fn);
  int64_t h, w, c;
  const std::vector<double> image = image_arg(image_obj, fn, h, w, c);
  py::array_t<int64_t> labels(std::vector<py::ssize_t>{h, w});
  int64_t* out = labels.mutable_data();
  {
    py::gil_scoped_release release;
    cnnkit::felzenszwalb(image.data(), h, w, c, params, out);
  }
  return labels;
}

}  // namespace

void bind_segmentation(py::module_& m) { m.def("felzenszwalb", &felzenszwalb); }

}  // namespace cnnkit::bind

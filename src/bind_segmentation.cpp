// Binding of the segmentation kernels (csrc/segmentation.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "segmentation.hpp"
#include "validate.hpp"
#include "without_gil.hpp"

namespace cnnkit::bind {

namespace {

// (H, W) or (H, W, C) uint8 / float32 / float64, non-empty, finite: kept as
// it comes (C-contiguous, native order; a copy only when it is not), since
// the kernel converts rows to float64 as it reads them.
struct ImageArg {
  py::array array;
  PixelType type;
  int64_t h, w, c;
};

ImageArg image_arg(py::handle obj, const char* fn) {
  py::array a = as_array(obj, fn, "image");
  if (a.ndim() != 2 && a.ndim() != 3)
    throw py::value_error(prefix(fn, "image") + "must have shape (H, W) or (H, W, C), got shape " +
                          shape_str(a));
  const int64_t h = a.shape(0), w = a.shape(1), c = a.ndim() == 3 ? a.shape(2) : 1;
  const char kind = a.dtype().kind();
  const bool u8 = kind == 'u' && a.itemsize() == 1;
  if (!u8 && kind != 'f')
    throw py::type_error(prefix(fn, "image") + "must have dtype uint8, float32 or float64, got " +
                         std::string(py::str(a.dtype())));
  const Float precision = u8 ? Float::f64 : float_type(a, fn, "image");
  if (h == 0 || w == 0 || c == 0)
    throw py::value_error(prefix(fn, "image") + "must not be empty, got shape " + shape_str(a));
  if (h * w >= (int64_t(1) << 30))
    throw py::value_error(prefix(fn, "image") + "must have fewer than 2^30 pixels, got shape " +
                          shape_str(a));
  if (u8) return {contiguous<uint8_t>(a, fn, "image"), PixelType::u8, h, w, c};
  auto finite = [&](const auto* p) {
    for (int64_t i = 0; i < h * w * c; ++i)
      if (!std::isfinite(p[i]))
        throw py::value_error(prefix(fn, "image") + "must be finite, got " +
                              std::to_string(double(p[i])) + " at flat index " +
                              std::to_string(i));
  };
  if (precision == Float::f32) {
    auto f = contiguous<float>(a, fn, "image");
    finite(f.data());
    return {f, PixelType::f32, h, w, c};
  }
  auto d = contiguous<double>(a, fn, "image");
  finite(d.data());
  return {d, PixelType::f64, h, w, c};
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
  if (v < 1)
    throw py::value_error(prefix(fn, "min_size") + "must be >= 1, got " +
                          std::string(py::str(obj)));
  return v;
}

py::array_t<int64_t> felzenszwalb(py::handle image_obj, py::handle scale_obj, py::handle sigma_obj,
                                  py::handle min_size_obj) {
  const char* fn = "felzenszwalb";
  FelzenszwalbParams params;
  params.scale = positive_arg(scale_obj, fn, "scale");
  params.sigma = sigma_arg(sigma_obj, fn);
  params.min_size = min_size_arg(min_size_obj, fn);
  const ImageArg image = image_arg(image_obj, fn);
  py::array_t<int64_t> labels(std::vector<py::ssize_t>{image.h, image.w});
  int64_t* out = labels.mutable_data();
  const void* pixels = image.array.data();
  without_gil([&] {
    cnnkit::felzenszwalb(pixels, image.type, image.h, image.w, image.c, params, out);
  });
  return labels;
}

// A (H, W, C) uint8 array of bins below `bins`, matching the labels' (H, W).
py::array_t<uint8_t, py::array::c_style> bins_arg(py::handle obj, const char* fn, const char* name,
                                                  int64_t h, int64_t w, int bins) {
  py::array a = as_array(obj, fn, name);
  if (a.dtype().kind() != 'u' || a.itemsize() != 1)
    throw py::type_error(prefix(fn, name) + "must have dtype uint8, got " +
                         std::string(py::str(a.dtype())));
  if (a.ndim() != 3 || a.shape(0) != h || a.shape(1) != w)
    throw py::value_error(prefix(fn, name) + "must have shape (" + std::to_string(h) + ", " +
                          std::to_string(w) + ", C) to match labels, got shape " + shape_str(a));
  auto out = contiguous<uint8_t>(a, fn, name);
  const uint8_t* p = out.data();
  const uint8_t top = out.size() ? *std::max_element(p, p + out.size()) : 0;
  if (top >= bins)
    throw py::value_error(prefix(fn, name) + "must hold bins below " + std::to_string(bins) +
                          ", got " + std::to_string(int(top)));
  return out;
}

// The arguments of a grouping, checked; the arrays they point into are kept
// alive by the struct.
struct GroupingArgs {
  py::array_t<int64_t, py::array::c_style> labels;
  py::array_t<uint8_t, py::array::c_style> colour, texture;
  GroupingInput in;
};

GroupingArgs grouping_args(py::handle labels_obj, py::handle colour_obj, py::handle texture_obj,
                           const char* fn) {
  py::array raw = as_array(labels_obj, fn, "labels");
  if (raw.dtype().kind() != 'i' || raw.itemsize() != 8)
    throw py::type_error(prefix(fn, "labels") + "must have dtype int64, got " +
                         std::string(py::str(raw.dtype())));
  if (raw.ndim() != 2 || raw.shape(0) == 0 || raw.shape(1) == 0)
    throw py::value_error(prefix(fn, "labels") + "must have a non-empty shape (H, W), got shape " +
                          shape_str(raw));
  GroupingArgs out;
  out.labels = contiguous<int64_t>(raw, fn, "labels");
  const int64_t h = raw.shape(0), w = raw.shape(1);
  if (h * w >= (int64_t(1) << 30))
    throw py::value_error(prefix(fn, "labels") + "must have fewer than 2^30 pixels");
  out.colour = bins_arg(colour_obj, fn, "colour_bins", h, w, kColourBins);
  out.texture = bins_arg(texture_obj, fn, "texture_bins", h, w, kTextureBins);
  const int64_t* lp = out.labels.data();
  const auto range = std::minmax_element(lp, lp + h * w);
  const int64_t regions = *range.second + 1;
  if (*range.first < 0 || regions > h * w)
    throw py::value_error(prefix(fn, "labels") + "must hold labels in [0, H * W)");
  GroupingInput& in = out.in;
  in.height = h;
  in.width = w;
  in.labels = lp;
  in.regions = regions;
  in.colour_bins = out.colour.data();
  in.colour_channels = out.colour.shape(2);
  in.texture_bins = out.texture.data();
  in.texture_channels = out.texture.shape(2);
  return out;
}

py::array_t<float> boxes_array(const std::vector<int64_t>& boxes, int64_t count) {
  py::array_t<float> out(std::vector<py::ssize_t>{count, 4});
  float* o = out.mutable_data();
  for (int64_t i = 0; i < 4 * count; ++i) o[i] = float(boxes[size_t(i)]);
  return out;
}

// The grouping of one segmentation under one strategy; cnnkit.ops.selective_search
// prepares the bins and ranks the boxes.
py::array_t<float> group_regions(py::handle labels_obj, py::handle colour_obj,
                                 py::handle texture_obj, bool colour, bool texture, bool size,
                                 bool fill) {
  const char* fn = "group_regions";
  GroupingArgs args = grouping_args(labels_obj, colour_obj, texture_obj, fn);
  args.in.colour = colour;
  args.in.texture = texture;
  args.in.size = size;
  args.in.fill = fill;
  std::vector<int64_t> boxes;
  int64_t count = 0;
  try {
    without_gil([&] { count = cnnkit::group_regions(args.in, boxes); });
  } catch (const std::invalid_argument& e) {
    throw py::value_error(prefix(fn, "labels") + e.what());
  }
  return boxes_array(boxes, count);
}

// The grouping of one segmentation under several strategies, each a string of the
// terms it sums ("CTSF": colour, texture, size, fill): one box array per strategy,
// each as group_regions gives it, with the initial regions built once.
py::list group_regions_many(py::handle labels_obj, py::handle colour_obj, py::handle texture_obj,
                            py::handle strategies_obj) {
  const char* fn = "group_regions_many";
  if (!py::isinstance<py::sequence>(strategies_obj) || py::isinstance<py::str>(strategies_obj))
    throw py::type_error(prefix(fn, "strategies") + "must be a sequence of str, got " +
                         type_name(strategies_obj));
  std::vector<GroupingStrategy> strategies;
  for (py::handle item : py::reinterpret_borrow<py::sequence>(strategies_obj)) {
    if (!py::isinstance<py::str>(item))
      throw py::type_error(prefix(fn, "strategies") + "must hold str, got " + type_name(item));
    const std::string terms = py::str(item);
    if (terms.find_first_not_of("CTSF") != std::string::npos)
      throw py::value_error(prefix(fn, "strategies") +
                            "must hold strings of the letters C, T, S and F, got '" + terms +
                            "'");
    auto has = [&](char t) { return terms.find(t) != std::string::npos; };
    strategies.push_back({has('C'), has('T'), has('S'), has('F')});
  }
  GroupingArgs args = grouping_args(labels_obj, colour_obj, texture_obj, fn);
  std::vector<std::vector<int64_t>> boxes;
  std::vector<int64_t> counts;
  try {
    without_gil([&] { counts = cnnkit::group_regions(args.in, strategies, boxes); });
  } catch (const std::invalid_argument& e) {
    throw py::value_error(prefix(fn, "labels") + e.what());
  }
  py::list out;
  for (size_t i = 0; i < strategies.size(); ++i) out.append(boxes_array(boxes[i], counts[i]));
  return out;
}

// A (H, W, C) float64 image of selective search's features, C >= 1, not empty.
py::array_t<double, py::array::c_style> feature_image_arg(py::handle obj, const char* fn,
                                                          int64_t channels) {
  py::array a = as_array(obj, fn, "image");
  if (a.dtype().kind() != 'f' || a.itemsize() != 8)
    throw py::type_error(prefix(fn, "image") + "must have dtype float64, got " +
                         std::string(py::str(a.dtype())));
  if (a.ndim() != 3 || a.shape(0) == 0 || a.shape(1) == 0 || a.shape(2) == 0 ||
      (channels > 0 && a.shape(2) != channels))
    throw py::value_error(prefix(fn, "image") + "must have a non-empty shape (H, W, " +
                          (channels > 0 ? std::to_string(channels) : std::string("C")) +
                          "), got shape " + shape_str(a));
  return contiguous<double>(a, fn, "image");
}

// HSV of an RGB image in [0, 1], as cnnkit._proposals.colour_space(rgb, "hsv").
py::array_t<double> hsv_image(py::handle image_obj) {
  const auto rgb = feature_image_arg(image_obj, "hsv_image", 3);
  py::array_t<double> out(std::vector<py::ssize_t>{rgb.shape(0), rgb.shape(1), 3});
  const double* in = rgb.data();
  double* o = out.mutable_data();
  const int64_t pixels = rgb.shape(0) * rgb.shape(1);
  without_gil([&] { cnnkit::hsv_image(in, pixels, o); });
  return out;
}

// The texture bins of cnnkit._proposals.texture_bins: (H, W, C * 8) uint8.
py::array_t<uint8_t> texture_bins(py::handle image_obj) {
  const auto x = feature_image_arg(image_obj, "texture_bins", 0);
  const int64_t h = x.shape(0), w = x.shape(1), c = x.shape(2);
  py::array_t<uint8_t> out(std::vector<py::ssize_t>{h, w, c * kTextureOrientations});
  const double* in = x.data();
  uint8_t* o = out.mutable_data();
  without_gil([&] { cnnkit::texture_bins(in, h, w, c, o); });
  return out;
}

}  // namespace

void bind_segmentation(py::module_& m) {
  m.def("felzenszwalb", &felzenszwalb);
  m.def("group_regions", &group_regions);
  m.def("group_regions_many", &group_regions_many);
  m.def("hsv_image", &hsv_image);
  m.def("texture_bins", &texture_bins);
}

}  // namespace cnnkit::bind

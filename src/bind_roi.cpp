// Bindings of the region kernels (csrc/roi.hpp): roi_align, roi_pool, their
// backward passes, and masks_to_boxes. cnnkit.ops turns a list of per-image
// boxes into the (K, 5) rows these take.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <climits>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>

#include "roi.hpp"
#include "spatial_args.hpp"
#include "validate.hpp"
#include "without_gil.hpp"

namespace cnnkit::bind {

namespace {

// Beyond these, the kernels' integer casts would overflow (roi_pool) or one
// call would take hours (roi_align's adaptive sampling grid).
constexpr int64_t kMaxPoolCoordinate = int64_t(1) << 30;
constexpr int64_t kMaxAlignSamples = int64_t(1) << 26;

// x: a float (N, H, W, C) feature map with H, W >= 1.
py::array feature_map(py::handle obj, const char* fn) {
  py::array x = as_array(obj, fn, "x");
  if (x.ndim() != 4)
    throw py::value_error(prefix(fn, "x") +
                          "must have shape (N, H, W, C) (channels-last: torchvision's (N, C, H, W) "
                          "transposed), got shape " + shape_str(x));
  float_type(x, fn, "x");
  if (x.shape(1) < 1 || x.shape(2) < 1)
    throw py::value_error(prefix(fn, "x") + "must have a height and width >= 1, got shape " +
                          shape_str(x));
  return x;
}

RoiGeometry roi_geometry(const py::array& x, py::handle size_obj, py::handle scale_obj,
                         const char* fn) {
  RoiGeometry g;
  g.batch = x.shape(0);
  g.height = x.shape(1);
  g.width = x.shape(2);
  g.channels = x.shape(3);
  const auto size = per_dim(size_obj, 2, fn, "output_size");
  g.pooled_h = size[0];
  g.pooled_w = size[1];
  g.spatial_scale = real_arg(scale_obj, fn, "spatial_scale");
  if (!(g.spatial_scale > 0) || !std::isfinite(g.spatial_scale)) {
    std::ostringstream os;
    os << prefix(fn, "spatial_scale") << "must be a finite number > 0, got " << g.spatial_scale;
    throw py::value_error(os.str());
  }
  return g;
}

// The (K, 5) rows [batch_index, x1, y1, x2, y2] as a contiguous T array:
// finite, with whole batch indices in [0, N).
template <class T>
py::array_t<T, py::array::c_style> rois_arg(py::handle obj, const RoiGeometry& g,
                                            const char* fn) {
  py::array raw = as_array(obj, fn, "boxes");
  if (raw.ndim() == 1 && raw.size() == 0) raw = raw.attr("reshape")(0, 5);
  if (raw.ndim() != 2 || raw.shape(1) != 5)
    throw py::value_error(prefix(fn, "boxes") +
                          "must have shape (K, 5), rows [batch_index, x1, y1, x2, y2], or be a "
                          "list of (K_i, 4) arrays, got shape " + shape_str(raw));
  const char kind = raw.dtype().kind();
  if (kind != 'i' && kind != 'u' && kind != 'f')
    throw py::type_error(prefix(fn, "boxes") + "must hold real numbers, got dtype " +
                         std::string(py::str(raw.dtype())));
  auto rois = contiguous<T>(raw, fn, "boxes");
  const T* p = rois.data();
  for (int64_t r = 0; r < rois.shape(0); ++r) {
    for (int j = 0; j < 5; ++j)
      if (!std::isfinite(p[5 * r + j]))
        throw py::value_error(prefix(fn, "boxes") + "must be finite, got " + row_str(p + 5 * r + 1) +
                              " with batch index " + std::to_string(double(p[5 * r])) +
                              " in row " + std::to_string(r));
    const double b = p[5 * r];
    if (b != std::floor(b) || b < 0 || b >= double(g.batch)) {
      std::ostringstream os;
      os << prefix(fn, "boxes") << "must have whole batch indices in [0, " << g.batch
         << ") (the first column; x has " << g.batch << " images), got " << b << " in row " << r;
      throw py::value_error(os.str());
    }
  }
  return rois;
}

int sampling_arg(py::handle obj, const char* fn) {
  if (PyBool_Check(obj.ptr()) || !PyIndex_Check(obj.ptr()))
    throw py::type_error(prefix(fn, "sampling_ratio") + "must be an int, got " + type_name(obj));
  PyObject* index = PyNumber_Index(obj.ptr());
  if (!index) throw py::error_already_set();
  const py::object v = py::reinterpret_steal<py::object>(index);
  const long long s = PyLong_AsLongLong(v.ptr());
  if (PyErr_Occurred() || s > 1 << 20 || s < -(1 << 20)) {
    PyErr_Clear();
    throw py::value_error(prefix(fn, "sampling_ratio") +
                          "must be between -1048576 and 1048576 (<= 0: adaptive), got " +
                          std::string(py::str(v)));
  }
  return static_cast<int>(s);
}

bool aligned_arg(py::handle obj, const char* fn) {
  if (!PyBool_Check(obj.ptr()) && !py::isinstance(obj, py::module_::import("numpy").attr("bool_")))
    throw py::type_error(prefix(fn, "aligned") + "must be a bool, got " + type_name(obj));
  return PyObject_IsTrue(obj.ptr()) == 1;
}

template <class T>
void check_align_samples(const RoiGeometry& g, const T* rois, int64_t k, int sampling_ratio,
                         bool aligned, const char* fn) {
  for (int64_t r = 0; r < k; ++r) {
    const double n = roi_align_samples(g, rois + 5 * r, sampling_ratio, aligned);
    if (!(n <= double(kMaxAlignSamples))) {
      std::ostringstream os;
      os << prefix(fn, "boxes") << "row " << r << " " << row_str(rois + 5 * r + 1)
         << " needs " << n << " bilinear samples at sampling_ratio=" << sampling_ratio
         << ", more than " << kMaxAlignSamples
         << "; clip the boxes to the image or pass a positive sampling_ratio";
      throw py::value_error(os.str());
    }
  }
}

template <class T>
void check_pool_coordinates(const RoiGeometry& g, const T* rois, int64_t k, const char* fn) {
  for (int64_t r = 0; r < k; ++r)
    for (int j = 1; j < 5; ++j)
      if (!(std::fabs(double(rois[5 * r + j]) * g.spatial_scale) <= double(kMaxPoolCoordinate))) {
        std::ostringstream os;
        os << prefix(fn, "boxes") << "must lie within +-" << kMaxPoolCoordinate
           << " after multiplying by spatial_scale, got " << row_str(rois + 5 * r + 1)
           << " in row " << r;
        throw py::value_error(os.str());
      }
}

std::vector<py::ssize_t> pooled_shape(const RoiGeometry& g, int64_t k) {
  return {static_cast<py::ssize_t>(k), static_cast<py::ssize_t>(g.pooled_h),
          static_cast<py::ssize_t>(g.pooled_w), static_cast<py::ssize_t>(g.channels)};
}

// dy must have the output's shape.
py::array dy_arg(py::handle obj, const RoiGeometry& g, int64_t k, const char* fn) {
  py::array dy = as_array(obj, fn, "dy");
  float_type(dy, fn, "dy");
  const auto want = pooled_shape(g, k);
  bool same = dy.ndim() == 4;
  for (int d = 0; same && d < 4; ++d) same = dy.shape(d) == want[size_t(d)];
  if (!same) {
    std::string s = "(";
    for (size_t d = 0; d < 4; ++d) s += (d ? ", " : "") + std::to_string(want[d]);
    throw py::value_error(prefix(fn, "dy") + "must have the output's shape " + s +
                          "), got shape " + shape_str(dy));
  }
  return dy;
}

enum class Kind { align, pool };

auto roi_forward(Kind kind, const char* fn) {
  return [kind, fn](py::handle x_obj, py::handle rois_obj, py::handle size_obj,
                    py::handle scale_obj, py::handle sampling_obj,
                    py::handle aligned_obj) -> py::object {
    const py::array raw = feature_map(x_obj, fn);
    const RoiGeometry g = roi_geometry(raw, size_obj, scale_obj, fn);
    const int sampling = kind == Kind::align ? sampling_arg(sampling_obj, fn) : 0;
    const bool aligned = kind == Kind::align ? aligned_arg(aligned_obj, fn) : false;
    return with_float(float_type(raw, fn, "x"), [&](auto tag) -> py::object {
      using T = decltype(tag);
      const auto rois = rois_arg<T>(rois_obj, g, fn);
      const int64_t k = rois.shape(0);
      if (kind == Kind::align)
        check_align_samples(g, rois.data(), k, sampling, aligned, fn);
      else
        check_pool_coordinates(g, rois.data(), k, fn);
      const auto x = contiguous<T>(raw, fn, "x");
      py::array_t<T> y = new_output<T>(pooled_shape(g, k), fn);
      const T *px = x.data(), *pr = rois.data();
      T* py_ = y.mutable_data();
      without_gil([&] {
        if (kind == Kind::align)
          cnnkit::roi_align(g, px, pr, k, sampling, aligned, py_);
        else
          cnnkit::roi_pool(g, px, pr, k, py_);
      });
      return y;
    });
  };
}

auto roi_backward(Kind kind, const char* fn) {
  return [kind, fn](py::handle x_obj, py::handle rois_obj, py::handle dy_obj,
                    py::handle size_obj, py::handle scale_obj, py::handle sampling_obj,
                    py::handle aligned_obj) -> py::object {
    const py::array raw = feature_map(x_obj, fn);
    const RoiGeometry g = roi_geometry(raw, size_obj, scale_obj, fn);
    const int sampling = kind == Kind::align ? sampling_arg(sampling_obj, fn) : 0;
    const bool aligned = kind == Kind::align ? aligned_arg(aligned_obj, fn) : false;
    // roi_pool_backward keeps float32 cell indices in 32 bits (csrc/roi.cpp).
    if (kind == Kind::pool && float_type(raw, fn, "x") == Float::f32 &&
        g.height * g.width > int64_t(INT32_MAX))
      throw py::value_error(prefix(fn, "x") + "must have fewer than 2^31 pixels per image in "
                            "float32 (pass float64), got shape " + shape_str(raw));
    // dx has x's dtype (dy is converted): the geometry must be computed in the
    // dtype the forward pass used.
    return with_float(float_type(raw, fn, "x"), [&](auto tag) -> py::object {
      using T = decltype(tag);
      const auto rois = rois_arg<T>(rois_obj, g, fn);
      const int64_t k = rois.shape(0);
      const py::array dy_raw = dy_arg(dy_obj, g, k, fn);
      if (kind == Kind::align)
        check_align_samples(g, rois.data(), k, sampling, aligned, fn);
      else
        check_pool_coordinates(g, rois.data(), k, fn);
      const auto x = contiguous<T>(raw, fn, "x");
      const auto dy = contiguous<T>(dy_raw, fn, "dy");
      py::array_t<T> dx({static_cast<py::ssize_t>(g.batch), static_cast<py::ssize_t>(g.height),
                         static_cast<py::ssize_t>(g.width), static_cast<py::ssize_t>(g.channels)});
      const T *px = x.data(), *pdy = dy.data(), *pr = rois.data();
      T* pdx = dx.mutable_data();
      without_gil([&] {
        if (kind == Kind::align)
          cnnkit::roi_align_backward(g, pdy, pr, k, sampling, aligned, pdx);
        else
          cnnkit::roi_pool_backward(g, px, pdy, pr, k, pdx);
      });
      return dx;
    });
  };
}

py::object masks_to_boxes(py::handle masks_obj) {
  const char* fn = "masks_to_boxes";
  py::array raw = as_array(masks_obj, fn, "masks");
  if (raw.ndim() != 3)
    throw py::value_error(prefix(fn, "masks") + "must have shape (N, H, W), got shape " +
                          shape_str(raw));
  if (raw.dtype().kind() == 'c')
    throw py::type_error(prefix(fn, "masks") + "must hold real numbers or bools, got dtype " +
                         std::string(py::str(raw.dtype())));
  // Nonzero (NaN included) is inside, as torch.where(mask != 0) counts it. One-byte
  // masks (bool, uint8, int8) are read as they are: the kernel tests bytes for nonzero.
  const char kind = raw.dtype().kind();
  const bool bytes = raw.itemsize() == 1 && (kind == 'b' || kind == 'u' || kind == 'i');
  const py::array nonzero =
      bytes ? py::array(raw.attr("view")(py::dtype::of<uint8_t>()))
            : py::array(py::module_::import("numpy").attr("not_equal")(raw, 0));
  const auto m = contiguous<uint8_t>(nonzero, fn, "masks");
  const int64_t n = raw.shape(0), h = raw.shape(1), w = raw.shape(2);
  py::array_t<float> boxes({static_cast<py::ssize_t>(n), py::ssize_t(4)});
  const uint8_t* pm = m.data();
  float* pb = boxes.mutable_data();
  without_gil([&] { cnnkit::masks_to_boxes(pm, n, h, w, pb); });
  return boxes;
}

}  // namespace

void bind_roi(py::module_& m) {
  m.def("roi_align", roi_forward(Kind::align, "roi_align"));
  m.def("roi_pool", roi_forward(Kind::pool, "roi_pool"));
  m.def("roi_align_backward", roi_backward(Kind::align, "roi_align_backward"));
  m.def("roi_pool_backward", roi_backward(Kind::pool, "roi_pool_backward"));
  m.def("masks_to_boxes", &masks_to_boxes);
}

}  // namespace cnnkit::bind

// Bindings of the YOLO target and anchor kernels (csrc/anchors.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "anchors.hpp"
#include "spatial_args.hpp"
#include "validate.hpp"
#include "without_gil.hpp"

namespace cnnkit::bind {

namespace {

std::string num_str(double v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}

// A positive, finite real number (bounded so that products of two stay finite).
double positive_real(py::handle obj, const char* fn, const char* name) {
  const double v = real_arg(obj, fn, name);
  const double limit = max_box_coordinate<double>();
  if (!(v > 0 && v <= limit))
    throw py::value_error(prefix(fn, name) + "must be positive and finite (at most " +
                          num_str(limit) + "), got " + num_str(v));
  return v;
}

// image_size: a number, or a (height, width) pair of numbers.
std::array<double, 2> image_size_arg(py::handle obj, const char* fn) {
  const bool vector =
      py::isinstance<py::array>(obj) && py::reinterpret_borrow<py::array>(obj).ndim() == 1;
  if (py::isinstance<py::tuple>(obj) || py::isinstance<py::list>(obj) || vector) {
    const py::sequence seq = vector ? py::sequence(obj.attr("tolist")())
                                    : py::reinterpret_borrow<py::sequence>(obj);
    if (seq.size() != 2)
      throw py::value_error(prefix(fn, "image_size") + "must be a number or a (height, width) "
                            "pair, got " + std::to_string(seq.size()) + " entries");
    return {positive_real(seq[0], fn, "image_size"), positive_real(seq[1], fn, "image_size")};
  }
  if (py::isinstance<py::array>(obj) && py::reinterpret_borrow<py::array>(obj).ndim() != 0)
    throw py::value_error(prefix(fn, "image_size") +
                          "must be a number or a (height, width) pair, got an array of shape " +
                          shape_str(py::reinterpret_borrow<py::array>(obj)));
  const double v = positive_real(obj, fn, "image_size");
  return {v, v};
}

// anchors: (A, 2) rows of (width, height), positive and finite.
std::vector<double> anchors_arg(py::handle obj, const char* fn, int64_t expected_rows = -1,
                                const char* matches = "") {
  const py::array a = as_array(obj, fn, "anchors");
  if (a.dtype().kind() == 'c' || a.dtype().kind() == 'b')
    throw py::type_error(prefix(fn, "anchors") + "must hold real numbers, got dtype " +
                         std::string(py::str(a.dtype())));
  if (a.ndim() != 2 || a.shape(1) != 2 || a.shape(0) < 1)
    throw py::value_error(prefix(fn, "anchors") +
                          "must have shape (A, 2) with A >= 1 rows of (width, height), got shape " +
                          shape_str(a));
  if (expected_rows >= 0 && a.shape(0) != expected_rows)
    throw py::value_error(prefix(fn, "anchors") + "must have " + std::to_string(expected_rows) +
                          " rows to match " + matches + ", got shape " + shape_str(a));
  const auto c = contiguous<double>(a, fn, "anchors");
  const double limit = max_box_coordinate<double>();
  std::vector<double> v(c.data(), c.data() + c.size());
  for (size_t i = 0; i < v.size(); ++i)
    if (!(v[i] > 0 && v[i] <= limit))
      throw py::value_error(prefix(fn, "anchors") + "must hold positive, finite widths and "
                            "heights, got " + num_str(v[i]) + " in row " + std::to_string(i / 2));
  return v;
}

// A Python or NumPy integer in [minimum, 2**40]: counts that size arrays.
int64_t count_int_arg(py::handle obj, const char* fn, const char* name, int64_t minimum) {
  return int_arg(obj, fn, name, minimum, int64_t(1) << 40);
}

// classes: (K,) integers in [0, num_classes) as int64; an empty array of any
// numeric dtype is accepted when K == 0 (np.asarray([]) is float64).
std::vector<int64_t> classes_arg(py::handle obj, int64_t k, int64_t num_classes, const char* fn,
                                 const std::string& name, const std::string& matches) {
  const py::array a = as_array(obj, fn, name.c_str());
  if (a.ndim() != 1 || a.shape(0) != k)
    throw py::value_error(prefix(fn, name.c_str()) + "must have shape (" + std::to_string(k) +
                          ",) to match " + matches + ", got shape " + shape_str(a));
  const char kind = a.dtype().kind();
  if (k > 0 && kind != 'i' && kind != 'u')
    throw py::type_error(prefix(fn, name.c_str()) + "must hold integer class ids, got dtype " +
                         std::string(py::str(a.dtype())));
  if (k == 0) return {};
  // Unsigned ids beyond int64 would wrap: compare them unconverted first.
  if (kind == 'u' && a.itemsize() == 8) {
    const auto u = contiguous<uint64_t>(a, fn, name.c_str());
    for (int64_t i = 0; i < k; ++i)
      if (u.data()[i] >= static_cast<uint64_t>(num_classes))
        throw py::value_error(prefix(fn, name.c_str()) + "must hold class ids in [0, " +
                              std::to_string(num_classes) + "), got " +
                              std::to_string(u.data()[i]) + " at index " + std::to_string(i));
  }
  const auto c = contiguous<int64_t>(a, fn, name.c_str());
  std::vector<int64_t> v(c.data(), c.data() + k);
  for (int64_t i = 0; i < k; ++i)
    if (v[size_t(i)] < 0 || v[size_t(i)] >= num_classes)
      throw py::value_error(prefix(fn, name.c_str()) + "must hold class ids in [0, " +
                            std::to_string(num_classes) + "), got " + std::to_string(v[size_t(i)]) +
                            " at index " + std::to_string(i));
  return v;
}

py::sequence list_arg(py::handle obj, const char* fn, const char* name) {
  if (!py::isinstance<py::list>(obj) && !py::isinstance<py::tuple>(obj))
    throw py::type_error(prefix(fn, name) + "must be a list or tuple of per-image arrays, got " +
                         type_name(obj));
  return py::reinterpret_borrow<py::sequence>(obj);
}

// boxes_in/classes_in: one array each (batched == false) or lists of them.
py::tuple yolo_encode(py::handle boxes_in, py::handle classes_in, py::handle grid_obj,
                      py::handle anchors_obj, py::handle num_classes_obj, py::handle size_obj,
                      bool batched) {
  const char* fn = batched ? "yolo_encode_batch" : "yolo_encode";
  const char* boxes_name = batched ? "boxes_list" : "boxes";
  const char* classes_name = batched ? "classes_list" : "classes";
  YoloLayout layout;
  const auto grid = per_dim(grid_obj, 2, fn, "grid");
  layout.grid_h = grid[0];
  layout.grid_w = grid[1];
  const std::vector<double> anchors = anchors_arg(anchors_obj, fn);
  layout.anchors = anchors.data();
  layout.num_anchors = static_cast<int64_t>(anchors.size() / 2);
  layout.num_classes = count_int_arg(num_classes_obj, fn, "num_classes", 1);
  const auto size = image_size_arg(size_obj, fn);
  layout.image_h = size[0];
  layout.image_w = size[1];

  std::vector<py::object> box_objs, class_objs;
  if (batched) {
    const py::sequence bl = list_arg(boxes_in, fn, boxes_name);
    const py::sequence cl = list_arg(classes_in, fn, classes_name);
    if (bl.size() != cl.size())
      throw py::value_error(prefix(fn, classes_name) + "must have one entry per image, " +
                            std::to_string(bl.size()) + " to match boxes_list, got " +
                            std::to_string(cl.size()));
    for (size_t i = 0; i < bl.size(); ++i) box_objs.push_back(bl[i]), class_objs.push_back(cl[i]);
  } else {
    box_objs.push_back(py::reinterpret_borrow<py::object>(boxes_in));
    class_objs.push_back(py::reinterpret_borrow<py::object>(classes_in));
  }
  const int64_t n = static_cast<int64_t>(box_objs.size());
  // The target's size, checked before anything is allocated or indexed.
  int64_t bytes = 8;
  for (const int64_t extent : {std::max<int64_t>(n, 1), layout.grid_h, layout.grid_w,
                               layout.num_anchors, layout.row_size()})
    if (!checked_mul(bytes, extent, bytes) || bytes > kMaxExtent)
      throw py::value_error(prefix(fn, "grid") + "and num_classes make a target of more than "
                            "2**60 bytes, got grid (" + std::to_string(layout.grid_h) + ", " +
                            std::to_string(layout.grid_w) + ") and num_classes " +
                            std::to_string(layout.num_classes));
  auto item_name = [&](const char* base, int64_t j) {
    return batched ? std::string(base) + "[" + std::to_string(j) + "]" : std::string(base);
  };

  std::vector<py::array> raw(static_cast<size_t>(n));
  std::vector<int64_t> offsets{0}, classes;
  Float type = Float::f32;
  for (int64_t j = 0; j < n; ++j) {
    const std::string bname = item_name(boxes_name, j);
    raw[size_t(j)] = boxes_arg(box_objs[size_t(j)], fn, bname.c_str());
    if (float_type(raw[size_t(j)], fn, bname.c_str()) == Float::f64) type = Float::f64;
    const int64_t k = raw[size_t(j)].shape(0);
    const auto c = classes_arg(class_objs[size_t(j)], k, layout.num_classes, fn,
                               item_name(classes_name, j), bname);
    classes.insert(classes.end(), c.begin(), c.end());
    offsets.push_back(offsets.back() + k);
  }

  return with_float(type, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    std::vector<T> boxes(static_cast<size_t>(4 * offsets.back()));
    for (int64_t j = 0; j < n; ++j) {
      const std::string bname = item_name(boxes_name, j);
      const auto b = contiguous<T>(raw[size_t(j)], fn, bname.c_str());
      check_box_values(b.data(), b.shape(0), BoxFormat::xyxy, fn, bname.c_str());
      std::copy(b.data(), b.data() + b.size(), boxes.begin() + 4 * offsets[size_t(j)]);
    }
    std::vector<py::ssize_t> shape{layout.grid_h, layout.grid_w, layout.num_anchors,
                                   layout.row_size()};
    if (batched) shape.insert(shape.begin(), n);
    py::array_t<T> y(shape);
    py::array_t<int64_t> dropped(n);
    T* py_ = y.mutable_data();
    int64_t* pd = dropped.mutable_data();
    without_gil([&] {
      cnnkit::yolo_encode(layout, boxes.data(), classes.data(), offsets.data(), n, py_, pd);
    });
    if (batched) return py::make_tuple(y, dropped);
    return py::make_tuple(y, py::int_(pd[0]));
  });
}

// Y in encoded form: every value finite, pc and the class probabilities in
// [0, 1], bh and bw >= 0.
template <class T>
void check_target(const T* y, int64_t rows, const YoloLayout& g, bool batched, const char* fn) {
  const int64_t rs = g.row_size();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t e = 0; e < rs; ++e) {
      const double v = y[r * rs + e];
      const char* what = nullptr;
      if (!std::isfinite(v))
        what = "finite values";
      else if ((e == 0 || e >= 5) && !(v >= 0 && v <= 1))
        what = e == 0 ? "pc in [0, 1]" : "class probabilities in [0, 1]";
      else if ((e == 3 || e == 4) && v < 0)
        what = e == 3 ? "bh >= 0" : "bw >= 0";
      if (!what) continue;
      const int64_t a = r % g.num_anchors, cell = r / g.num_anchors;
      const int64_t col = cell % g.grid_w, row = (cell / g.grid_w) % g.grid_h;
      std::string at = "(";
      if (batched) at += std::to_string(cell / (g.grid_w * g.grid_h)) + ", ";
      at += std::to_string(row) + ", " + std::to_string(col) + ", " + std::to_string(a) + ", " +
            std::to_string(e) + ")";
      throw py::value_error(prefix(fn, "Y") + "must hold " + what + ", got " + num_str(v) +
                            " at index " + at);
    }
}

py::object yolo_decode(py::handle y_obj, py::handle anchors_obj, py::handle size_obj,
                       py::handle threshold_obj) {
  const char* fn = "yolo_decode";
  const py::array raw = as_array(y_obj, fn, "Y");
  if (raw.ndim() != 4 && raw.ndim() != 5)
    throw py::value_error(prefix(fn, "Y") + "must have shape (grid_h, grid_w, A, 5 + "
                          "num_classes) or (N, grid_h, grid_w, A, 5 + num_classes), got shape " +
                          shape_str(raw));
  const bool batched = raw.ndim() == 5;
  const py::ssize_t d0 = batched ? 1 : 0;
  if (raw.shape(d0 + 3) < 6)
    throw py::value_error(prefix(fn, "Y") + "must have 5 + num_classes >= 6 values per row, got "
                          "shape " + shape_str(raw));
  const Float type = float_type(raw, fn, "Y");
  YoloLayout layout;
  layout.grid_h = raw.shape(d0);
  layout.grid_w = raw.shape(d0 + 1);
  layout.num_anchors = raw.shape(d0 + 2);
  layout.num_classes = raw.shape(d0 + 3) - 5;
  const std::vector<double> anchors =
      anchors_arg(anchors_obj, fn, layout.num_anchors, "Y's anchor axis");
  layout.anchors = anchors.data();
  const auto size = image_size_arg(size_obj, fn);
  layout.image_h = size[0];
  layout.image_w = size[1];
  const double threshold = threshold_arg(threshold_obj, fn, "score_threshold");
  const int64_t n = batched ? raw.shape(0) : 1;

  return with_float(type, [&](auto tag) -> py::object {
    using T = decltype(tag);
    if (raw.size() == 0) {
      // No rows, no detections: every image's result is the same empty
      // triple, shared (read-only, so the sharing cannot be observed), which
      // returns at once however many images Y declares, or fails at once
      // with MemoryError when the list itself cannot be allocated.
      py::array_t<T> boxes(std::vector<py::ssize_t>{0, 4});
      py::array_t<T> scores(std::vector<py::ssize_t>{0});
      py::array_t<int64_t> classes(std::vector<py::ssize_t>{0});
      for (py::array* arr : {static_cast<py::array*>(&boxes), static_cast<py::array*>(&scores),
                             static_cast<py::array*>(&classes)})
        arr->attr("setflags")(py::arg("write") = false);
      const py::tuple empty = py::make_tuple(boxes, scores, classes);
      if (!batched) return empty;
      PyObject* list = PyList_New(static_cast<py::ssize_t>(n));
      if (!list) {
        PyErr_Clear();
        PyErr_SetString(PyExc_MemoryError,
                        (std::string(fn) + "(): Y holds " + std::to_string(n) +
                         " images, whose list of results could not be allocated")
                            .c_str());
        throw py::error_already_set();
      }
      for (int64_t j = 0; j < n; ++j) PyList_SET_ITEM(list, j, empty.inc_ref().ptr());
      return py::reinterpret_steal<py::list>(list);
    }
    const auto y = contiguous<T>(raw, fn, "Y");
    const int64_t rows = n * layout.grid_h * layout.grid_w * layout.num_anchors;
    check_target(y.data(), rows, layout, batched, fn);
    std::vector<Detections<T>> out(static_cast<size_t>(n));
    {
      const T* py_ = y.data();
      without_gil([&] { cnnkit::yolo_decode(layout, py_, n, threshold, out.data()); });
    }
    py::list results;
    for (const auto& d : out) {
      const auto k = static_cast<py::ssize_t>(d.scores.size());
      py::array_t<T> boxes({k, py::ssize_t(4)});
      py::array_t<T> scores(k);
      std::copy(d.boxes.begin(), d.boxes.end(), boxes.mutable_data());
      std::copy(d.scores.begin(), d.scores.end(), scores.mutable_data());
      results.append(py::make_tuple(boxes, scores, to_index_array(d.classes)));
    }
    if (batched) return results;
    return results[0];
  });
}

// rng: a numpy.random.Generator; its random(k) drives the seeding once
// every argument has been checked.
py::tuple kmeans_anchors(py::handle wh_obj, py::handle k_obj, py::handle iterations_obj,
                         py::handle threshold_obj, py::handle rng) {
  const char* fn = "kmeans_anchors";
  const py::array raw = as_array(wh_obj, fn, "wh");
  const Float type = float_type(raw, fn, "wh");
  if (raw.ndim() != 2 || raw.shape(1) != 2 || raw.shape(0) < 1)
    throw py::value_error(prefix(fn, "wh") +
                          "must have shape (M, 2) with M >= 1 rows of (width, height), got shape " +
                          shape_str(raw));
  const int64_t k = count_int_arg(k_obj, fn, "k", 1);
  const int64_t iterations = count_int_arg(iterations_obj, fn, "iterations", 0);
  const double threshold = threshold_arg(threshold_obj, fn, "iou_threshold");
  if (threshold > 1)
    throw py::value_error(prefix(fn, "iou_threshold") + "must be a number in [0, 1], got " +
                          num_str(threshold));
  return with_float(type, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const auto wh = contiguous<T>(raw, fn, "wh");
    const int64_t m = raw.shape(0);
    const T limit = max_box_coordinate<T>();
    for (int64_t i = 0; i < 2 * m; ++i)
      if (!(wh.data()[i] > 0 && wh.data()[i] <= limit))
        throw py::value_error(prefix(fn, "wh") + "must hold positive, finite widths and heights "
                              "(at most " + num_str(double(limit)) + "), got " +
                              num_str(double(wh.data()[i])) + " in row " + std::to_string(i / 2));
    const T* pw = wh.data();
    const int64_t distinct = count_distinct_shapes(pw, m);
    if (k > distinct)
      throw py::value_error(prefix(fn, "k") + "must be at most the number of distinct box shapes "
                            "in wh, " + std::to_string(distinct) + ", got " + std::to_string(k));
    const auto uniforms = contiguous<double>(rng.attr("random")(k), fn, "seed");
    py::array_t<T> anchors({static_cast<py::ssize_t>(k), py::ssize_t(2)});
    T* pa = anchors.mutable_data();
    const double* pu = uniforms.data();
    KMeansStats stats;
    without_gil([&] {
      std::vector<double> centres(static_cast<size_t>(2 * k));
      kmeans_seed(pw, m, k, pu, centres.data());
      stats = cnnkit::kmeans_anchors(pw, m, centres.data(), k, iterations, threshold, pa);
    });
    return py::make_tuple(anchors, stats.iou_sum / static_cast<double>(m),
                          static_cast<double>(stats.hits) / static_cast<double>(m),
                          stats.iterations);
  });
}

}  // namespace

void bind_anchors(py::module_& m) {
  m.def("yolo_encode", &yolo_encode);
  m.def("yolo_decode", &yolo_decode);
  m.def("kmeans_anchors", &kmeans_anchors);
}

}  // namespace cnnkit::bind

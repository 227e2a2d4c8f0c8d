// Bindings of the box and NMS kernels (csrc/boxes.hpp, csrc/nms.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "boxes.hpp"
#include "nms.hpp"
#include "validate.hpp"
#include "without_gil.hpp"

namespace cnnkit::bind {

namespace {

struct CheckedBoxes {
  py::array array;  // contiguous, of the chosen float type
  int64_t n;
};

// Validates one boxes argument and returns it as a contiguous T array.
template <class T>
CheckedBoxes checked(const py::array& raw, BoxFormat fmt, const char* fn, const char* name) {
  auto a = contiguous<T>(raw, fn, name);
  const int64_t n = a.shape(0);
  check_box_values(a.data(), n, fmt, fn, name);
  return {a, n};
}

py::object box_convert(py::handle boxes_obj, py::handle in_obj, py::handle out_obj) {
  const char* fn = "box_convert";
  const BoxFormat from = format_arg(in_obj, fn, "in_fmt"), to = format_arg(out_obj, fn, "out_fmt");
  const py::array raw = boxes_arg(boxes_obj, fn, "boxes");
  return with_float(float_type(raw, fn, "boxes"), [&](auto tag) -> py::object {
    using T = decltype(tag);
    const CheckedBoxes b = checked<T>(raw, from, fn, "boxes");
    py::array_t<T> out({static_cast<py::ssize_t>(b.n), py::ssize_t(4)});
    const T* in = static_cast<const T*>(b.array.data());
    T* o = out.mutable_data();
    without_gil([&] { cnnkit::box_convert(in, o, b.n, from, to); });
    return out;
  });
}

py::object box_area(py::handle boxes_obj) {
  const char* fn = "box_area";
  const py::array raw = boxes_arg(boxes_obj, fn, "boxes");
  return with_float(float_type(raw, fn, "boxes"), [&](auto tag) -> py::object {
    using T = decltype(tag);
    const CheckedBoxes b = checked<T>(raw, BoxFormat::xyxy, fn, "boxes");
    py::array_t<T> out(static_cast<py::ssize_t>(b.n));
    const T* in = static_cast<const T*>(b.array.data());
    T* o = out.mutable_data();
    without_gil([&] { cnnkit::box_area(in, o, b.n); });
    return out;
  });
}

py::object clip_boxes(py::handle boxes_obj, py::handle height_obj, py::handle width_obj) {
  const char* fn = "clip_boxes";
  const double height = threshold_arg(height_obj, fn, "size[0] (height)");
  const double width = threshold_arg(width_obj, fn, "size[1] (width)");
  if (!std::isfinite(height) || !std::isfinite(width))
    throw py::value_error("clip_boxes(): size must be finite, got (" + std::to_string(height) +
                          ", " + std::to_string(width) + ")");
  const py::array raw = boxes_arg(boxes_obj, fn, "boxes");
  return with_float(float_type(raw, fn, "boxes"), [&](auto tag) -> py::object {
    using T = decltype(tag);
    const CheckedBoxes b = checked<T>(raw, BoxFormat::xyxy, fn, "boxes");
    py::array_t<T> out({static_cast<py::ssize_t>(b.n), py::ssize_t(4)});
    const T* in = static_cast<const T*>(b.array.data());
    T* o = out.mutable_data();
    without_gil([&] { cnnkit::clip_boxes(in, o, b.n, T(height), T(width)); });
    return out;
  });
}

py::object remove_small_boxes(py::handle boxes_obj, py::handle min_size_obj) {
  const char* fn = "remove_small_boxes";
  const double min_size = threshold_arg(min_size_obj, fn, "min_size");
  const py::array raw = boxes_arg(boxes_obj, fn, "boxes");
  return with_float(float_type(raw, fn, "boxes"), [&](auto tag) -> py::object {
    using T = decltype(tag);
    const CheckedBoxes b = checked<T>(raw, BoxFormat::xyxy, fn, "boxes");
    std::vector<int64_t> keep(static_cast<size_t>(b.n));
    const T* in = static_cast<const T*>(b.array.data());
    int64_t k;
    without_gil([&] { k = cnnkit::remove_small_boxes(in, b.n, T(min_size), keep.data()); });
    keep.resize(static_cast<size_t>(k));
    return to_index_array(keep);
  });
}

// One binding for each member of the IoU family.
auto iou_family(IouKind kind, const char* fn) {
  return [kind, fn](py::handle a_obj, py::handle b_obj, bool aligned) -> py::object {
    const py::array ra = boxes_arg(a_obj, fn, "boxes1"), rb = boxes_arg(b_obj, fn, "boxes2");
    const Float t = wider(float_type(ra, fn, "boxes1"), float_type(rb, fn, "boxes2"));
    if (aligned && ra.shape(0) != rb.shape(0))
      throw py::value_error(std::string(fn) +
                            "(): with aligned=True, boxes1 and boxes2 must have the same length, "
                            "got " + std::to_string(ra.shape(0)) + " and " +
                            std::to_string(rb.shape(0)));
    return with_float(t, [&](auto tag) -> py::object {
      using T = decltype(tag);
      const CheckedBoxes a = checked<T>(ra, BoxFormat::xyxy, fn, "boxes1");
      const CheckedBoxes b = checked<T>(rb, BoxFormat::xyxy, fn, "boxes2");
      const T* pa = static_cast<const T*>(a.array.data());
      const T* pb = static_cast<const T*>(b.array.data());
      if (aligned) {
        py::array_t<T> out(static_cast<py::ssize_t>(a.n));
        T* o = out.mutable_data();
        without_gil([&] { cnnkit::aligned_iou(kind, pa, pb, a.n, o); });
        return out;
      }
      py::array_t<T> out({static_cast<py::ssize_t>(a.n), static_cast<py::ssize_t>(b.n)});
      T* o = out.mutable_data();
      without_gil([&] { cnnkit::pairwise_iou(kind, pa, a.n, pb, b.n, o); });
      return out;
    });
  };
}

NmsOptions nms_options(const char* fn, py::handle iou_obj, py::handle score_obj,
                       py::handle max_obj) {
  NmsOptions opt;
  opt.iou_threshold = threshold_arg(iou_obj, fn, "iou_threshold");
  if (!score_obj.is_none()) {
    opt.use_score_threshold = true;
    opt.score_threshold = threshold_arg(score_obj, fn, "score_threshold", -HUGE_VAL);
  }
  opt.max_output = count_arg(max_obj, fn, "max_output").value_or(-1);
  return opt;
}

// Boxes and scores as contiguous arrays of their common float type.
struct Detections {
  py::array boxes_raw, scores_raw;
  Float type;
  int64_t n;
};

Detections detections_arg(py::handle boxes_obj, py::handle scores_obj, const char* fn) {
  py::array boxes = boxes_arg(boxes_obj, fn, "boxes");
  const int64_t n = boxes.shape(0);
  py::array scores = vector_arg(scores_obj, n, fn, "scores", "boxes");
  const Float t = wider(float_type(boxes, fn, "boxes"), float_type(scores, fn, "scores"));
  return {boxes, scores, t, n};
}

template <class T>
std::pair<CheckedBoxes, py::array_t<T, py::array::c_style>> checked_detections(
    const Detections& d, const char* fn) {
  const CheckedBoxes b = checked<T>(d.boxes_raw, BoxFormat::xyxy, fn, "boxes");
  auto s = contiguous<T>(d.scores_raw, fn, "scores");
  check_finite_values(s.data(), d.n, fn, "scores");
  return {b, s};
}

py::object nms(py::handle boxes_obj, py::handle scores_obj, py::handle iou_obj,
               py::handle score_obj, py::handle max_obj) {
  const char* fn = "nms";
  const NmsOptions opt = nms_options(fn, iou_obj, score_obj, max_obj);
  const Detections d = detections_arg(boxes_obj, scores_obj, fn);
  return with_float(d.type, [&](auto tag) -> py::object {
    using T = decltype(tag);
    const auto [b, s] = checked_detections<T>(d, fn);
    const T* pb = static_cast<const T*>(b.array.data());
    const T* ps = s.data();
    std::vector<int64_t> kept;
    without_gil([&] { kept = cnnkit::nms(pb, ps, d.n, opt); });
    return to_index_array(kept);
  });
}

py::object batched_nms(py::handle boxes_obj, py::handle scores_obj, py::handle idxs_obj,
                       py::handle iou_obj, py::handle score_obj, py::handle max_obj) {
  const char* fn = "batched_nms";
  const NmsOptions opt = nms_options(fn, iou_obj, score_obj, max_obj);
  const Detections d = detections_arg(boxes_obj, scores_obj, fn);
  // torchvision's name; ops.batched_nms has turned whole-number floats into int64.
  const py::array classes_raw = vector_arg(idxs_obj, d.n, fn, "idxs", "boxes");
  const char kind = classes_raw.dtype().kind();
  // An empty list arrives as float64; with no labels there is nothing to misread.
  if (kind != 'i' && kind != 'u' && classes_raw.size() != 0)
    throw py::type_error("batched_nms(): idxs must have an integer dtype (or whole-number "
                         "floats), got " +
                         std::string(py::str(classes_raw.dtype())));
  const auto classes = contiguous<int64_t>(classes_raw, fn, "classes");
  return with_float(d.type, [&](auto tag) -> py::object {
    using T = decltype(tag);
    const auto [b, s] = checked_detections<T>(d, fn);
    const T* pb = static_cast<const T*>(b.array.data());
    const T* ps = s.data();
    const int64_t* pc = classes.data();
    std::vector<int64_t> kept;
    without_gil([&] { kept = cnnkit::batched_nms(pb, ps, pc, d.n, opt); });
    return to_index_array(kept);
  });
}

py::tuple soft_nms(py::handle boxes_obj, py::handle scores_obj, py::handle method_obj,
                   py::handle sigma_obj, py::handle iou_obj, py::handle score_obj) {
  const char* fn = "soft_nms";
  SoftNmsOptions opt;
  if (!PyUnicode_Check(method_obj.ptr()))
    throw py::type_error("soft_nms(): method must be a str, got " + type_name(method_obj));
  const std::string method = str_arg(method_obj, fn, "method", "'gaussian' or 'linear'");
  if (method == "gaussian")
    opt.method = SoftNmsMethod::gaussian;
  else if (method == "linear")
    opt.method = SoftNmsMethod::linear;
  else
    throw py::value_error("soft_nms(): method must be 'gaussian' or 'linear', got '" + method + "'");
  opt.sigma = threshold_arg(sigma_obj, fn, "sigma");
  if (!(opt.sigma > 0) || !std::isfinite(opt.sigma))
    throw py::value_error("soft_nms(): sigma must be a finite number > 0, got " +
                          std::to_string(opt.sigma));
  opt.iou_threshold = threshold_arg(iou_obj, fn, "iou_threshold");
  opt.score_threshold = threshold_arg(score_obj, fn, "score_threshold");
  const Detections d = detections_arg(boxes_obj, scores_obj, fn);
  return with_float(d.type, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const auto [b, s] = checked_detections<T>(d, fn);
    const T* pb = static_cast<const T*>(b.array.data());
    const T* ps = s.data();
    for (int64_t i = 0; i < d.n; ++i)
      if (ps[i] < 0)
        throw py::value_error("soft_nms(): scores must be >= 0 (decaying a negative score would "
                              "raise it), got " + std::to_string(ps[i]) + " at index " +
                              std::to_string(i));
    std::vector<int64_t> indices;
    std::vector<T> selected;
    without_gil([&] { cnnkit::soft_nms(pb, ps, d.n, opt, indices, selected); });
    py::array_t<T> out_scores(static_cast<py::ssize_t>(selected.size()));
    std::copy(selected.begin(), selected.end(), out_scores.mutable_data());
    return py::make_tuple(to_index_array(indices), out_scores);
  });
}

}  // namespace

void bind_boxes(py::module_& m) {
  m.def("box_convert", &box_convert);
  m.def("box_area", &box_area);
  m.def("clip_boxes", &clip_boxes);
  m.def("remove_small_boxes", &remove_small_boxes);
  m.def("box_iou", iou_family(IouKind::iou, "box_iou"));
  m.def("generalized_box_iou", iou_family(IouKind::giou, "generalized_box_iou"));
  m.def("distance_box_iou", iou_family(IouKind::diou, "distance_box_iou"));
  m.def("complete_box_iou", iou_family(IouKind::ciou, "complete_box_iou"));
  m.def("nms", &nms);
  m.def("batched_nms", &batched_nms);
  m.def("soft_nms", &soft_nms);
}

}  // namespace cnnkit::bind

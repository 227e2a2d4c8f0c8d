// Binding of the concatenation copy (csrc/concat.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "concat.hpp"
#include "validate.hpp"

namespace cnnkit::bind {

namespace {

py::object concat(py::handle tensors_obj, py::handle axis_obj) {
  const char* fn = "concat";
  if (!py::isinstance<py::sequence>(tensors_obj) || py::isinstance<py::str>(tensors_obj) ||
      py::isinstance<py::array>(tensors_obj))
    throw py::type_error(prefix(fn, "tensors") + "must be a list or tuple of arrays, got " +
                         type_name(tensors_obj));
  const auto seq = py::reinterpret_borrow<py::sequence>(tensors_obj);
  const size_t count = seq.size();
  if (count == 0)
    throw py::value_error(prefix(fn, "tensors") + "must hold at least one array, got none");
  std::vector<py::array> raw;
  std::vector<std::string> names;
  Float type = Float::f32;
  for (size_t i = 0; i < count; ++i) {
    names.push_back("tensors[" + std::to_string(i) + "]");
    raw.push_back(as_array(seq[i], fn, names[i].c_str()));
    type = i ? wider(type, float_type(raw[i], fn, names[i].c_str()))
             : float_type(raw[i], fn, names[i].c_str());
  }
  const py::ssize_t ndim = raw[0].ndim();
  if (ndim == 0)
    throw py::value_error(prefix(fn, "tensors[0]") + "must have at least one axis, got shape ()");
  const int64_t axis_in = int_arg(axis_obj, fn, "axis", INT64_MIN);
  if (axis_in < -int64_t(ndim) || axis_in >= int64_t(ndim))
    throw py::value_error(prefix(fn, "axis") + "must be in [" + std::to_string(-ndim) + ", " +
                          std::to_string(ndim - 1) + "] for tensors of rank " +
                          std::to_string(ndim) + ", got " + std::to_string(axis_in));
  const py::ssize_t axis = axis_in < 0 ? py::ssize_t(axis_in + ndim) : py::ssize_t(axis_in);
  std::vector<py::ssize_t> shape(raw[0].shape(), raw[0].shape() + ndim);
  for (size_t i = 1; i < count; ++i) {
    bool same = raw[i].ndim() == ndim;
    for (py::ssize_t d = 0; same && d < ndim; ++d)
      same = d == axis || raw[i].shape(d) == shape[size_t(d)];
    if (!same)
      throw py::value_error(prefix(fn, names[i].c_str()) +
                            "must have the shape of tensors[0] " + shape_str(raw[0]) +
                            " except along axis " + std::to_string(axis) + ", got shape " +
                            shape_str(raw[i]));
    // Views that cost no memory can add up beyond any size: the sum is checked.
    if (__builtin_add_overflow(shape[size_t(axis)], raw[i].shape(axis), &shape[size_t(axis)]))
      throw py::value_error(prefix(fn, "tensors") + "must add up to fewer than 2**63 elements "
                            "along axis " + std::to_string(axis));
  }
  return with_float(type, [&](auto tag) -> py::object {
    using T = decltype(tag);
    py::array_t<T> out = new_output<T>(shape, fn);
    if (out.size() == 0) return out;
    int64_t outer = 1, inner = int64_t(sizeof(T));
    for (py::ssize_t d = 0; d < axis; ++d) outer *= shape[size_t(d)];
    for (py::ssize_t d = axis + 1; d < ndim; ++d) inner *= shape[size_t(d)];
    std::vector<py::array_t<T, py::array::c_style>> held;
    std::vector<const char*> inputs;
    std::vector<int64_t> widths;
    for (size_t i = 0; i < count; ++i) {
      held.push_back(contiguous<T>(raw[i], fn, names[i].c_str()));
      inputs.push_back(reinterpret_cast<const char*>(held.back().data()));
      widths.push_back(int64_t(raw[i].shape(axis)) * inner);
    }
    char* o = reinterpret_cast<char*>(out.mutable_data());
    py::gil_scoped_release release;
    cnnkit::concat(outer, int64_t(count), inputs.data(), widths.data(), o);
    return out;
  });
}

}  // namespace

void bind_concat(py::module_& m) { m.def("concat", &concat); }

}  // namespace cnnkit::bind

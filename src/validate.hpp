// Argument checking shared by the bindings. Every message names the function,
// the argument, what was expected and what came.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "boxes.hpp"

namespace cnnkit::bind {

namespace py = pybind11;

enum class Float { f32, f64 };

inline std::string prefix(const char* fn, const char* name) {
  return std::string(fn) + "(): " + name + " ";
}

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    if (d) s += ", ";
    s += std::to_string(a.shape(d));
  }
  if (a.ndim() == 1) s += ",";
  return s + ")";
}

inline std::string type_name(py::handle obj) { return py::str(py::type::handle_of(obj).attr("__name__")); }

// np.asarray(obj); object arrays and things that are not array-like are
// rejected with a TypeError.
// A torch tensor that requires a gradient is refused with a message that says
// what to do (NumPy would raise torch's RuntimeError, which names no argument).
inline py::array as_array(py::handle obj, const char* fn, const char* name) {
  py::array a;
  if (py::isinstance<py::array>(obj)) {
    a = py::reinterpret_borrow<py::array>(obj);
  } else {
    const std::string module = py::str(py::getattr(py::type::handle_of(obj), "__module__", py::str("")));
    if (module.rfind("torch", 0) == 0 && py::hasattr(obj, "requires_grad") &&
        py::bool_(obj.attr("requires_grad")))
      throw py::type_error(prefix(fn, name) +
                           "must not require a gradient, got a torch tensor with "
                           "requires_grad=True; pass " + name +
                           ".detach() (cnnkit does not record torch gradients)");
    try {
      a = py::module_::import("numpy").attr("asarray")(obj);
    } catch (py::error_already_set& e) {
      // str(exception), not e.what(): that would append pybind11's "At:" trace lines.
      throw py::type_error(prefix(fn, name) + "must be an array-like of numbers, got " +
                           type_name(obj) + " (" + std::string(py::str(e.value())) + ")");
    }
  }
  const char kind = a.dtype().kind();
  if (kind != 'b' && kind != 'i' && kind != 'u' && kind != 'f' && kind != 'c')
    throw py::type_error(prefix(fn, name) + "must hold numbers, got an array of dtype " +
                         std::string(py::str(a.dtype())));
  return a;
}

// By kind and size rather than dtype identity: an unpickled or byte-swapped
// float32 array is still float32 (contiguous() converts the byte order).
inline Float float_type(const py::array& a, const char* fn, const char* name) {
  if (a.dtype().kind() == 'f' && a.itemsize() == 4) return Float::f32;
  if (a.dtype().kind() == 'f' && a.itemsize() == 8) return Float::f64;
  throw py::type_error(prefix(fn, name) + "must have dtype float32 or float64, got " +
                       std::string(py::str(a.dtype())));
}

inline Float wider(Float a, Float b) { return (a == Float::f64 || b == Float::f64) ? Float::f64 : Float::f32; }

// A C-contiguous, native-order array of `dtype`: `a` itself when it is one,
// else a copy. pybind11's array::ensure() clears the error of a failed copy,
// so numpy's converter is called here, and a failed allocation surfaces as a
// MemoryError naming the function, the argument and the bytes asked for.
inline py::array contiguous_as(const py::array& a, const py::dtype& dtype, const char* fn,
                               const char* name) {
  auto& api = py::detail::npy_api::get();
  constexpr int flags = py::detail::npy_api::NPY_ARRAY_ENSUREARRAY_ |
                        py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ |
                        py::detail::npy_api::NPY_ARRAY_FORCECAST_;
  PyObject* out = api.PyArray_FromAny_(a.ptr(), py::dtype(dtype).release().ptr(), 0, 0, flags,
                                       nullptr);
  if (out) return py::reinterpret_steal<py::array>(out);
  if (PyErr_ExceptionMatches(PyExc_MemoryError) || PyErr_ExceptionMatches(PyExc_ValueError)) {
    // numpy says "array is too big" (ValueError) when the byte count
    // overflows; either way the copy could not be made.
    const py::error_already_set cause;
    const long double bytes = static_cast<long double>(a.size()) * dtype.itemsize();
    std::ostringstream os;
    os.precision(20);
    os << fn << "(): " << name << " needs a contiguous " << std::string(py::str(dtype))
       << " copy of " << bytes << " bytes, which could not be allocated";
    PyErr_SetString(PyExc_MemoryError, os.str().c_str());
  }
  throw py::error_already_set();
}

// A new array of `shape` for fn's output, or a MemoryError naming fn and the
// bytes asked for when no address space holds it: pybind11 multiplies the
// strides out unchecked (a signed overflow for sizes past 2^63 bytes).
template <class T>
py::array_t<T> new_output(const std::vector<py::ssize_t>& shape, const char* fn) {
  long double bytes = sizeof(T);
  for (const py::ssize_t d : shape) bytes *= static_cast<long double>(d);
  if (bytes > static_cast<long double>(std::numeric_limits<py::ssize_t>::max())) {
    std::ostringstream os;
    os.precision(20);
    os << fn << "(): the output of shape (";
    for (size_t d = 0; d < shape.size(); ++d) os << (d ? ", " : "") << shape[d];
    os << ") needs " << bytes << " bytes, which could not be allocated";
    PyErr_SetString(PyExc_MemoryError, os.str().c_str());
    throw py::error_already_set();
  }
  return py::array_t<T>(shape);
}

// C-contiguous, native-order array of T (a copy only when `a` is not already one).
template <class T>
py::array_t<T, py::array::c_style> contiguous(const py::array& a, const char* fn,
                                              const char* name) {
  return py::reinterpret_steal<py::array_t<T, py::array::c_style>>(
      contiguous_as(a, py::dtype::of<T>(), fn, name).release());
}

template <class F>
decltype(auto) with_float(Float t, F&& f) {
  if (t == Float::f32) return f(float{});
  return f(double{});
}

// Boxes are (N, 4); an empty 1-D array-like ([] or np.array([])) counts as (0, 4).
inline py::array boxes_arg(py::handle obj, const char* fn, const char* name) {
  py::array a = as_array(obj, fn, name);
  float_type(a, fn, name);
  if (a.ndim() == 1 && a.size() == 0) a = a.attr("reshape")(0, 4);
  if (a.ndim() != 2 || a.shape(1) != 4)
    throw py::value_error(prefix(fn, name) + "must have shape (N, 4), got shape " + shape_str(a));
  return a;
}

template <class T>
std::string row_str(const T* r) {
  std::ostringstream os;
  os.precision(17);
  os << "[" << r[0] << ", " << r[1] << ", " << r[2] << ", " << r[3] << "]";
  return os.str();
}

inline const char* format_name(BoxFormat f) {
  return f == BoxFormat::xyxy ? "xyxy" : (f == BoxFormat::xywh ? "xywh" : "cxcywh");
}

// Finite coordinates small enough that areas and squared distances cannot
// overflow T, and, for the format, x1 <= x2 and y1 <= y2 (or w, h >= 0).
template <class T>
void check_box_values(const T* p, int64_t n, BoxFormat fmt, const char* fn, const char* name) {
  const T limit = max_box_coordinate<T>();
  if (all_boxes_valid(p, n, limit, fmt)) return;
  const int64_t bad = first_row_beyond(p, n, limit);
  if (bad >= 0) {
    const T* r = p + 4 * bad;
    const bool finite = std::isfinite(r[0]) && std::isfinite(r[1]) && std::isfinite(r[2]) &&
                        std::isfinite(r[3]);
    std::ostringstream os;
    os << prefix(fn, name);
    if (finite)
      os << "must hold coordinates within +-" << double(limit) << " for "
         << (sizeof(T) == 4 ? "float32" : "float64") << " (so that areas stay finite), got ";
    else
      os << "must hold finite coordinates, got ";
    os << row_str(r) << " in row " << bad;
    throw py::value_error(os.str());
  }
  const int64_t inv = first_invalid_row(p, n, fmt);
  if (inv >= 0) {
    const std::string what = fmt == BoxFormat::xyxy ? "x1 <= x2 and y1 <= y2"
                                                    : "a non-negative width and height";
    throw py::value_error(prefix(fn, name) + "must hold valid " + format_name(fmt) +
                          " boxes with " + what + ", got " + row_str(p + 4 * inv) + " in row " +
                          std::to_string(inv));
  }
}

// A 1-D float vector of length n (scores).
inline py::array vector_arg(py::handle obj, int64_t n, const char* fn, const char* name,
                            const char* matches) {
  py::array a = as_array(obj, fn, name);
  if (a.ndim() != 1 || a.shape(0) != n)
    throw py::value_error(prefix(fn, name) + "must have shape (" + std::to_string(n) +
                          ",) to match " + matches + ", got shape " + shape_str(a));
  return a;
}

template <class T>
void check_finite_values(const T* p, int64_t n, const char* fn, const char* name) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i])) {
      std::ostringstream os;
      os << p[i];
      throw py::value_error(prefix(fn, name) + "must be finite, got " + os.str() + " at index " +
                            std::to_string(i));
    }
}

// A real number (Python or NumPy); strings and None are rejected.
inline double real_arg(py::handle obj, const char* fn, const char* name) {
  if (obj.is_none() || PyUnicode_Check(obj.ptr()) || PyBytes_Check(obj.ptr()) ||
      !PyNumber_Check(obj.ptr()) || PyComplex_Check(obj.ptr()))
    throw py::type_error(prefix(fn, name) + "must be a real number, got " + type_name(obj));
  const double v = PyFloat_AsDouble(obj.ptr());
  if (v == -1.0 && PyErr_Occurred()) {
    // An int beyond float64 (2**1100) is out of range, like any other value.
    if (!PyErr_ExceptionMatches(PyExc_OverflowError)) throw py::error_already_set();
    PyErr_Clear();
    throw py::value_error(prefix(fn, name) + "must be a real number within the float64 range, "
                          "got an int of " +
                          std::to_string(py::str(obj).attr("__len__")().cast<size_t>()) +
                          " digits");
  }
  return v;
}

// A threshold: a real number, not NaN, and >= minimum.
inline double threshold_arg(py::handle obj, const char* fn, const char* name, double minimum = 0.0) {
  const double v = real_arg(obj, fn, name);
  if (std::isnan(v) || v < minimum) {
    std::ostringstream os;
    os << prefix(fn, name) << "must be a number >= " << minimum << ", got " << v;
    throw py::value_error(os.str());
  }
  return v;
}

// A Python or NumPy integer (not a bool or a float) in [minimum, maximum]. An
// int beyond int64 is a ValueError like any other out-of-range value, rather
// than pybind11's RuntimeError from a failed cast. `expected` names the
// accepted types in the TypeError, `alternative` any other accepted value
// (" or None") in the ValueError.
inline int64_t int_arg(py::handle obj, const char* fn, const char* name, int64_t minimum,
                       int64_t maximum = INT64_MAX, const char* expected = "an int",
                       const char* alternative = "") {
  if (PyBool_Check(obj.ptr()) || PyFloat_Check(obj.ptr()) || !PyIndex_Check(obj.ptr()))
    throw py::type_error(prefix(fn, name) + "must be " + expected + ", got " + type_name(obj));
  PyObject* index = PyNumber_Index(obj.ptr());
  if (!index) throw py::error_already_set();
  const auto big = py::reinterpret_steal<py::int_>(index);
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(big.ptr(), &overflow);
  if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
  const bool low = overflow < 0 || (overflow == 0 && v < minimum);
  const bool high = overflow > 0 || (overflow == 0 && v > maximum);
  if (!low && !high) return v;
  // Large limits that are powers of two read as such: "at most 2**40" (a
  // small one as a number: "at most 1", not "2**0").
  const std::string top = maximum == INT64_MAX ? "2**63 - 1 (int64)"
                          : (maximum >= 1024 && (maximum & (maximum - 1)) == 0)
                              ? "2**" + std::to_string(__builtin_ctzll(maximum))
                              : std::to_string(maximum);
  const std::string range = low ? ">= " + std::to_string(minimum) : "at most " + top;
  std::string got = py::str(big);
  if (got.size() > 30) got = "an int of " + std::to_string(got.size()) + " digits";
  throw py::value_error(prefix(fn, name) + "must be " + range + alternative + ", got " + got);
}

// None (no limit), or an integer >= 0. The value message names only the bound: the argument
// is an int by then, so "or None" there would read as if None were the fix for a negative int.
inline std::optional<int64_t> count_arg(py::handle obj, const char* fn, const char* name) {
  if (obj.is_none()) return std::nullopt;
  return int_arg(obj, fn, name, 0, INT64_MAX, "an int or None");
}

// The UTF-8 text of a str argument. A str that has no UTF-8 form (a lone
// surrogate such as '\ud800') cannot equal any accepted value: ValueError.
inline std::string str_arg(py::handle obj, const char* fn, const char* name,
                           const char* expected) {
  if (!PyUnicode_Check(obj.ptr()))
    throw py::type_error(prefix(fn, name) + "must be " + expected + ", got " + type_name(obj));
  Py_ssize_t size = 0;
  const char* text = PyUnicode_AsUTF8AndSize(obj.ptr(), &size);
  if (!text) {
    PyErr_Clear();
    throw py::value_error(prefix(fn, name) + "must be " + expected + ", got " +
                          std::string(py::repr(obj)) + " (not encodable as UTF-8)");
  }
  return std::string(text, size_t(size));
}

inline BoxFormat format_arg(py::handle obj, const char* fn, const char* name) {
  if (!PyUnicode_Check(obj.ptr()))
    throw py::type_error(prefix(fn, name) + "must be a str, got " + type_name(obj));
  const std::string s = str_arg(obj, fn, name, "one of 'xyxy', 'xywh', 'cxcywh'");
  if (s == "xyxy") return BoxFormat::xyxy;
  if (s == "xywh") return BoxFormat::xywh;
  if (s == "cxcywh") return BoxFormat::cxcywh;
  throw py::value_error(prefix(fn, name) + "must be one of 'xyxy', 'xywh', 'cxcywh', got '" + s + "'");
}

inline py::array_t<int64_t> to_index_array(const std::vector<int64_t>& v) {
  py::array_t<int64_t> out(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

}  // namespace cnnkit::bind

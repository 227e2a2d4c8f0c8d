// Parsing of the spatial arguments of convolution and pooling (stride,
// dilation, padding) into a Geometry, with messages that name the argument.
#pragma once

#include <pybind11/pybind11.h>

#include <array>
#include <string>

#include "geometry.hpp"
#include "validate.hpp"

namespace cnnkit::bind {

inline int64_t positive_int(py::handle obj, const char* fn, const char* name, int64_t minimum) {
  if (PyBool_Check(obj.ptr()) || !PyIndex_Check(obj.ptr()))
    throw py::type_error(prefix(fn, name) + "must be an int or a tuple of ints, got " +
                         type_name(obj));
  PyObject* index = PyNumber_Index(obj.ptr());
  if (!index) throw py::error_already_set();
  const int64_t v = py::cast<int64_t>(py::reinterpret_steal<py::object>(index));
  if (v < minimum)
    throw py::value_error(prefix(fn, name) + "must be >= " + std::to_string(minimum) + ", got " +
                          std::to_string(v));
  return v;
}

// An int, or a tuple/list of `rank` ints, each >= minimum.
inline std::array<int64_t, kMaxSpatialDims> per_dim(py::handle obj, int rank, const char* fn,
                                                    const char* name, int64_t minimum = 1) {
  std::array<int64_t, kMaxSpatialDims> v{1, 1, 1};
  if (py::isinstance<py::tuple>(obj) || py::isinstance<py::list>(obj)) {
    const py::sequence seq = py::reinterpret_borrow<py::sequence>(obj);
    if (static_cast<int>(seq.size()) != rank)
      throw py::value_error(prefix(fn, name) + "must have " + std::to_string(rank) +
                            " entries (one per spatial dimension), got " +
                            std::to_string(seq.size()));
    for (int d = 0; d < rank; ++d) v[size_t(d)] = positive_int(seq[size_t(d)], fn, name, minimum);
  } else {
    const int64_t s = positive_int(obj, fn, name, minimum);
    for (int d = 0; d < rank; ++d) v[size_t(d)] = s;
  }
  return v;
}

// Fills g.pad_before/pad_after from `padding`: "valid", "same", an int, a
// tuple of `rank` ints, or a tuple of `rank` (before, after) pairs. g.in,
// g.kernel, g.stride and g.dilation must be set.
inline void parse_padding(py::handle obj, Geometry& g, const char* fn) {
  if (PyUnicode_Check(obj.ptr())) {
    const std::string s = py::cast<std::string>(obj);
    if (s != "valid" && s != "same")
      throw py::value_error(std::string(fn) +
                            "(): padding must be 'valid', 'same', an int or per-dimension "
                            "(before, after) pairs, got '" + s + "'");
    for (int d = 0; d < g.rank; ++d) {
      if (s == "valid")
        g.pad_before[d] = g.pad_after[d] = 0;
      else
        same_padding(g.in[d], g.kernel[d], g.stride[d], g.dilation[d], g.pad_before[d],
                     g.pad_after[d]);
    }
    return;
  }
  if (py::isinstance<py::tuple>(obj) || py::isinstance<py::list>(obj)) {
    const py::sequence seq = py::reinterpret_borrow<py::sequence>(obj);
    if (static_cast<int>(seq.size()) != g.rank)
      throw py::value_error(std::string(fn) + "(): padding must have " + std::to_string(g.rank) +
                            " entries (one per spatial dimension), got " +
                            std::to_string(seq.size()));
    for (int d = 0; d < g.rank; ++d) {
      py::handle item = seq[size_t(d)];
      if (py::isinstance<py::tuple>(item) || py::isinstance<py::list>(item)) {
        const py::sequence pair = py::reinterpret_borrow<py::sequence>(item);
        if (pair.size() != 2)
          throw py::value_error(std::string(fn) + "(): padding[" + std::to_string(d) +
                                "] must be a (before, after) pair, got " +
                                std::to_string(pair.size()) + " values");
        g.pad_before[d] = positive_int(pair[0], fn, "padding", 0);
        g.pad_after[d] = positive_int(pair[1], fn, "padding", 0);
      } else {
        g.pad_before[d] = g.pad_after[d] = positive_int(item, fn, "padding", 0);
      }
    }
    return;
  }
  if (PyBool_Check(obj.ptr()) || !PyIndex_Check(obj.ptr()))
    throw py::type_error(std::string(fn) +
                         "(): padding must be 'valid', 'same', an int or per-dimension "
                         "(before, after) pairs, got " + type_name(obj));
  const int64_t p = positive_int(obj, fn, "padding", 0);
  for (int d = 0; d < g.rank; ++d) g.pad_before[d] = g.pad_after[d] = p;
}

// Computes g.out; raises when a window does not fit in the padded input.
inline void finish_geometry(Geometry& g, const char* fn, const char* window_name) {
  for (int d = 0; d < g.rank; ++d) {
    g.out[d] = output_extent(g.in[d], g.kernel[d], g.stride[d], g.dilation[d], g.pad_before[d],
                             g.pad_after[d]);
    if (g.out[d] < 1)
      throw py::value_error(
          std::string(fn) + "(): the " + window_name + " (" + std::to_string(g.kernel[d]) +
          ", dilation " + std::to_string(g.dilation[d]) + ") is larger than the padded input (" +
          std::to_string(g.in[d] + g.pad_before[d] + g.pad_after[d]) +
          ") in spatial dimension " + std::to_string(d));
  }
}

}  // namespace cnnkit::bind

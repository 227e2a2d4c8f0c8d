// Parsing of the spatial arguments of convolution and pooling (stride,
// dilation, padding) into a Geometry, with messages that name the argument.
// Sizes derived from them are checked in csrc/geometry.hpp (resolve_geometry).
#pragma once

#include <pybind11/pybind11.h>

#include <array>
#include <string>

#include "geometry.hpp"
#include "validate.hpp"

namespace cnnkit::bind {

inline int64_t positive_int(py::handle obj, const char* fn, const char* name, int64_t minimum) {
  return int_arg(obj, fn, name, minimum, INT64_MAX, "an int or a tuple of ints");
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

// The name of the argument that sets the window of `fn`: "dilation" for
// convolution (the kernel size comes from w's shape), "pool_size" for pooling.
inline std::string too_large(const char* fn, const char* name, int d, const char* what) {
  return prefix(fn, name) + "makes the " + what + " in spatial dimension " + std::to_string(d) +
         " larger than the addressable size (2**60)";
}

// Fills g.pad_before/pad_after from `padding`: "valid", "same", an int, a
// tuple of `rank` ints, or a tuple of `rank` (before, after) pairs. g.in,
// g.kernel, g.stride and g.dilation must be set; `window_name` is the
// argument that sets the window extent (dilation or pool_size), `name` the
// padding's own (conv_stem's pool_padding).
inline void parse_padding(py::handle obj, Geometry& g, const char* fn, const char* window_name,
                          const char* name = "padding") {
  const char* expected = "'valid', 'same', an int or per-dimension (before, after) pairs";
  if (PyUnicode_Check(obj.ptr())) {
    const std::string s = str_arg(obj, fn, name, expected);
    if (s != "valid" && s != "same")
      throw py::value_error(prefix(fn, name) + "must be " + expected + ", got '" + s + "'");
    for (int d = 0; d < g.rank; ++d) {
      g.pad_before[d] = g.pad_after[d] = 0;
      if (s == "valid") continue;
      int64_t span = 0;
      if (!dilated_extent(g.kernel[d], g.dilation[d], span))
        throw py::value_error(too_large(fn, window_name, d, "window extent"));
      same_padding(g.in[d], span, g.stride[d], g.pad_before[d], g.pad_after[d]);
    }
    return;
  }
  if (py::isinstance<py::tuple>(obj) || py::isinstance<py::list>(obj)) {
    const py::sequence seq = py::reinterpret_borrow<py::sequence>(obj);
    if (static_cast<int>(seq.size()) != g.rank)
      throw py::value_error(prefix(fn, name) + "must have " + std::to_string(g.rank) +
                            " entries (one per spatial dimension), got " +
                            std::to_string(seq.size()));
    for (int d = 0; d < g.rank; ++d) {
      py::handle item = seq[size_t(d)];
      if (py::isinstance<py::tuple>(item) || py::isinstance<py::list>(item)) {
        const py::sequence pair = py::reinterpret_borrow<py::sequence>(item);
        if (pair.size() != 2)
          throw py::value_error(std::string(fn) + "(): " + name + "[" + std::to_string(d) +
                                "] must be a (before, after) pair, got " +
                                std::to_string(pair.size()) + " values");
        g.pad_before[d] = positive_int(pair[0], fn, name, 0);
        g.pad_after[d] = positive_int(pair[1], fn, name, 0);
      } else {
        g.pad_before[d] = g.pad_after[d] = positive_int(item, fn, name, 0);
      }
    }
    return;
  }
  if (PyBool_Check(obj.ptr()) || !PyIndex_Check(obj.ptr()))
    throw py::type_error(prefix(fn, name) + "must be " + expected + ", got " +
                         type_name(obj));
  const int64_t p = positive_int(obj, fn, name, 0);
  for (int d = 0; d < g.rank; ++d) g.pad_before[d] = g.pad_after[d] = p;
}

// Computes g.out (resolve_geometry); raises when a size is beyond the
// addressable or a window does not fit in the padded input. `window` names
// the window in messages ("kernel", "pool_size") and `window_name` the
// argument that stretches it ("dilation", "pool_size").
inline void finish_geometry(Geometry& g, const char* fn, const char* window,
                            const char* window_name, int64_t channels, int64_t item_bytes) {
  const GeometryFault f = resolve_geometry(g, channels, item_bytes);
  const int d = f.dim;
  switch (f.kind) {
    case GeometryFault::none:
      return;
    case GeometryFault::dilation:
      throw py::value_error(too_large(fn, window_name, d, "window extent"));
    case GeometryFault::padding:
      throw py::value_error(too_large(fn, "padding", d, "padded input"));
    case GeometryFault::volume:
      if (d < 0)
        throw py::value_error(std::string(fn) + "(): x has " + std::to_string(channels) +
                              " channels, beyond the addressable size (2**60 bytes)");
      throw py::value_error(prefix(fn, "padding") +
                            "makes the padded input larger than the addressable size (2**60 "
                            "bytes), got padding (" + std::to_string(g.pad_before[d]) + ", " +
                            std::to_string(g.pad_after[d]) + ") in spatial dimension " +
                            std::to_string(d));
    case GeometryFault::window:
      throw py::value_error(std::string(fn) + "(): the " + window + " (" +
                            std::to_string(g.kernel[d]) + ", dilation " +
                            std::to_string(g.dilation[d]) + ") is larger than the padded input (" +
                            std::to_string(f.padded) + ") in spatial dimension " +
                            std::to_string(d));
  }
}

}  // namespace cnnkit::bind

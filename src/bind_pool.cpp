// Bindings of the pooling kernels (csrc/pool.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "pool.hpp"
#include "spatial_args.hpp"
#include "validate.hpp"
#include "without_gil.hpp"

namespace cnnkit::bind {

namespace {

enum class Pool { max, avg };

// x: a float array (N, *spatial, C) with 1 to 3 spatial dimensions.
py::array spatial_input(py::handle obj, const char* fn) {
  py::array x = as_array(obj, fn, "x");
  if (x.ndim() < 3 || x.ndim() > 5)
    throw py::value_error(prefix(fn, "x") +
                          "must have 3 to 5 dimensions, (N, *spatial, C) with 1 to 3 spatial "
                          "dimensions, got shape " + shape_str(x));
  float_type(x, fn, "x");
  return x;
}

int64_t batch_of(const py::array& x) { return x.shape(0); }
int64_t channels_of(const py::array& x) { return x.shape(x.ndim() - 1); }

Geometry pool_geometry(const py::array& x, py::handle pool_size, py::handle strides,
                       py::handle padding, const char* fn) {
  Geometry g;
  g.rank = static_cast<int>(x.ndim()) - 2;
  for (int d = 0; d < g.rank; ++d) g.in[d] = x.shape(1 + d);
  const auto kernel = per_dim(pool_size, g.rank, fn, "pool_size");
  const auto stride = strides.is_none() ? kernel : per_dim(strides, g.rank, fn, "stride");
  for (int d = 0; d < g.rank; ++d) {
    g.kernel[d] = kernel[size_t(d)];
    g.stride[d] = stride[size_t(d)];
  }
  parse_padding(padding, g, fn, "pool_size");
  finish_geometry(g, fn, "pool_size", "pool_size", channels_of(x), 8);
  const int d = first_empty_window_dim(g);
  if (d >= 0)
    throw py::value_error(std::string(fn) +
                          "(): padding must leave at least one input element in every window, "
                          "got padding (" + std::to_string(g.pad_before[d]) + ", " +
                          std::to_string(g.pad_after[d]) + ") with pool_size " +
                          std::to_string(g.kernel[d]) + " and stride " +
                          std::to_string(g.stride[d]) + " for size " + std::to_string(g.in[d]) +
                          " in spatial dimension " + std::to_string(d));
  return g;
}

std::vector<py::ssize_t> output_shape(const py::array& x, const Geometry& g) {
  std::vector<py::ssize_t> shape{x.shape(0)};
  for (int d = 0; d < g.rank; ++d) shape.push_back(static_cast<py::ssize_t>(g.out[d]));
  shape.push_back(x.shape(x.ndim() - 1));
  return shape;
}

std::string tuple_str(const std::vector<py::ssize_t>& shape) {
  std::string s = "(";
  for (size_t d = 0; d < shape.size(); ++d) s += (d ? ", " : "") + std::to_string(shape[d]);
  return s + ")";
}

auto pool_forward(Pool kind, const char* fn) {
  return [kind, fn](py::handle x_obj, py::handle pool_size, py::handle strides,
                    py::handle padding) -> py::object {
    const py::array raw = spatial_input(x_obj, fn);
    const Geometry g = pool_geometry(raw, pool_size, strides, padding, fn);
    return with_float(float_type(raw, fn, "x"), [&](auto tag) -> py::object {
      using T = decltype(tag);
      const auto x = contiguous<T>(raw, fn, "x");
      py::array_t<T> y(output_shape(raw, g));
      if (y.size() == 0) return y;  // at once, whatever the other extents
      const T* px = x.data();
      T* py_ = y.mutable_data();
      without_gil([&] {
        if (kind == Pool::max)
          cnnkit::max_pool(g, batch_of(raw), channels_of(raw), px, py_);
        else
          cnnkit::avg_pool(g, batch_of(raw), channels_of(raw), px, py_);
      });
      return y;
    });
  };
}

auto pool_backward(Pool kind, const char* fn, const char* forward_name) {
  return [kind, fn, forward_name](py::handle x_obj, py::handle dy_obj, py::handle pool_size,
                                  py::handle strides, py::handle padding) -> py::object {
    const py::array raw_x = spatial_input(x_obj, fn);
    const Geometry g = pool_geometry(raw_x, pool_size, strides, padding, fn);
    const py::array raw_dy = as_array(dy_obj, fn, "dy");
    const std::vector<py::ssize_t> expected = output_shape(raw_x, g);
    if (std::vector<py::ssize_t>(raw_dy.shape(), raw_dy.shape() + raw_dy.ndim()) != expected)
      throw py::value_error(prefix(fn, "dy") + "must have the " + forward_name +
                            " output shape " + tuple_str(expected) + ", got shape " +
                            shape_str(raw_dy));
    const Float t = wider(float_type(raw_x, fn, "x"), float_type(raw_dy, fn, "dy"));
    return with_float(t, [&](auto tag) -> py::object {
      using T = decltype(tag);
      const auto dy = contiguous<T>(raw_dy, fn, "dy");
      py::array_t<T> dx(std::vector<py::ssize_t>(raw_x.shape(), raw_x.shape() + raw_x.ndim()));
      if (dx.size() == 0) return dx;
      const T* pdy = dy.data();
      T* pdx = dx.mutable_data();
      const int64_t batch = batch_of(raw_x), channels = channels_of(raw_x);
      if (kind == Pool::max) {
        const auto x = contiguous<T>(raw_x, fn, "x");  // average pooling needs only x's shape
        const T* px = x.data();
        without_gil([&] { cnnkit::max_pool_backward(g, batch, channels, px, pdy, pdx); });
      } else {
        without_gil([&] { cnnkit::avg_pool_backward(g, batch, channels, pdy, pdx); });
      }
      return dx;
    });
  };
}

// max_pool's output and the spatial index of each maximum (csrc/pool.hpp).
py::tuple max_pool_with_indices(py::handle x_obj, py::handle pool_size, py::handle strides,
                                py::handle padding) {
  const char* fn = "max_pool";
  const py::array raw = spatial_input(x_obj, fn);
  const Geometry g = pool_geometry(raw, pool_size, strides, padding, fn);
  return with_float(float_type(raw, fn, "x"), [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const auto x = contiguous<T>(raw, fn, "x");
    py::array_t<T> y(output_shape(raw, g));
    py::array_t<int64_t> indices(output_shape(raw, g));
    const T* px = x.data();
    T* py_ = y.mutable_data();
    int64_t* pi = indices.mutable_data();
    without_gil([&] {
      cnnkit::max_pool_with_indices(g, batch_of(raw), channels_of(raw), px, py_, pi);
    });
    return py::make_tuple(y, indices);
  });
}

// max_pool_backward from the forward pass's indices; x gives only the shape
// and, with dy, the dtype.
py::object max_pool_backward_indices(py::handle x_obj, py::handle dy_obj, py::handle indices_obj,
                                     py::handle pool_size, py::handle strides,
                                     py::handle padding, py::handle relu_obj) {
  const char* fn = "max_pool_backward";
  const py::array raw_x = spatial_input(x_obj, fn);
  const Geometry g = pool_geometry(raw_x, pool_size, strides, padding, fn);
  const py::array raw_dy = as_array(dy_obj, fn, "dy");
  const std::vector<py::ssize_t> expected = output_shape(raw_x, g);
  if (std::vector<py::ssize_t>(raw_dy.shape(), raw_dy.shape() + raw_dy.ndim()) != expected)
    throw py::value_error(prefix(fn, "dy") + "must have the max_pool output shape " +
                          tuple_str(expected) + ", got shape " + shape_str(raw_dy));
  const py::array raw_i = as_array(indices_obj, fn, "indices");
  if (raw_i.dtype().kind() != 'i' && raw_i.dtype().kind() != 'u')
    throw py::type_error(prefix(fn, "indices") + "must have an integer dtype, got " +
                         std::string(py::str(raw_i.dtype())));
  if (std::vector<py::ssize_t>(raw_i.shape(), raw_i.shape() + raw_i.ndim()) != expected)
    throw py::value_error(prefix(fn, "indices") + "must have the max_pool output shape " +
                          tuple_str(expected) + ", got shape " + shape_str(raw_i));
  const bool has_relu = !relu_obj.is_none();
  py::array raw_relu;
  if (has_relu) {
    raw_relu = as_array(relu_obj, fn, "relu_output");
    if (std::vector<py::ssize_t>(raw_relu.shape(), raw_relu.shape() + raw_relu.ndim()) != expected)
      throw py::value_error(prefix(fn, "relu_output") + "must have the max_pool output shape " +
                            tuple_str(expected) + ", got shape " + shape_str(raw_relu));
  }
  const auto indices = contiguous<int64_t>(raw_i, fn, "indices");
  const int64_t in_size = g.in_size(), count = int64_t(indices.size());
  const int64_t* pi = indices.data();
  // The kernel checks the indices as it reads them; after a refusal, the
  // first bad one is looked up for the message.
  const auto refuse = [&] {
    for (int64_t k = 0; k < count; ++k)
      if (pi[k] < 0 || pi[k] >= in_size)
        throw py::value_error(prefix(fn, "indices") + "must be spatial indices in [0, " +
                              std::to_string(in_size) + ") as returned by max_pool, got " +
                              std::to_string(pi[k]));
    throw std::logic_error("max_pool_backward: an index was refused but none is out of range");
  };
  Float t = wider(float_type(raw_x, fn, "x"), float_type(raw_dy, fn, "dy"));
  if (has_relu) t = wider(t, float_type(raw_relu, fn, "relu_output"));
  return with_float(t, [&](auto tag) -> py::object {
    using T = decltype(tag);
    const auto dy = contiguous<T>(raw_dy, fn, "dy");
    py::array_t<T, py::array::c_style> relu;
    if (has_relu) relu = contiguous<T>(raw_relu, fn, "relu_output");
    py::array_t<T> dx(std::vector<py::ssize_t>(raw_x.shape(), raw_x.shape() + raw_x.ndim()));
    const T* pdy = dy.data();
    const T* prelu = has_relu ? relu.data() : nullptr;
    T* pdx = dx.mutable_data();
    bool ok = true;
    without_gil([&] {
      ok = cnnkit::max_pool_backward_indices(g, batch_of(raw_x), channels_of(raw_x), pi, pdy, pdx,
                                             prelu);
    });
    if (!ok) refuse();
    return dx;
  });
}

auto global_pool(Pool kind, const char* fn) {
  return [kind, fn](py::handle x_obj) -> py::object {
    const py::array raw = spatial_input(x_obj, fn);
    bool empty_window = false;
    for (py::ssize_t d = 1; d + 1 < raw.ndim(); ++d) empty_window |= raw.shape(d) == 0;
    if (empty_window)
      throw py::value_error(prefix(fn, "x") +
                            "must have at least one spatial position, got shape " +
                            shape_str(raw));
    return with_float(float_type(raw, fn, "x"), [&](auto tag) -> py::object {
      using T = decltype(tag);
      const auto x = contiguous<T>(raw, fn, "x");
      const int64_t batch = batch_of(raw), channels = channels_of(raw);
      py::array_t<T> y({static_cast<py::ssize_t>(batch), static_cast<py::ssize_t>(channels)});
      if (y.size() == 0) return y;  // at once, whatever the spatial extents
      const int64_t positions = raw.size() / (batch * channels);
      const T* px = x.data();
      T* py_ = y.mutable_data();
      without_gil([&] {
        if (kind == Pool::max)
          cnnkit::global_max_pool(px, batch, positions, channels, py_);
        else
          cnnkit::global_avg_pool(px, batch, positions, channels, py_);
      });
      return y;
    });
  };
}

}  // namespace

void bind_pool(py::module_& m) {
  m.def("max_pool", pool_forward(Pool::max, "max_pool"));
  m.def("avg_pool", pool_forward(Pool::avg, "avg_pool"));
  m.def("max_pool_with_indices", &max_pool_with_indices);
  m.def("max_pool_backward_indices", &max_pool_backward_indices, py::arg("x"), py::arg("dy"),
        py::arg("indices"), py::arg("pool_size"), py::arg("strides"), py::arg("padding"),
        py::arg("relu_output") = py::none());
  m.def("max_pool_backward", pool_backward(Pool::max, "max_pool_backward", "max_pool"));
  m.def("avg_pool_backward", pool_backward(Pool::avg, "avg_pool_backward", "avg_pool"));
  m.def("global_max_pool", global_pool(Pool::max, "global_max_pool"));
  m.def("global_avg_pool", global_pool(Pool::avg, "global_avg_pool"));
}

}  // namespace cnnkit::bind

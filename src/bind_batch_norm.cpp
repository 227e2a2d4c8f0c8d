// Bindings of batch normalisation (csrc/batch_norm.hpp). x is (N, ..., C),
// every per-channel argument (C,); all are cast to the widest float dtype
// among them. The batch statistics of no rows are undefined, so x must have
// at least one row (NumPy would return NaN with a warning).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "batch_norm.hpp"
#include "validate.hpp"

namespace cnnkit::bind {

namespace {

std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

py::array features(py::handle obj, const char* fn, const char* name) {
  py::array a = as_array(obj, fn, name);
  if (a.ndim() < 2)
    throw py::value_error(prefix(fn, name) + "must have shape (N, ..., C), got shape " +
                          shape_str(a));
  bool empty = false;
  for (py::ssize_t d = 0; d + 1 < a.ndim(); ++d) empty = empty || a.shape(d) == 0;
  if (empty)
    throw py::value_error(prefix(fn, name) +
                          "must have at least one row (the statistics of an empty batch are "
                          "undefined), got shape " + shape_str(a));
  return a;
}

py::array per_channel(py::handle obj, int64_t channels, const char* fn, const char* name) {
  py::array a = as_array(obj, fn, name);
  if (a.ndim() != 1 || a.shape(0) != channels)
    throw py::value_error(prefix(fn, name) + "must have shape (" + std::to_string(channels) +
                          ",) (one value per channel of x), got shape " + shape_str(a));
  return a;
}

double epsilon_arg(py::handle obj, const char* fn) {
  const double e = real_arg(obj, fn, "epsilon");
  if (!(e > 0) || !std::isfinite(e))
    throw py::value_error(prefix(fn, "epsilon") + "must be a finite number > 0, got " +
                          std::to_string(e));
  return e;
}

Float widest(std::initializer_list<std::pair<const py::array*, const char*>> arrays,
             const char* fn) {
  Float t = Float::f32;
  for (const auto& [a, name] : arrays) t = wider(t, float_type(*a, fn, name));
  return t;
}

// x's rows: the product of its leading axes (x's size / C; 0 channels: the leading product).
int64_t rows_of(const py::array& x) {
  int64_t rows = 1;
  for (py::ssize_t d = 0; d + 1 < x.ndim(); ++d) rows *= int64_t(x.shape(d));
  return rows;
}

py::tuple batch_norm(py::handle x_obj, py::handle gamma_obj, py::handle beta_obj,
                     py::handle epsilon_obj) {
  const char* fn = "batch_norm";
  const py::array x_raw = features(x_obj, fn, "x");
  const int64_t channels = x_raw.shape(x_raw.ndim() - 1), rows = rows_of(x_raw);
  const py::array g_raw = per_channel(gamma_obj, channels, fn, "gamma");
  const py::array b_raw = per_channel(beta_obj, channels, fn, "beta");
  const double eps = epsilon_arg(epsilon_obj, fn);
  const Float type = widest({{&x_raw, "x"}, {&g_raw, "gamma"}, {&b_raw, "beta"}}, fn);
  return with_float(type, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    py::array_t<T> y(shape_of(x_raw)), mean(channels), var(channels);
    const auto x = contiguous<T>(x_raw, fn, "x");
    const auto gamma = contiguous<T>(g_raw, fn, "gamma");
    const auto beta = contiguous<T>(b_raw, fn, "beta");
    const T *px = x.data(), *pg = gamma.data(), *pb = beta.data();
    T *py_ = y.mutable_data(), *pm = mean.mutable_data(), *pv = var.mutable_data();
    {
      py::gil_scoped_release release;
      cnnkit::batch_norm(px, rows, channels, pg, pb, eps, py_, pm, pv);
    }
    return py::make_tuple(y, mean, var);
  });
}

py::tuple batch_norm_backward(py::handle x_obj, py::handle dy_obj, py::handle gamma_obj,
                              py::handle mean_obj, py::handle var_obj, py::handle epsilon_obj) {
  const char* fn = "batch_norm_backward";
  const py::array x_raw = features(x_obj, fn, "x");
  const py::array dy_raw = as_array(dy_obj, fn, "dy");
  if (shape_of(dy_raw) != shape_of(x_raw))
    throw py::value_error(prefix(fn, "dy") + "must have the shape of x " + shape_str(x_raw) +
                          ", got shape " + shape_str(dy_raw));
  const int64_t channels = x_raw.shape(x_raw.ndim() - 1), rows = rows_of(x_raw);
  const py::array g_raw = per_channel(gamma_obj, channels, fn, "gamma");
  const py::array m_raw = per_channel(mean_obj, channels, fn, "mean");
  const py::array v_raw = per_channel(var_obj, channels, fn, "var");
  const double eps = epsilon_arg(epsilon_obj, fn);
  const Float type = widest(
      {{&x_raw, "x"}, {&dy_raw, "dy"}, {&g_raw, "gamma"}, {&m_raw, "mean"}, {&v_raw, "var"}}, fn);
  return with_float(type, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    py::array_t<T> dx(shape_of(x_raw)), dgamma(channels), dbeta(channels);
    const auto x = contiguous<T>(x_raw, fn, "x");
    const auto dy = contiguous<T>(dy_raw, fn, "dy");
    const auto gamma = contiguous<T>(g_raw, fn, "gamma");
    const auto mean = contiguous<T>(m_raw, fn, "mean");
    const auto var = contiguous<T>(v_raw, fn, "var");
    const T *px = x.data(), *pdy = dy.data(), *pg = gamma.data(), *pm = mean.data(),
            *pv = var.data();
    T *pdx = dx.mutable_data(), *pdg = dgamma.mutable_data(), *pdb = dbeta.mutable_data();
    {
      py::gil_scoped_release release;
      cnnkit::batch_norm_backward(px, pdy, rows, channels, pg, pm, pv, eps, pdx, pdg, pdb);
    }
    return py::make_tuple(dx, dgamma, dbeta);
  });
}

py::array batch_norm_inference(py::handle x_obj, py::handle gamma_obj, py::handle beta_obj,
                               py::handle mean_obj, py::handle var_obj, py::handle epsilon_obj) {
  const char* fn = "batch_norm_inference";
  py::array x_raw = as_array(x_obj, fn, "x");
  if (x_raw.ndim() < 2)
    throw py::value_error(prefix(fn, "x") + "must have shape (N, ..., C), got shape " +
                          shape_str(x_raw));
  const int64_t channels = x_raw.shape(x_raw.ndim() - 1), rows = rows_of(x_raw);
  const py::array g_raw = per_channel(gamma_obj, channels, fn, "gamma");
  const py::array b_raw = per_channel(beta_obj, channels, fn, "beta");
  const py::array m_raw = per_channel(mean_obj, channels, fn, "mean");
  const py::array v_raw = per_channel(var_obj, channels, fn, "var");
  const double eps = epsilon_arg(epsilon_obj, fn);
  const Float type = widest(
      {{&x_raw, "x"}, {&g_raw, "gamma"}, {&b_raw, "beta"}, {&m_raw, "mean"}, {&v_raw, "var"}},
      fn);
  return with_float(type, [&](auto tag) -> py::array {
    using T = decltype(tag);
    py::array_t<T> y(shape_of(x_raw));
    const auto x = contiguous<T>(x_raw, fn, "x");
    const auto gamma = contiguous<T>(g_raw, fn, "gamma");
    const auto beta = contiguous<T>(b_raw, fn, "beta");
    const auto mean = contiguous<T>(m_raw, fn, "mean");
    const auto var = contiguous<T>(v_raw, fn, "var");
    const T *px = x.data(), *pg = gamma.data(), *pb = beta.data(), *pm = mean.data(),
            *pv = var.data();
    T* py_ = y.mutable_data();
    {
      py::gil_scoped_release release;
      cnnkit::batch_norm_inference(px, rows, channels, pg, pb, pm, pv, eps, py_);
    }
    return y;
  });
}

}  // namespace

void bind_batch_norm(py::module_& m) {
  m.def("batch_norm", &batch_norm);
  m.def("batch_norm_backward", &batch_norm_backward);
  m.def("batch_norm_inference", &batch_norm_inference);
}

}  // namespace cnnkit::bind

// Bindings of the convolution kernels (csrc/conv.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "activation_args.hpp"
#include "conv.hpp"
#include "conv_stem.hpp"
#include "pool.hpp"
#include "spatial_args.hpp"
#include "validate.hpp"
#include "conv_weight_cache.hpp"
#include "winograd.hpp"
#include "without_gil.hpp"

namespace cnnkit::bind {

namespace {

std::string shape_of(const std::vector<py::ssize_t>& dims) {
  std::string s = "(";
  for (size_t d = 0; d < dims.size(); ++d) s += (d ? ", " : "") + std::to_string(dims[d]);
  return s + (dims.size() == 1 ? ",)" : ")");
}

// The validated arguments of a convolution.
struct ConvArgs {
  ConvProblem p;
  Float type;
  py::array x, w;
  std::optional<py::array> b;
  std::vector<py::ssize_t> out_shape;
};

ConvArgs conv_args(const char* fn, py::handle x_obj, py::handle w_obj, py::handle b_obj,
                   py::handle stride, py::handle padding, py::handle dilation,
                   py::handle groups_obj) {
  ConvArgs a;
  a.x = as_array(x_obj, fn, "x");
  if (a.x.ndim() < 3 || a.x.ndim() > 5)
    throw py::value_error(prefix(fn, "x") +
                          "must have 3 to 5 dimensions, (N, *spatial, C_in) with 1 to 3 spatial "
                          "dimensions, got shape " + shape_str(a.x));
  const int rank = int(a.x.ndim()) - 2;
  a.w = as_array(w_obj, fn, "w");
  if (a.w.ndim() != rank + 2)
    throw py::value_error(prefix(fn, "w") + "must have shape (*kernel, C_in // groups, C_out) with " +
                          std::to_string(rank) + " kernel dimensions to match x, got shape " +
                          shape_str(a.w));
  a.type = wider(float_type(a.x, fn, "x"), float_type(a.w, fn, "w"));
  const int64_t groups = positive_int(groups_obj, fn, "groups", 1);
  ConvProblem& p = a.p;
  p.batch = a.x.shape(0);
  p.in_channels = a.x.shape(rank + 1);
  p.out_channels = a.w.shape(rank + 1);
  p.groups = groups;
  if (p.in_channels % groups != 0)
    throw py::value_error(prefix(fn, "groups") + "must divide the " +
                          std::to_string(p.in_channels) + " input channels of x, got " +
                          std::to_string(groups));
  if (p.out_channels % groups != 0)
    throw py::value_error(prefix(fn, "groups") + "must divide the " +
                          std::to_string(p.out_channels) + " output channels of w, got " +
                          std::to_string(groups));
  if (a.w.shape(rank) * groups != p.in_channels)
    throw py::value_error(prefix(fn, "w") + "must have C_in // groups = " +
                          std::to_string(p.in_channels / groups) +
                          " input channels (axis -2) for x with " +
                          std::to_string(p.in_channels) + " channels and groups=" +
                          std::to_string(groups) + ", got shape " + shape_str(a.w));
  Geometry& g = p.g;
  g.rank = rank;
  const auto strides = per_dim(stride, rank, fn, "stride");
  const auto dilations = per_dim(dilation, rank, fn, "dilation");
  for (int d = 0; d < rank; ++d) {
    g.in[d] = a.x.shape(d + 1);
    g.kernel[d] = a.w.shape(d);
    if (g.kernel[d] < 1)
      throw py::value_error(prefix(fn, "w") + "must have kernel sizes >= 1, got shape " +
                            shape_str(a.w));
    g.stride[d] = strides[size_t(d)];
    g.dilation[d] = dilations[size_t(d)];
  }
  parse_padding(padding, g, fn, "dilation");
  finish_geometry(g, fn, "kernel", "dilation", p.in_channels, 8);
  if (!b_obj.is_none()) {
    a.b = as_array(b_obj, fn, "b");
    if (a.b->ndim() != 1 || a.b->shape(0) != p.out_channels)
      throw py::value_error(prefix(fn, "b") + "must have shape (" +
                            std::to_string(p.out_channels) + ",) to match w, got shape " +
                            shape_str(*a.b));
    a.type = wider(a.type, float_type(*a.b, fn, "b"));
  }
  a.out_shape = {py::ssize_t(p.batch)};
  for (int d = 0; d < rank; ++d) a.out_shape.push_back(py::ssize_t(g.out[d]));
  a.out_shape.push_back(py::ssize_t(p.out_channels));
  return a;
}

// winograd: None (automatic), True (always; the shape must allow it) or False (never).
ConvAlgorithm algorithm_arg(py::handle obj, const ConvProblem& p, const char* fn) {
  if (obj.is_none()) return ConvAlgorithm::automatic;
  if (!PyBool_Check(obj.ptr()))
    throw py::type_error(prefix(fn, "winograd") + "must be None, True or False, got " +
                         type_name(obj));
  if (!obj.cast<bool>()) return ConvAlgorithm::no_winograd;
  const Geometry& g = p.g;
  if (g.rank != 2 || g.kernel[0] != 3 || g.kernel[1] != 3 || g.stride[0] != 1 ||
      g.stride[1] != 1 || g.dilation[0] != 1 || g.dilation[1] != 1 || p.groups != 1)
    throw py::value_error(
        std::string(fn) + "(): winograd=True needs a 2-D convolution with a 3x3 kernel, stride 1, dilation 1 and groups=1, got " +
        std::to_string(g.rank) + "-D with kernel " + std::to_string(g.kernel[0]) +
        (g.rank > 1 ? "x" + std::to_string(g.kernel[1]) : std::string()) + ", stride " +
        std::to_string(g.stride[0]) + ", dilation " + std::to_string(g.dilation[0]) +
        ", groups=" + std::to_string(p.groups));
  return ConvAlgorithm::winograd;
}

// The bytes [first, last) an array's elements span (empty for an empty array).
std::pair<const char*, const char*> extent(const py::array& a) {
  const char* lo = static_cast<const char*>(a.data());
  const char* hi = lo;
  if (a.size() == 0) return {lo, lo};
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    const py::ssize_t step = a.strides(d) * (a.shape(d) - 1);
    (step < 0 ? lo : hi) += step;
  }
  return {lo, hi + a.itemsize()};
}

// out= of conv: a writeable ndarray of the result's dtype and shape whose
// channels are contiguous and whose pixels lie a fixed ldy >= C_out elements
// apart in a row-major (N, *spatial) order -- a dense array, or a channel
// slice buf[..., c0:c0 + C_out] of a C-contiguous (N, *spatial, C_total)
// buffer. Returns ldy. It must not share memory with an operand (the
// kernels read them while writing out).
int64_t out_arg(const py::array& out, Float type, const std::vector<py::ssize_t>& shape,
                const std::vector<const py::array*>& operands,
                const std::vector<const char*>& names, const char* fn) {
  const Float want = type;
  const char* type_str = want == Float::f32 ? "float32" : "float64";
  const char kind = out.dtype().kind();
  if (kind != 'f' || out.itemsize() != (want == Float::f32 ? 4 : 8) ||
      !out.dtype().attr("isnative").cast<bool>())
    throw py::type_error(prefix(fn, "out") + "must have the result's dtype " + type_str +
                         " (native byte order), got " + std::string(py::str(out.dtype())));
  if (std::vector<py::ssize_t>(out.shape(), out.shape() + out.ndim()) != shape)
    throw py::value_error(prefix(fn, "out") + "must have the output's shape " + shape_of(shape) +
                          ", got shape " + shape_str(out));
  if (!out.writeable())
    throw py::value_error(prefix(fn, "out") + "must be writeable, got a read-only array");
  if (out.size() == 0) return shape.back();  // nothing is written
  const py::ssize_t item = out.itemsize(), nd = out.ndim(), cout = shape.back();
  const auto layout_error = [&] {
    std::string got = "(";
    for (py::ssize_t d = 0; d < nd; ++d) got += (d ? ", " : "") + std::to_string(out.strides(d));
    throw py::value_error(prefix(fn, "out") +
                          "must be a dense array or a channel slice buf[..., c0:c0 + C_out] of a "
                          "C-contiguous channels-last buffer (channels contiguous, pixels evenly "
                          "spaced in row-major order), got strides " + got + (nd == 1 ? ",)" : ")") +
                          " for shape " + shape_str(out));
  };
  if (reinterpret_cast<uintptr_t>(out.data()) % uintptr_t(item) != 0) layout_error();
  if (cout > 1 && out.strides(nd - 1) != item) layout_error();
  // ldy from the innermost non-channel axis with more than one position.
  int64_t ldy = cout;
  for (py::ssize_t d = nd - 2, span = 1; d >= 0; span *= shape[size_t(d)], --d)
    if (shape[size_t(d)] > 1) {
      if (out.strides(d) % (item * span) != 0) layout_error();
      ldy = out.strides(d) / (item * span);
      break;
    }
  if (ldy < cout) layout_error();
  for (py::ssize_t d = nd - 2, span = 1; d >= 0; span *= shape[size_t(d)], --d)
    if (shape[size_t(d)] > 1 && out.strides(d) != ldy * span * item) layout_error();
  const auto [lo, hi] = extent(out);
  for (size_t i = 0; i < operands.size(); ++i) {
    const auto [a, b] = extent(*operands[i]);
    if (a < hi && lo < b)
      throw py::value_error(prefix(fn, "out") + "must not share memory with " + names[i] +
                            " (the convolution reads it while writing out)");
  }
  return ldy;
}

py::object conv(py::handle x, py::handle w, py::handle b, py::handle stride, py::handle padding,
                py::handle dilation, py::handle groups, py::handle activation,
                py::handle negative_slope, py::handle winograd, py::handle residual_obj,
                py::handle out_obj) {
  const char* fn = "conv";
  ConvArgs a = conv_args(fn, x, w, b, stride, padding, dilation, groups);
  a.p.algorithm = algorithm_arg(winograd, a.p, fn);
  const ActivationArg act = activation_arg(activation, negative_slope, fn);
  // A residual block's Add (and ReLU) in the convolution's store.
  std::optional<py::array> residual;
  if (!residual_obj.is_none()) {
    if (act.kind != Activation::none && act.kind != Activation::relu)
      throw py::value_error(prefix(fn, "activation") +
                            "must be None, 'linear' or 'relu' with a residual, got " +
                            std::string(py::str(activation)));
    residual = as_array(residual_obj, fn, "residual");
    const std::vector<py::ssize_t> r_shape(residual->shape(),
                                           residual->shape() + residual->ndim());
    if (r_shape != a.out_shape)
      throw py::value_error(prefix(fn, "residual") + "must have the output's shape " +
                            shape_of(a.out_shape) + ", got shape " + shape_str(*residual));
    a.type = wider(a.type, float_type(*residual, fn, "residual"));
  }
  // A preallocated output, possibly a channel slice of a wider buffer.
  std::optional<py::array> out;
  int64_t ldy = a.p.out_channels;
  if (!out_obj.is_none()) {
    if (!py::isinstance<py::array>(out_obj))
      throw py::type_error(prefix(fn, "out") + "must be a numpy.ndarray (written in place), got " +
                           type_name(out_obj));
    out = py::reinterpret_borrow<py::array>(out_obj);
    std::vector<const py::array*> operands{&a.x, &a.w};
    std::vector<const char*> names{"x", "w"};
    if (a.b) operands.push_back(&*a.b), names.push_back("b");
    if (residual) operands.push_back(&*residual), names.push_back("residual");
    ldy = out_arg(*out, a.type, a.out_shape, operands, names, fn);
  }
  return with_float(a.type, [&](auto tag) -> py::object {
    using T = decltype(tag);
    const auto xc = contiguous<T>(a.x, fn, "x"), wc = contiguous<T>(a.w, fn, "w");
    py::array_t<T, py::array::c_style> bc, rc;
    if (a.b) bc = contiguous<T>(*a.b, fn, "b");
    if (residual) rc = contiguous<T>(*residual, fn, "residual");
    py::array y = out ? *out : py::array(py::array_t<T>(a.out_shape));
    if (y.size() == 0) return y;  // at once, whatever the other extents
    const T* px = xc.data();
    const T* pw = wc.data();
    const T* pb = a.b ? bc.data() : nullptr;
    T* py_ = static_cast<T*>(y.mutable_data());
    if (residual) {
      const T* pr = rc.data();
      const bool relu = act.kind == Activation::relu;
      without_gil([&] { conv_forward_residual(a.p, px, pw, pb, pr, relu, py_, ldy); });
      return y;
    }
    without_gil(
        [&] { conv_forward(a.p, px, pw, pb, py_, ldy, act.kind, T(act.negative_slope)); });
    return y;
  });
}

py::tuple conv_backward(py::handle x, py::handle w, py::handle dy_obj, py::handle stride,
                        py::handle padding, py::handle dilation, py::handle groups, bool need_x,
                        bool need_w, bool need_b, py::handle y_obj, py::handle activation,
                        py::handle negative_slope, py::handle winograd) {
  const char* fn = "conv_backward";
  const ActivationArg act = activation_arg(activation, negative_slope, fn);
  no_backward_of(act, fn);
  ConvArgs a = conv_args(fn, x, w, py::none(), stride, padding, dilation, groups);
  a.p.algorithm = algorithm_arg(winograd, a.p, fn);
  const py::array dy = as_array(dy_obj, fn, "dy");
  const std::vector<py::ssize_t> dy_shape(dy.shape(), dy.shape() + dy.ndim());
  if (dy_shape != a.out_shape)
    throw py::value_error(prefix(fn, "dy") + "must have the output's shape " +
                          shape_of(a.out_shape) + ", got shape " + shape_str(dy));
  a.type = wider(a.type, float_type(dy, fn, "dy"));
  // The forward's fused activation: its gradient mask is read from the
  // output y, applied to dy in one pass before the three gradients.
  py::array y;
  if (act.kind != Activation::none) {
    if (y_obj.is_none())
      throw py::value_error(prefix(fn, "y") +
                            "must be the forward's output when activation is given, got None");
    y = as_array(y_obj, fn, "y");
    const std::vector<py::ssize_t> y_shape(y.shape(), y.shape() + y.ndim());
    if (y_shape != a.out_shape)
      throw py::value_error(prefix(fn, "y") + "must have the output's shape " +
                            shape_of(a.out_shape) + ", got shape " + shape_str(y));
    a.type = wider(a.type, float_type(y, fn, "y"));
  }
  return with_float(a.type, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const auto xc = contiguous<T>(a.x, fn, "x"), wc = contiguous<T>(a.w, fn, "w");
    py::array_t<T, py::array::c_style> dyc = contiguous<T>(dy, fn, "dy");
    py::object dx = py::none(), dw = py::none(), db = py::none();
    T *pdx = nullptr, *pdw = nullptr, *pdb = nullptr;
    if (need_x) {
      py::array_t<T> arr(std::vector<py::ssize_t>(a.x.shape(), a.x.shape() + a.x.ndim()));
      pdx = arr.mutable_data(), dx = arr;
    }
    if (need_w) {
      py::array_t<T> arr(std::vector<py::ssize_t>(a.w.shape(), a.w.shape() + a.w.ndim()));
      pdw = arr.mutable_data(), dw = arr;
    }
    if (need_b) {
      py::array_t<T> arr(py::ssize_t(a.p.out_channels));
      pdb = arr.mutable_data(), db = arr;
    }
    // An input layer (no dx wanted) with few channels masks dy as it reads
    // it, and sums the bias gradient in the same pass.
    if (!need_x && pdw && (act.kind != Activation::none || pdb) && dyc.size() > 0 &&
        xc.size() > 0) {
      py::array_t<T, py::array::c_style> yc;
      if (act.kind != Activation::none) yc = contiguous<T>(y, fn, "y");
      const T* py_ = act.kind != Activation::none ? yc.data() : nullptr;
      const T* px = xc.data();
      const T* pdy = dyc.data();
      bool fused = false;
      without_gil([&] {
        fused = conv_backward_weight_fused(a.p, act.kind, T(act.negative_slope), px, py_, pdy, pdw,
                                           pdb);
      });
      if (fused) return py::make_tuple(dx, dw, db);
    }
    bool bias_done = false;
    if (act.kind != Activation::none) {
      const auto yc = contiguous<T>(y, fn, "y");
      py::array_t<T, py::array::c_style> masked(std::vector<py::ssize_t>(dy.shape(), dy.shape() + dy.ndim()));
      const T* py_ = yc.data();
      const T* pg = dyc.data();
      T* pm = masked.mutable_data();
      const int64_t count = int64_t(masked.size());
      // With the bias gradient wanted, the mask and its sums in one pass.
      bias_done = pdb != nullptr && count > 0;
      without_gil([&] {
        if (bias_done)
          conv_backward_activation_bias(a.p, act.kind, T(act.negative_slope), py_, pg, pm, pdb);
        else
          activation_backward(act.kind, T(act.negative_slope), py_, pg, pm, count);
      });
      dyc = masked;
    }
    const T* px = xc.data();
    const T* pw = wc.data();
    const T* pdy = dyc.data();
    // An empty operand makes its gradients sums over nothing: zeros, at
    // once, rather than a loop over a huge batch of empty items.
    const bool none = dyc.size() == 0;
    without_gil([&] {
      if (pdx && (none || wc.size() == 0))
        std::fill_n(pdx, xc.size(), T(0));
      else if (pdx)
        conv_backward_input(a.p, pw, pdy, pdx);
      if (pdw && (none || xc.size() == 0))
        std::fill_n(pdw, wc.size(), T(0));
      else if (pdw)
        conv_backward_weight(a.p, px, pdy, pdw);
      if (pdb && none)
        std::fill_n(pdb, a.p.out_channels, T(0));
      else if (pdb && !bias_done)
        conv_backward_bias(a.p, pdy, pdb);
    });
    return py::make_tuple(dx, dw, db);
  });
}

// A max pool's geometry over the convolution's output.
Geometry pool_geometry(const ConvArgs& a, py::handle pool_size, py::handle pool_stride,
                       py::handle pool_padding, const char* fn) {
  Geometry pg;
  pg.rank = a.p.g.rank;
  for (int d = 0; d < pg.rank; ++d) pg.in[d] = a.p.g.out[d];
  const auto kernel = per_dim(pool_size, pg.rank, fn, "pool_size");
  const auto strides =
      pool_stride.is_none() ? kernel : per_dim(pool_stride, pg.rank, fn, "pool_stride");
  for (int d = 0; d < pg.rank; ++d) {
    pg.kernel[d] = kernel[size_t(d)];
    pg.stride[d] = strides[size_t(d)];
  }
  parse_padding(pool_padding, pg, fn, "pool_size", "pool_padding");
  finish_geometry(pg, fn, "pool_size", "pool_size", a.p.out_channels, 8);
  if (const int d = first_empty_window_dim(pg); d >= 0)
    throw py::value_error(prefix(fn, "pool_padding") +
                          "must leave at least one input element in every window, got padding (" +
                          std::to_string(pg.pad_before[d]) + ", " +
                          std::to_string(pg.pad_after[d]) + ") in spatial dimension " +
                          std::to_string(d));
  return pg;
}

std::vector<py::ssize_t> pooled_shape(const ConvArgs& a, const Geometry& pg) {
  std::vector<py::ssize_t> pooled{py::ssize_t(a.p.batch)};
  for (int d = 0; d < pg.rank; ++d) pooled.push_back(py::ssize_t(pg.out[d]));
  pooled.push_back(py::ssize_t(a.p.out_channels));
  return pooled;
}

// A network's first layer in one call (csrc/conv_stem.hpp): the convolution of
// a channels-last or channels-first x with its activation, max-pooled when
// pool_size is given.
py::object conv_stem(py::handle x_obj, py::handle w, py::handle b, py::handle stride,
                     py::handle padding, py::handle activation, py::handle negative_slope,
                     bool channels_first, py::handle pool_size, py::handle pool_stride,
                     py::handle pool_padding) {
  const char* fn = "conv_stem";
  const py::array raw = as_array(x_obj, fn, "x");
  if (channels_first && (raw.ndim() < 3 || raw.ndim() > 5))
    throw py::value_error(prefix(fn, "x") +
                          "must have 3 to 5 dimensions, (N, C_in, *spatial) with 1 to 3 spatial "
                          "dimensions, got shape " + shape_str(raw));
  // The checks and the geometry read x's shape channels-last: a transposed view.
  py::object view = raw;
  if (channels_first) {
    py::tuple axes(raw.ndim());
    axes[0] = 0;
    for (py::ssize_t d = 1; d < raw.ndim(); ++d) axes[d] = d == raw.ndim() - 1 ? 1 : d + 1;
    view = raw.attr("transpose")(axes);
  }
  ConvArgs a = conv_args(fn, view, w, b, stride, padding, py::int_(1), py::int_(1));
  const ActivationArg act = activation_arg(activation, negative_slope, fn);
  std::optional<Geometry> pg;
  std::vector<py::ssize_t> out_shape = a.out_shape;
  if (!pool_size.is_none()) {
    pg = pool_geometry(a, pool_size, pool_stride, pool_padding, fn);
    out_shape = pooled_shape(a, *pg);
  } else if (!pool_stride.is_none() || !pool_padding.is_none()) {
    throw py::value_error(prefix(fn, "pool_size") +
                          "must be given with pool_stride or pool_padding, got None");
  }
  return with_float(a.type, [&](auto tag) -> py::object {
    using T = decltype(tag);
    const auto xc = contiguous<T>(raw, fn, "x"), wc = contiguous<T>(a.w, fn, "w");
    py::array_t<T, py::array::c_style> bc;
    if (a.b) bc = contiguous<T>(*a.b, fn, "b");
    py::array_t<T> y(out_shape);
    if (y.size() == 0) return y;
    const T* px = xc.data();
    const T* pw = wc.data();
    const T* pb = a.b ? bc.data() : nullptr;
    T* py_ = y.mutable_data();
    const Geometry* pool = pg ? &*pg : nullptr;
    without_gil([&] {
      cnnkit::conv_stem(a.p, px, channels_first, pw, pb, act.kind, T(act.negative_slope), pool,
                        py_, a.p.out_channels);
    });
    return y;
  });
}

// dw and db of a convolution followed by a max pool, from the pool's output
// gradient dy and its indices (csrc/conv.hpp's conv_backward_weight_pooled),
// with the bits of max_pool_backward then conv_backward(need=("w", "b")).
py::tuple conv_max_pool_backward(py::handle x, py::handle w, py::handle dy_obj,
                                 py::handle indices_obj, py::handle pool_size, py::handle stride,
                                 py::handle padding, py::handle dilation, py::handle groups,
                                 py::handle pool_stride, py::handle pool_padding,
                                 py::handle relu_obj) {
  const char* fn = "conv_max_pool_backward";
  ConvArgs a = conv_args(fn, x, w, py::none(), stride, padding, dilation, groups);
  const Geometry pg = pool_geometry(a, pool_size, pool_stride, pool_padding, fn);
  const std::vector<py::ssize_t> pooled = pooled_shape(a, pg);
  const auto check_shape = [&](const py::array& arr, const char* name) {
    if (std::vector<py::ssize_t>(arr.shape(), arr.shape() + arr.ndim()) != pooled)
      throw py::value_error(prefix(fn, name) + "must have the pooled output's shape " +
                            shape_of(pooled) + ", got shape " + shape_str(arr));
  };
  const py::array dy = as_array(dy_obj, fn, "dy");
  check_shape(dy, "dy");
  a.type = wider(a.type, float_type(dy, fn, "dy"));
  const py::array raw_i = as_array(indices_obj, fn, "indices");
  if (raw_i.dtype().kind() != 'i' && raw_i.dtype().kind() != 'u')
    throw py::type_error(prefix(fn, "indices") + "must have an integer dtype, got " +
                         std::string(py::str(raw_i.dtype())));
  check_shape(raw_i, "indices");
  const bool has_relu = !relu_obj.is_none();
  py::array raw_relu;
  if (has_relu) {
    raw_relu = as_array(relu_obj, fn, "relu_output");
    check_shape(raw_relu, "relu_output");
    a.type = wider(a.type, float_type(raw_relu, fn, "relu_output"));
  }
  const auto indices = contiguous<int64_t>(raw_i, fn, "indices");
  return with_float(a.type, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const auto xc = contiguous<T>(a.x, fn, "x");
    const auto dyc = contiguous<T>(dy, fn, "dy");
    py::array_t<T, py::array::c_style> relu;
    if (has_relu) relu = contiguous<T>(raw_relu, fn, "relu_output");
    py::array_t<T> dw(std::vector<py::ssize_t>(a.w.shape(), a.w.shape() + a.w.ndim()));
    py::array_t<T> db(py::ssize_t(a.p.out_channels));
    const T* px = xc.data();
    const T* pdy = dyc.data();
    const T* prelu = has_relu ? relu.data() : nullptr;
    const int64_t* pi = indices.data();
    T* pdw = dw.mutable_data();
    T* pdb = db.mutable_data();
    const int64_t conv_out = a.p.batch * a.p.g.out_size() * a.p.out_channels;
    if (conv_out == 0 || xc.size() == 0 || dw.size() == 0) {
      std::fill_n(pdw, dw.size(), T(0));
      std::fill_n(pdb, a.p.out_channels, T(0));
      return py::make_tuple(dw, db);
    }
    bool fused = false;
    without_gil([&] {
      const PooledGradient<T> pooled{&pg, pi, pdy, prelu, nullptr};
      fused = conv_backward_weight_pooled(a.p, pooled, px, pdw, pdb);
    });
    if (fused) return py::make_tuple(dw, db);
    // The two calls: the pool's dx in full, then the convolution's gradients.
    py::array_t<T> full(a.out_shape);
    T* pfull = full.mutable_data();
    bool ok = true;
    without_gil([&] {
      ok = max_pool_backward_indices(pg, a.p.batch, a.p.out_channels, pi, pdy, pfull, prelu);
    });
    if (!ok) {
      const int64_t in_size = pg.in_size(), count = int64_t(indices.size());
      for (int64_t k = 0; k < count; ++k)
        if (pi[k] < 0 || pi[k] >= in_size)
          throw py::value_error(prefix(fn, "indices") + "must be spatial indices in [0, " +
                                std::to_string(in_size) + ") as returned by max_pool, got " +
                                std::to_string(pi[k]));
      throw std::logic_error(std::string(fn) + ": an index was refused but none is out of range");
    }
    without_gil([&] {
      if (!conv_backward_weight_fused(a.p, Activation::none, T(0), px, static_cast<const T*>(nullptr),
                                      static_cast<const T*>(pfull), pdw, pdb)) {
        conv_backward_weight(a.p, px, pfull, pdw);
        conv_backward_bias(a.p, pfull, pdb);
      }
    });
    return py::make_tuple(dw, db);
  });
}

// A packed-weight cache's counters (WinogradCacheStats, ConvWeightCacheStats) as a dict.
template <class Stats>
py::dict cache_stats_dict(const Stats& st) {
  py::dict d;
  d["hits"] = st.hits, d["misses"] = st.misses, d["entries"] = st.entries;
  d["bytes"] = st.bytes;
  return d;
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def("conv", &conv, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        py::arg("activation") = py::none(), py::arg("negative_slope") = 0.2,
        py::arg("winograd") = py::none(), py::arg("residual") = py::none(),
        py::arg("out") = py::none());
  m.def("conv_backward", &conv_backward, py::arg("x"), py::arg("w"), py::arg("dy"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        py::arg("need_x"), py::arg("need_w"), py::arg("need_b"), py::arg("y") = py::none(),
        py::arg("activation") = py::none(), py::arg("negative_slope") = 0.2,
        py::arg("winograd") = py::none());
  m.def("conv_max_pool_backward", &conv_max_pool_backward, py::arg("x"), py::arg("w"),
        py::arg("dy"), py::arg("indices"), py::arg("pool_size"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("pool_stride"),
        py::arg("pool_padding"), py::arg("relu_output") = py::none());
  m.def("conv_stem", &conv_stem, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride"),
        py::arg("padding"), py::arg("activation"), py::arg("negative_slope"),
        py::arg("channels_first"), py::arg("pool_size"), py::arg("pool_stride"),
        py::arg("pool_padding"));
  m.def("get_winograd", &winograd_enabled);
  m.def("set_winograd", [](py::handle on) {
    if (!PyBool_Check(on.ptr()))
      throw py::type_error("set_winograd(): on must be True or False, got " + type_name(on));
    set_winograd_enabled(on.cast<bool>());
  });
  // Internal (tests, diagnostics): the packed-filter cache of csrc/winograd.cpp.
  m.def("_winograd_cache_stats", [] { return cache_stats_dict(winograd_cache_stats()); });
  m.def("_clear_winograd_cache", &clear_winograd_cache);
  // Internal (tests, diagnostics): the packed-weight cache of csrc/conv_weight_cache.cpp.
  m.def("_conv_weight_cache_stats", [] { return cache_stats_dict(conv_weight_cache_stats()); });
  m.def("_clear_conv_weight_cache", &clear_conv_weight_cache);
}

}  // namespace cnnkit::bind

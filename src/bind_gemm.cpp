// Binding of the GEMM kernel (csrc/gemm.hpp) as matmul.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <optional>

#include "activation_args.hpp"
#include "gemm.hpp"
#include "validate.hpp"
#include "without_gil.hpp"

namespace cnnkit::bind {

namespace {

// a (M, K) or (B, M, K) times b (K, N) or (B, K, N); a 2-D operand is shared
// by every matrix of a 3-D one. bias (N,) and the activation are fused into
// the GEMM's store.
py::object matmul(py::handle a_obj, py::handle b_obj, py::handle bias_obj, py::handle activation,
                  py::handle negative_slope) {
  const char* fn = "matmul";
  const ActivationArg act = activation_arg(activation, negative_slope, fn);
  const py::array a = as_array(a_obj, fn, "a"), b = as_array(b_obj, fn, "b");
  if (a.ndim() < 2 || a.ndim() > 3)
    throw py::value_error(prefix(fn, "a") + "must have shape (M, K) or (B, M, K), got shape " +
                          shape_str(a));
  if (b.ndim() < 2 || b.ndim() > 3)
    throw py::value_error(prefix(fn, "b") + "must have shape (K, N) or (B, K, N), got shape " +
                          shape_str(b));
  Float t = wider(float_type(a, fn, "a"), float_type(b, fn, "b"));
  const int64_t m = a.shape(a.ndim() - 2), k = a.shape(a.ndim() - 1);
  const int64_t kb = b.shape(b.ndim() - 2), n = b.shape(b.ndim() - 1);
  if (k != kb)
    throw py::value_error("matmul(): the last axis of a (" + std::to_string(k) +
                          ") must equal the second-to-last axis of b, got shapes " +
                          shape_str(a) + " and " + shape_str(b));
  const int64_t ba = a.ndim() == 3 ? a.shape(0) : 1, bb = b.ndim() == 3 ? b.shape(0) : 1;
  if (a.ndim() == 3 && b.ndim() == 3 && ba != bb)
    throw py::value_error("matmul(): a and b must have the same batch size, got shapes " +
                          shape_str(a) + " and " + shape_str(b));
  const int64_t batch = a.ndim() == 3 ? ba : bb;
  std::optional<py::array> bias;
  if (!bias_obj.is_none()) {
    bias = as_array(bias_obj, fn, "bias");
    if (bias->ndim() != 1 || bias->shape(0) != n)
      throw py::value_error(prefix(fn, "bias") + "must have shape (" + std::to_string(n) +
                            ",) to match b, got shape " + shape_str(*bias));
  }
  const bool batched = a.ndim() == 3 || b.ndim() == 3;
  if (bias) t = wider(t, float_type(*bias, fn, "bias"));
  return with_float(t, [&](auto tag) -> py::object {
    using T = decltype(tag);
    // A 2-D operand that is the transpose of a C-contiguous array of T (the
    // dense layer's backward passes w.T and x.T) is read in place by the
    // GEMM's transposed mode, with the same bits as a contiguous copy.
    const auto transposed = [](const py::array& arr) {
      return arr.ndim() == 2 && !py::isinstance<py::array_t<T, py::array::c_style>>(arr) &&
             py::isinstance<py::array_t<T, py::array::f_style>>(arr);
    };
    const bool ta = transposed(a), tb = transposed(b);
    const py::array ac = ta ? a : py::array(contiguous<T>(a, fn, "a"));
    const py::array bc = tb ? b : py::array(contiguous<T>(b, fn, "b"));
    py::array_t<T, py::array::c_style> biasc;
    if (bias) biasc = contiguous<T>(*bias, fn, "bias");
    const Epilogue<T> ep{bias ? biasc.data() : nullptr, act.kind, T(act.negative_slope)};
    const bool fused = bias || act.kind != Activation::none;
    std::vector<py::ssize_t> shape{py::ssize_t(m), py::ssize_t(n)};
    if (batched) shape.insert(shape.begin(), py::ssize_t(batch));
    py::array_t<T> out(shape);
    if (out.size() == 0) return out;  // at once, not one empty product per batch item
    const T* pa = static_cast<const T*>(ac.data());
    const T* pb = static_cast<const T*>(bc.data());
    T* pc = out.mutable_data();
    without_gil([&] {
      for (int64_t i = 0; i < batch; ++i)
        gemm(ta, tb, m, n, k, pa + (ba > 1 ? i * m * k : 0), ta ? m : k,
             pb + (bb > 1 ? i * k * n : 0), tb ? k : n, pc + i * m * n, n, false,
             fused ? &ep : nullptr);
    });
    return out;
  });
}

// dy * activation'(y) for a fused activation's output y: the backward mask
// of matmul(..., activation=...) and conv(..., activation=...).
py::object activation_backward_py(py::handle y_obj, py::handle dy_obj, py::handle activation,
                                  py::handle negative_slope) {
  const char* fn = "activation_backward";
  const ActivationArg act = activation_arg(activation, negative_slope, fn);
  no_backward_of(act, fn);
  const py::array y = as_array(y_obj, fn, "y"), dy = as_array(dy_obj, fn, "dy");
  const std::vector<py::ssize_t> ys(y.shape(), y.shape() + y.ndim()),
      ds(dy.shape(), dy.shape() + dy.ndim());
  if (ys != ds)
    throw py::value_error("activation_backward(): y and dy must have the same shape, got " +
                          shape_str(y) + " and " + shape_str(dy));
  const Float t = wider(float_type(y, fn, "y"), float_type(dy, fn, "dy"));
  return with_float(t, [&](auto tag) -> py::object {
    using T = decltype(tag);
    const auto yc = contiguous<T>(y, fn, "y"), dyc = contiguous<T>(dy, fn, "dy");
    py::array_t<T> out(ds);
    const T* py_ = yc.data();
    const T* pd = dyc.data();
    T* po = out.mutable_data();
    const int64_t count = int64_t(out.size());
    without_gil([&] { activation_backward(act.kind, T(act.negative_slope), py_, pd, po, count); });
    return out;
  });
}

}  // namespace

void bind_gemm(py::module_& m) {
  m.def("matmul", &matmul, py::arg("a"), py::arg("b"), py::arg("bias") = py::none(),
        py::arg("activation") = py::none(), py::arg("negative_slope") = 0.2);
  m.def("activation_backward", &activation_backward_py);
}

}  // namespace cnnkit::bind

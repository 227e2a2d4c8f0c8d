// Bindings of the fused optimizer updates (csrc/optimizer.hpp). They update
// arrays in place, so the variable and its slots must be writeable
// C-contiguous float32/float64 arrays of one dtype (a copy would update
// nothing); the gradient is any array-like of the variable's shape, cast to
// its dtype.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>
#include <vector>

#include "optimizer.hpp"
#include "validate.hpp"

namespace cnnkit::bind {

namespace {

std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

// An array updated in place: an ndarray, writeable, C-contiguous, and (but for
// the variable itself, like = nullptr) of the variable's dtype and shape.
py::array in_place(py::handle obj, const char* fn, const char* name, const py::array* like) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(prefix(fn, name) + "must be a numpy array (it is updated in place), got " +
                         type_name(obj));
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (like == nullptr) {
    if (!a.dtype().equal(py::dtype::of<float>()) && !a.dtype().equal(py::dtype::of<double>()))
      throw py::type_error(prefix(fn, name) + "must have dtype float32 or float64 in native byte "
                           "order, got " + std::string(py::str(a.dtype())));
  } else {
    if (!a.dtype().equal(like->dtype()))
      throw py::type_error(prefix(fn, name) + "must have var's dtype " +
                           std::string(py::str(like->dtype())) + ", got " +
                           std::string(py::str(a.dtype())));
    if (shape_of(a) != shape_of(*like))
      throw py::value_error(prefix(fn, name) + "must have var's shape " + shape_str(*like) +
                            ", got shape " + shape_str(a));
  }
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(prefix(fn, name) + "must be C-contiguous (it is updated in place)");
  if (!a.writeable()) throw py::value_error(prefix(fn, name) + "must be writeable, got a read-only array");
  return a;
}

struct Operand {
  const char* name;
  const void* data;
};

// The kernels read and write through restrict pointers: no two operands may share memory.
void check_disjoint(const std::vector<Operand>& ops, int64_t bytes, const char* fn) {
  for (size_t i = 0; i < ops.size(); ++i)
    for (size_t j = i + 1; j < ops.size(); ++j) {
      const auto a = static_cast<const char*>(ops[i].data), b = static_cast<const char*>(ops[j].data);
      if (bytes > 0 && a < b + bytes && b < a + bytes)
        throw py::value_error(std::string(fn) + "(): " + ops[i].name + " and " + ops[j].name +
                              " must not share memory");
    }
}

double rate_arg(py::handle obj, const char* fn, const char* name, double low, double high) {
  const double r = real_arg(obj, fn, name);
  if (!(r >= low && r <= high))
    throw py::value_error(prefix(fn, name) + "must be in [" + std::to_string(low) + ", " +
                          std::to_string(high) + "], got " + std::to_string(r));
  return r;
}

double finite_arg(py::handle obj, const char* fn, const char* name) {
  const double r = real_arg(obj, fn, name);
  if (!std::isfinite(r)) throw py::value_error(prefix(fn, name) + "must be finite, got " + std::to_string(r));
  return r;
}

template <class T>
py::array_t<T, py::array::c_style> gradient(py::handle obj, const py::array& var, const char* fn) {
  const py::array g = as_array(obj, fn, "grad");
  if (shape_of(g) != shape_of(var))
    throw py::value_error(prefix(fn, "grad") + "must have var's shape " + shape_str(var) +
                          ", got shape " + shape_str(g));
  return contiguous<T>(g, fn, "grad");
}

void sgd_update(py::handle var_obj, py::handle grad_obj, py::handle velocity_obj,
                py::handle learning_rate, py::handle momentum_obj, bool nesterov) {
  const char* fn = "sgd_update";
  py::array var = in_place(var_obj, fn, "var", nullptr);
  const double lr = finite_arg(learning_rate, fn, "learning_rate");
  const double momentum = rate_arg(momentum_obj, fn, "momentum", 0.0, 1.0);
  py::array velocity;
  if (!velocity_obj.is_none()) velocity = in_place(velocity_obj, fn, "velocity", &var);
  else if (momentum != 0.0)
    throw py::value_error(prefix(fn, "velocity") + "must be an array when momentum is not 0, got None");
  with_float(float_type(var, fn, "var"), [&](auto tag) {
    using T = decltype(tag);
    const auto grad = gradient<T>(grad_obj, var, fn);
    const int64_t n = int64_t(var.size());
    T* pv = static_cast<T*>(var.mutable_data());
    T* pm = velocity_obj.is_none() ? nullptr : static_cast<T*>(velocity.mutable_data());
    const T* pg = grad.data();
    std::vector<Operand> ops{{"var", pv}, {"grad", pg}};
    if (pm) ops.push_back({"velocity", pm});
    check_disjoint(ops, n * int64_t(sizeof(T)), fn);
    py::gil_scoped_release release;
    cnnkit::sgd_update(pv, pg, pm, n, T(lr), T(momentum), nesterov);
  });
}

void adam_update(py::handle var_obj, py::handle grad_obj, py::handle m_obj, py::handle v_obj,
                 py::handle v_hat_obj, py::handle step_size, py::handle beta_1, py::handle beta_2,
                 py::handle epsilon_obj) {
  const char* fn = "adam_update";
  py::array var = in_place(var_obj, fn, "var", nullptr);
  py::array m = in_place(m_obj, fn, "m", &var), v = in_place(v_obj, fn, "v", &var);
  py::array v_hat;
  if (!v_hat_obj.is_none()) v_hat = in_place(v_hat_obj, fn, "v_hat", &var);
  const double alpha = finite_arg(step_size, fn, "step_size");
  const double b1 = rate_arg(beta_1, fn, "beta_1", 0.0, 1.0);
  const double b2 = rate_arg(beta_2, fn, "beta_2", 0.0, 1.0);
  const double eps = finite_arg(epsilon_obj, fn, "epsilon");
  if (eps < 0) throw py::value_error(prefix(fn, "epsilon") + "must be >= 0, got " + std::to_string(eps));
  with_float(float_type(var, fn, "var"), [&](auto tag) {
    using T = decltype(tag);
    const auto grad = gradient<T>(grad_obj, var, fn);
    const int64_t n = int64_t(var.size());
    T* pv = static_cast<T*>(var.mutable_data());
    T* pm = static_cast<T*>(m.mutable_data());
    T* pvv = static_cast<T*>(v.mutable_data());
    T* ph = v_hat_obj.is_none() ? nullptr : static_cast<T*>(v_hat.mutable_data());
    const T* pg = grad.data();
    std::vector<Operand> ops{{"var", pv}, {"grad", pg}, {"m", pm}, {"v", pvv}};
    if (ph) ops.push_back({"v_hat", ph});
    check_disjoint(ops, n * int64_t(sizeof(T)), fn);
    // The decay factors as the NumPy formulas use them: 1 - beta in float64, then T.
    py::gil_scoped_release release;
    cnnkit::adam_update(pv, pg, pm, pvv, ph, n, T(alpha), T(1.0 - b1), T(1.0 - b2), T(eps));
  });
}

}  // namespace

void bind_optimizer(py::module_& m) {
  m.def("sgd_update", &sgd_update, py::arg("var"), py::arg("grad"), py::arg("velocity"),
        py::arg("learning_rate"), py::arg("momentum"), py::arg("nesterov"));
  m.def("adam_update", &adam_update, py::arg("var"), py::arg("grad"), py::arg("m"), py::arg("v"),
        py::arg("v_hat"), py::arg("step_size"), py::arg("beta_1"), py::arg("beta_2"),
        py::arg("epsilon"));
}

}  // namespace cnnkit::bind

// Binding of the GEMM kernel (csrc/gemm.hpp) as matmul.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "gemm.hpp"
#include "validate.hpp"

namespace cnnkit::bind {

namespace {

// a (M, K) or (B, M, K) times b (K, N) or (B, K, N); a 2-D operand is shared
// by every matrix of a 3-D one.
py::object matmul(py::handle a_obj, py::handle b_obj) {
  const char* fn = "matmul";
  const py::array a = as_array(a_obj, fn, "a"), b = as_array(b_obj, fn, "b");
  if (a.ndim() < 2 || a.ndim() > 3)
    throw py::value_error(prefix(fn, "a") + "must have shape (M, K) or (B, M, K), got shape " +
                          shape_str(a));
  if (b.ndim() < 2 || b.ndim() > 3)
    throw py::value_error(prefix(fn, "b") + "must have shape (K, N) or (B, K, N), got shape " +
                          shape_str(b));
  const Float t = wider(float_type(a, fn, "a"), float_type(b, fn, "b"));
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
  const bool batched = a.ndim() == 3 || b.ndim() == 3;
  return with_float(t, [&](auto tag) -> py::object {
    using T = decltype(tag);
    const auto ac = contiguous<T>(a, fn, "a"), bc = contiguous<T>(b, fn, "b");
    std::vector<py::ssize_t> shape{py::ssize_t(m), py::ssize_t(n)};
    if (batched) shape.insert(shape.begin(), py::ssize_t(batch));
    py::array_t<T> out(shape);
    if (out.size() == 0) return out;  // at once, not one empty product per batch item
    const T* pa = ac.data();
    const T* pb = bc.data();
    T* pc = out.mutable_data();
    py::gil_scoped_release release;
    for (int64_t i = 0; i < batch; ++i)
      gemm(false, false, m, n, k, pa + (ba > 1 ? i * m * k : 0), k, pb + (bb > 1 ? i * k * n : 0),
           n, pc + i * m * n, n, false);
    return out;
  });
}

}  // namespace

void bind_gemm(py::module_& m) { m.def("matmul", &matmul); }

}  // namespace cnnkit::bind

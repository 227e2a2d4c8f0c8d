// cnnkit._core: the native kernels. The public, documented API is cnnkit.ops;
// these functions take already-named arguments from it.
#include <pybind11/pybind11.h>

#include <stdexcept>

#include "cpu.hpp"
#include "parallel.hpp"
#include "validate.hpp"
#include "without_gil.hpp"

namespace py = pybind11;

namespace cnnkit::bind {
void bind_boxes(py::module_& m);
void bind_pool(py::module_& m);
void bind_conv(py::module_& m);
void bind_gemm(py::module_& m);
void bind_gram(py::module_& m);
void bind_anchors(py::module_& m);
void bind_windows(py::module_& m);
void bind_roi(py::module_& m);
void bind_segmentation(py::module_& m);
void bind_lrn(py::module_& m);
void bind_optimizer(py::module_& m);
void bind_batch_norm(py::module_& m);
void bind_add_relu(py::module_& m);
void bind_concat(py::module_& m);
void bind_layout(py::module_& m);
void bind_block_cache(py::module_& m);
}

PYBIND11_MODULE(_core, m) {
  m.doc() = "cnnkit native kernels (use cnnkit.ops)";
  m.attr("__version__") = CNNKIT_VERSION;
  m.attr("compiler") = CNNKIT_COMPILER;
  m.attr("openmp_version") = _OPENMP;
  cnnkit::bind::python_main_thread =
      py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();

  m.def("get_num_threads", &cnnkit::num_threads);
  m.def("set_num_threads", [](py::handle obj) {
    // int_arg: ints beyond int64 are a ValueError too, not a failed cast.
    const int64_t n = cnnkit::bind::int_arg(obj, "set_num_threads", "n", INT64_MIN);
    if (n < 1 || n > 4096)
      throw py::value_error("set_num_threads(): n must be between 1 and 4096, got " +
                            std::to_string(n));
    cnnkit::set_num_threads(static_cast<int>(n));
  });

  m.def("get_isa", [] { return cnnkit::isa_name(cnnkit::active_isa()); });
  m.def("available_isas", [] {
    py::list out;
    for (auto isa : {cnnkit::Isa::baseline, cnnkit::Isa::avx2, cnnkit::Isa::avx512})
      if (cnnkit::isa_supported(isa)) out.append(cnnkit::isa_name(isa));
    return out;
  });
  m.def("set_isa", [](py::handle obj) {
    const std::string name = cnnkit::bind::str_arg(obj, "set_isa", "name", "'baseline' or 'avx2'");
    cnnkit::Isa isa;
    if (!cnnkit::parse_isa(name.c_str(), isa))
      throw py::value_error(
          "set_isa(): name must be 'baseline', 'avx2' or 'avx512', got '" + name + "'");
    try {
      cnnkit::set_active_isa(isa);
    } catch (const std::invalid_argument& e) {
      throw py::value_error(std::string("set_isa(): ") + e.what());
    }
  });

  cnnkit::bind::bind_boxes(m);
  cnnkit::bind::bind_pool(m);
  cnnkit::bind::bind_conv(m);
  cnnkit::bind::bind_gemm(m);
  cnnkit::bind::bind_gram(m);
  cnnkit::bind::bind_anchors(m);
  cnnkit::bind::bind_windows(m);
  cnnkit::bind::bind_roi(m);
  cnnkit::bind::bind_segmentation(m);
  cnnkit::bind::bind_lrn(m);
  cnnkit::bind::bind_optimizer(m);
  cnnkit::bind::bind_batch_norm(m);
  cnnkit::bind::bind_add_relu(m);
  cnnkit::bind::bind_concat(m);
  cnnkit::bind::bind_layout(m);
  cnnkit::bind::bind_block_cache(m);
}

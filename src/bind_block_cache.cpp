// The block cache (csrc/block_cache.hpp) as a NumPy memory handler (NEP 49,
// NumPy >= 1.22): arrays created while it is the context's handler take
// their data from the cache and give it back when they die, whichever
// handler is current then (NumPy keeps each array's handler with it).
//
// NumPy's C API is reached through the `_ARRAY_API` capsule, as pybind11
// reaches it, so the build needs no NumPy headers; the two declarations
// below are NumPy's (ndarraytypes.h, stable since 1.22), and slot 304 of the
// table is PyDataMem_SetHandler (__multiarray_api.h).
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "block_cache.hpp"

namespace py = pybind11;

namespace cnnkit::bind {

namespace {

struct DataMemAllocator {
  void* ctx;
  void* (*malloc)(void* ctx, size_t size);
  void* (*calloc)(void* ctx, size_t nelem, size_t elsize);
  void* (*realloc)(void* ctx, void* ptr, size_t new_size);
  void (*free)(void* ctx, void* ptr, size_t size);
};

struct DataMemHandler {
  char name[127];
  uint8_t version;
  DataMemAllocator allocator;
};

constexpr int kSetHandlerSlot = 304;

DataMemHandler handler = {
    "cnnkit_block_cache",
    1,
    {nullptr, [](void*, size_t n) { return block_cache::allocate(n); },
     [](void*, size_t n, size_t s) { return block_cache::allocate_zeroed(n, s); },
     [](void*, void* p, size_t n) { return block_cache::reallocate(p, n); },
     [](void*, void* p, size_t) { block_cache::release(p); }}};

using SetHandler = PyObject* (*)(PyObject*);

SetHandler set_handler_fn() {
  static SetHandler fn = [] {
    py::module_ m;
    try {
      m = py::module_::import("numpy._core.multiarray");  // NumPy 2
    } catch (py::error_already_set&) {
      m = py::module_::import("numpy.core.multiarray");
    }
    const py::object capsule = m.attr("_ARRAY_API");
    void** api = static_cast<void**>(PyCapsule_GetPointer(capsule.ptr(), nullptr));
    if (!api) throw py::error_already_set();
    return reinterpret_cast<SetHandler>(api[kSetHandlerSlot]);
  }();
  return fn;
}

// The handler capsule; one object, so NumPy's handler identity checks hold.
py::object handler_capsule() {
  static PyObject* capsule = PyCapsule_New(&handler, "mem_handler", nullptr);
  if (!capsule) throw py::error_already_set();
  return py::reinterpret_borrow<py::object>(capsule);
}

// Makes `h` (a handler capsule, or None for the block cache's) the current
// context's handler; returns the one it replaces.
py::object set_memory_handler(py::handle h) {
  const py::object target = h.is_none() ? handler_capsule() : py::reinterpret_borrow<py::object>(h);
  if (!PyCapsule_IsValid(target.ptr(), "mem_handler"))
    throw py::type_error("_set_memory_handler(): handler must be a NumPy memory handler "
                         "capsule or None, got " +
                         std::string(py::str(py::type::handle_of(h).attr("__name__"))));
  PyObject* old = set_handler_fn()(target.ptr());
  if (!old) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(old);
}

void set_budget(int64_t bytes) {
  if (bytes < 0)
    throw py::value_error("_block_cache_budget(): bytes must be >= 0, got " +
                          std::to_string(bytes));
  block_cache::set_budget(bytes);
}

py::dict stats() {
  const BlockCacheStats s = block_cache::stats();
  py::dict d;
  d["idle_bytes"] = s.idle_bytes;
  d["idle_blocks"] = s.idle_blocks;
  d["budget"] = s.budget;
  d["reused"] = s.reused;
  d["created"] = s.created;
  return d;
}

}  // namespace

void bind_block_cache(py::module_& m) {
  m.def("_set_memory_handler", &set_memory_handler);
  m.def("_block_cache_budget", &set_budget);
  m.def("_block_cache_trim", [] { block_cache::trim(); });
  m.def("_block_cache_stats", &stats);
}

}  // namespace cnnkit::bind

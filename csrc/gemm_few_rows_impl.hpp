// The per-instruction-set entry of the few-row GEMM (csrc/gemm_few_rows.hpp).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <new>

#include "gemm_few_rows.hpp"

namespace cnnkit::few_rows {

// 64-byte aligned storage for the packed panels (aligned vector loads).
template <class T>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    void* p = std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) noexcept { std::free(p); }
  template <class U>
  bool operator==(const AlignedAllocator<U>&) const noexcept { return true; }
  template <class U>
  bool operator!=(const AlignedAllocator<U>&) const noexcept { return false; }
};

namespace avx512 {
// C[:, :width] = A B[:, :width] over all k: A m x k, B k x width (ldb), k
// cut into blocks of kc_max (the last may be shorter), each block of B
// packed as it is read. width: at most gemm_few_rows.cpp's kColumns.
void columns(int64_t m, int64_t k, int64_t kc_max, const FewRowsA<float>& a, const float* b,
             int64_t ldb, float* c, int64_t ldc, int64_t width);
}  // namespace avx512

}  // namespace cnnkit::few_rows

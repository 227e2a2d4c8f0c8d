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
// epilogue, if not null (its bias relative to c's column 0; not sigmoid,
// which the caller applies in a pass), is applied as the last block's sums
// are stored. next_b, if not null: the first block of the columns
// [0, next_width) of next_b, which this thread multiplies next, is
// prefetched into L2 during the last block, so that it need not come from
// memory unhidden.
void columns(int64_t m, int64_t k, int64_t kc_max, const FewRowsA<float>& a, const float* b,
             int64_t ldb, float* c, int64_t ldc, int64_t width, const Epilogue<float>* epilogue,
             const float* next_b, int64_t next_width);
}  // namespace avx512

}  // namespace cnnkit::few_rows

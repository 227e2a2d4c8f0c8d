// Sliding windows: every window_h x window_w crop of a batch of channels-last
// images, at the given strides, copied into one contiguous array. The copy is
// a byte copy of whole window rows, so it serves every element type.
#pragma once

#include <cstdint>

namespace cnnkit {

struct WindowGrid {
  int64_t batch = 0, height = 0, width = 0;
  int64_t pixel_bytes = 0;  // channels * element size
  int64_t window_h = 1, window_w = 1, stride_h = 1, stride_w = 1;

  // Windows per column and per row; window_h <= height and window_w <= width.
  int64_t rows() const noexcept { return (height - window_h) / stride_h + 1; }
  int64_t cols() const noexcept { return (width - window_w) / stride_w + 1; }
};

// src: (batch, height, width, pixel) contiguous bytes. dst: (batch, rows,
// cols, window_h, window_w, pixel) contiguous bytes, where crop (n, r, c) is
// the image-n region starting at row r * stride_h and column c * stride_w.
void sliding_windows(const WindowGrid& grid, const unsigned char* src, unsigned char* dst);

}  // namespace cnnkit

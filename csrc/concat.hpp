// Concatenation of row-major arrays along one axis, as a copy: input i,
// viewed as (outer, widths[i]) bytes (outer = the product of the axes before
// the joined one, widths[i] = its extent along that axis times the item size
// times the product of the axes after), lands in the columns of (outer,
// sum(widths)) that follow the inputs before it. Fire modules' and
// Inception blocks' channel Concat on channels-last maps, where each row is
// a pixel: numpy.concatenate copies those pieces on one thread, and slower
// than the C library's memcpy of each piece (SqueezeNet 1.1's 55x55x(64+64),
// one thread, CPU time: 0.12-0.13 ms against 0.10 alone; 0.16-0.17 against
// 0.12-0.14 inside the network).
//
// Bits: a copy. Rows are independent: results do not depend on the thread
// count.
#pragma once

#include <cstdint>

namespace cnnkit {

// inputs[i] points to outer * widths[i] bytes; out to outer * sum(widths).
// Widths may be zero; no input overlaps out.
void concat(int64_t outer, int64_t count, const char* const* inputs, const int64_t* widths,
            char* out);

}  // namespace cnnkit

// Dot product of one weight row (in its GGUF block format) with one activation row (in
// the partner format from quant_act.h): the scalar reference every SIMD kernel is
// tested against. Each block's integer dot product is exact in int32, then scaled in
// float, as llama.cpp does.
#pragma once

#include <cstdint>

#include "gguf/ggml_type.h"

namespace kvserve::detail {

// n: elements in the row (a multiple of the type's block size).
using VecDotFn = float (*)(int64_t n, const void* w, const void* x);

// The scalar dot product for a weight type; nullptr if unsupported.
VecDotFn vec_dot_fn_scalar(GgmlType type);

}  // namespace kvserve::detail

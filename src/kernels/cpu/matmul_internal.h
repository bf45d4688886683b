// Internals of matmul shared by its per-ISA files and tests: the per-ISA kernel tables
// and a way to force an ISA.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/cpu_features.h"
#include "kernels/cpu/matmul.h"

namespace kvserve {

// matmul() with a given ISA instead of best_isa() (which must be supported by the CPU).
void matmul_isa(Isa isa, const WeightView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool);

namespace detail {

// One kernel call computes y[t, o] for o in [o0, o1) and every t < n_tokens.
struct MatmulArgs {
  const uint8_t* w;  // [n_out, w_row_bytes] weights in their block format
  size_t w_row_bytes;
  int64_t n_in;
  const uint8_t* x;  // [n_tokens, x_row_bytes] activations in act_format(type)
  size_t x_row_bytes;
  int64_t n_tokens;
  float* y;  // [n_tokens, ldy]
  int64_t ldy;
};
using MatmulRangeFn = void (*)(const MatmulArgs& a, int64_t o0, int64_t o1);

// Per-ISA kernel tables; nullptr where that ISA has no version for the type (the
// dispatcher then uses the next lower ISA's).
MatmulRangeFn matmul_fn_scalar(GgmlType type);
MatmulRangeFn matmul_fn_avx2(GgmlType type);
MatmulRangeFn matmul_fn_avx512(GgmlType type);

}  // namespace detail
}  // namespace kvserve

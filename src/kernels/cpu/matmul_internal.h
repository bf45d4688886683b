// Internals of matmul shared by its per-ISA files and tests: the kernel arguments and
// a way to force an ISA (the per-ISA kernel tables are in isa_dispatch.h).
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/cpu_features.h"
#include "kernels/cpu/matmul.h"

namespace kvserve {

// matmul() with a given ISA instead of best_isa() (which must be supported by the CPU).
void matmul_isa(Isa isa, const WeightView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool);
// With norm (and normed, see matmul_multi's RowNorm overload), of rmsnorm(x).
void matmul_multi_isa(Isa isa, std::span<const MatmulOutput> outs, const float* x, const RowNorm* norm,
                      float* normed, int64_t n_tokens, ThreadPool& pool);
inline void matmul_multi_isa(Isa isa, std::span<const MatmulOutput> outs, const float* x, int64_t n_tokens,
                             ThreadPool& pool) {
  matmul_multi_isa(isa, outs, x, nullptr, nullptr, n_tokens, pool);
}

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
  // Dense views of Q8_0/Q8_1 (and, for AVX-512 with many tokens, Q8_K) activations for
  // the SIMD kernels (null otherwise), per unit of dense_unit(type) elements, n_blocks =
  // n_in / unit (Q8_K: d repeated, s and sums from bsums):
  const int8_t* xq;      // [n_tokens, n_in] the quants, contiguous
  const float* xd;       // [n_tokens, n_blocks] block scales d
  const float* xs;       // [n_tokens, n_blocks] Q8_1's s = d * sum(q) (null for Q8_0)
  const int32_t* xcorr;  // [n_tokens, n_blocks] -simd_zero_point(type) * sum(q)
  const uint8_t* wp;     // the packed weights (matmul_pack.h) for the packed kernels
};

// Elements per unit of the dense activation views: Q6_K's scales cover 16.
constexpr int64_t dense_unit(GgmlType t) {
  return t == GgmlType::Q6_K ? 16 : 32;
}

// SIMD kernels hold 32-element block weights as unsigned bytes u = q + zero_point
// (Q8_0's signed quants flipped to 0..255), so an unsigned x signed int8 dot product
// applies; the zero point times the activation block's sum is subtracted back.
constexpr int simd_zero_point(GgmlType t) {
  switch (t) {
    case GgmlType::Q4_0: return 8;
    case GgmlType::Q5_0: return 16;
    case GgmlType::Q6_K: return 32;
    case GgmlType::Q8_0: return 128;
    default: return 0;
  }
}
using MatmulRangeFn = void (*)(const MatmulArgs& a, int64_t o0, int64_t o1);
// The per-ISA kernel tables: isa_dispatch.h.

}  // namespace detail
}  // namespace kvserve

// Block layouts of the types the SIMD matmul kernels treat as "32-element blocks"
// (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and how the panel GEMM cuts K-quants into units.
#pragma once

#include <cstdint>

#include "gguf/ggml_type.h"
#include "gguf/quant_blocks.h"

namespace kvserve::detail {

// Block layout of each type: bytes, offsets of qs / qh / m (-1 when absent).
struct Q32Layout {
  int bytes, qs, qh, m;
  bool nibbles;
};
template <GgmlType T>
constexpr Q32Layout kLayout = T == GgmlType::Q4_0   ? Q32Layout{18, 2, -1, -1, true}
                              : T == GgmlType::Q4_1 ? Q32Layout{20, 4, -1, 2, true}
                              : T == GgmlType::Q5_0 ? Q32Layout{22, 6, 2, -1, true}
                              : T == GgmlType::Q5_1 ? Q32Layout{24, 8, 4, 2, true}
                                                    : Q32Layout{34, 2, -1, -1, false};

// Q4_K / Q5_K also run on the panel kernel: each 32-element sub-block acts as a block
// with scale d * sc and min -dmin * m (sub-block indices kb count 32-element units).
// Q6_K likewise with 16-element units (one scale each, zero point 32).
template <GgmlType T>
constexpr bool kIsK = T == GgmlType::Q4_K || T == GgmlType::Q5_K;
template <GgmlType T>
constexpr int kUnitElems = T == GgmlType::Q6_K ? 16 : 32;  // elements per unit
template <GgmlType T>
constexpr int kSteps = kUnitElems<T> / 4;  // vpdpbusd steps per unit
template <GgmlType T>
constexpr int64_t kUnitsPerBlock = T == GgmlType::Q6_K ? 16
                                   : kIsK<T>           ? 8
                                                       : 1;

// Byte offset of unit kb in a row (kb a multiple of kUnitsPerBlock).
template <GgmlType T>
constexpr int64_t unit_offset(int64_t kb) {
  if constexpr (T == GgmlType::Q6_K)
    return kb / 16 * int64_t(sizeof(BlockQ6_K));
  else if constexpr (kIsK<T>)
    return kb / 8 * (T == GgmlType::Q4_K ? int64_t(sizeof(BlockQ4_K)) : int64_t(sizeof(BlockQ5_K)));
  else
    return kb * kLayout<T>.bytes;
}

}  // namespace kvserve::detail

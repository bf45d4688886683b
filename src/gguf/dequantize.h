// Scalar dequantization of ggml block formats to float. Plain, readable code: this is
// the reference every SIMD kernel is tested against, not a fast path.
#pragma once

#include <cstdint>

#include "gguf/ggml_type.h"

namespace kvserve {

// Dequantizes n elements (a multiple of the type's block size) stored in ggml's layout
// for `type` (see gguf/quant_blocks.h) into dst. Supports F32, F16, BF16, Q4_0, Q4_1,
// Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K.
void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n);

// Unpacks the 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K super-block
// from its 12 packed scale bytes.
void unpack_scale_min_k4(int j, const uint8_t* scales, uint8_t* scale, uint8_t* min);

// Unpacks the 16 signed 6-bit scales (-32..31) of a Q3_K super-block.
void unpack_scales_q3_k(const uint8_t* packed, int8_t* scales);

}  // namespace kvserve

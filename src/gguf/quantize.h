// Scalar reference quantizers into ggml's block layouts (inverse of dequantize_row).
// Used by tests, by tools that write GGUF files, and as the reference for the kernels'
// activation quantization (Q8_0, Q8_1, Q8_K). Not tuned for speed.
#pragma once

#include <cstdint>

#include "gguf/ggml_type.h"

namespace kvserve {

// Quantizes n floats (a multiple of the type's block size) into dst in `type`'s layout.
// Every type of dequantize_row except F32. Conventions:
// - F16 / BF16: round to nearest even.
// - Q8_0 / Q8_1: d = max|x| / 127, q = round-half-away(x / d); Q8_1 also stores
//   s = d * sum(q).
// - Q8_K: d (float) = max|x| / 127, q = round-half-even(x / d), bsums = sums of q over
//   each group of 16.
// - Q4_0 / Q5_0: d maps the value of largest magnitude to the most negative level
//   (-8 / -16); Q4_1 / Q5_1: the block's [min, max] spread over all levels.
// - K-quants: per sub-block, a search over candidate scales (and mins) minimizing the
//   squared error, then the sub-block scales are quantized against the super-block's
//   d (and dmin), and values re-quantized with the final scales.
void quantize_row(GgmlType type, const float* src, void* dst, int64_t n);

// Packs 8 six-bit scales and mins (0..63) into the 12 scale bytes of a Q4_K / Q5_K
// super-block (inverse of unpack_scale_min_k4).
void pack_scale_min_k4(const uint8_t* scales, const uint8_t* mins, uint8_t* packed);

}  // namespace kvserve

// FP8 E4M3 (the OCP "fn" variant vLLM and TensorRT-LLM use for KV caches): 1 sign bit,
// 4 exponent bits (bias 7), 3 mantissa bits, subnormals, no infinities, 0x7f/0xff NaN;
// largest finite value 448.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/half.h"

namespace kvserve {

// The code's bits moved into an IEEE half give exactly its value times 2^-8 (same
// mantissa, exponent bias 15 instead of 7, subnormals included), so SIMD code can widen
// E4M3 with the F16 conversion; the scalar version does the same.
inline uint16_t fp8_e4m3_to_half_scaled(uint8_t c) {
  return uint16_t(uint16_t(c & 0x80) << 8 | uint16_t(c & 0x7f) << 7);
}

inline float fp8_e4m3_to_fp32(uint8_t c) {
  return fp16_to_fp32(fp8_e4m3_to_half_scaled(c)) * 256.0f;
}

// Round to nearest even; magnitudes beyond 448 saturate to 448 (a KV scale keeps inputs
// within it); NaN becomes 0.
inline uint8_t fp32_to_fp8_e4m3(float f) {
  const uint8_t sign = std::signbit(f) ? 0x80 : 0;
  const float a = std::fabs(f);
  if (!(a == a)) return 0;
  if (a >= 464.0f) return uint8_t(sign | 0x7e);  // 464 = halfway from 448 to the next step
  if (a < 0.015625f) {                           // below 2^-6: subnormal, step 2^-9
    // m in 0..8; 8 is the smallest normal's code (exponent 1, mantissa 0), so it still fits.
    return uint8_t(sign | int(std::nearbyint(a * 512.0f)));
  }
  int ex;
  std::frexp(a, &ex);  // a = f * 2^ex, f in [0.5, 1): a's exponent is ex - 1
  const int e = ex - 1;
  int m = int(std::nearbyint((std::ldexp(a, -e) - 1.0f) * 8.0f));
  int be = e + 7;
  if (m == 8) {
    m = 0;
    ++be;
  }
  if (be > 15 || (be == 15 && m == 7)) return uint8_t(sign | 0x7e);
  return uint8_t(sign | be << 3 | m);
}

}  // namespace kvserve

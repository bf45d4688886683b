// FP8 E4M3: every code decodes to its definition, and encoding rounds to the nearest code
// (ties to even mantissa), saturating at 448.
#include "core/fp8.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "common/kv_stored_value.h"

namespace kvserve {
namespace {

bool is_nan_code(int c) {
  return (c & 0x7f) == 0x7f;
}

TEST(Fp8E4M3, EveryCodeDecodesToItsDefinitionAndRoundTrips) {
  for (int c = 0; c < 256; ++c) {
    if (is_nan_code(c)) continue;
    const float want = fp8_e4m3_reference(uint8_t(c));
    EXPECT_EQ(fp8_e4m3_to_fp32(uint8_t(c)), want) << c;
    if (c == 0x80) {  // -0 keeps its sign
      EXPECT_EQ(fp32_to_fp8_e4m3(-0.0f), 0x80);
      continue;
    }
    EXPECT_EQ(fp32_to_fp8_e4m3(want), c) << c;
  }
  EXPECT_EQ(fp8_e4m3_to_fp32(0x7e), 448.0f);
  EXPECT_EQ(fp8_e4m3_to_fp32(0x01), 0x1p-9f);
}

// Brute force: the nearest finite code, ties to the even code (even mantissa).
uint8_t nearest_code(float x) {
  int best = 0;
  double best_d = INFINITY;
  for (int c = 0; c < 256; ++c) {
    if (is_nan_code(c) || std::signbit(fp8_e4m3_reference(uint8_t(c))) != std::signbit(x)) continue;
    const double d = std::abs(double(fp8_e4m3_reference(uint8_t(c))) - double(x));
    if (d < best_d || (d == best_d && (c & 1) == 0)) {
      best = c;
      best_d = d;
    }
  }
  return uint8_t(best);
}

TEST(Fp8E4M3, EncodesToTheNearestCode) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> exponent(-12.0f, 9.5f);
  for (int i = 0; i < 20000; ++i) {
    const float x = ((rng() & 1) ? -1.0f : 1.0f) * std::exp2(exponent(rng));
    const float clamped = std::fmin(std::fabs(x), 448.0f) * (x < 0 ? -1.0f : 1.0f);
    ASSERT_EQ(fp32_to_fp8_e4m3(x), nearest_code(clamped)) << x;
  }
  // Ties: 1 + 1/16 lies halfway between 1 and 1 + 1/8 (mantissa 0 is even); 1 + 3/16 between
  // 1 + 1/8 and 1 + 1/4 rounds up to mantissa 2; 2^-10 (half the smallest step) to 0.
  EXPECT_EQ(fp32_to_fp8_e4m3(1.0625f), 0x38);
  EXPECT_EQ(fp32_to_fp8_e4m3(1.1875f), 0x3a);
  EXPECT_EQ(fp32_to_fp8_e4m3(0x1p-10f), 0x00);
  EXPECT_EQ(fp32_to_fp8_e4m3(1e30f), 0x7e);
  EXPECT_EQ(fp32_to_fp8_e4m3(-500.0f), 0xfe);
  EXPECT_EQ(fp32_to_fp8_e4m3(NAN), 0x00);
}

}  // namespace
}  // namespace kvserve

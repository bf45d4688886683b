// Row reductions shared by the sampler and the logprobs helpers. Written as plain loops
// over fixed lane arrays so the compiler vectorises them without -ffast-math; a vocabulary
// row (49k-128k floats) is reduced in a few tens of microseconds.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace kvserve::sampler_math {

inline constexpr int kLanes = 16;
inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// exp(x) for x <= 0 (the caller subtracts the row maximum first), relative error ~2e-7.
// Exactly 0 below -87 (so -inf logits get zero weight) and exactly 1 at x == 0.
// Branch-free so the loops that call it vectorise.
inline float exp_nonpos(float x) {
  const float xc = x < -87.0f ? -87.0f : x;
  // Round x / ln2 to an integer with the 1.5 * 2^23 trick (no reassociation without -ffast-math).
  constexpr float kMagic = 12582912.0f;
  const float t = xc * 1.44269504088896341f + kMagic;
  const float n = t - kMagic;
  const int32_t ni = std::bit_cast<int32_t>(t) - std::bit_cast<int32_t>(kMagic);
  // r = xc - n * ln2, with ln2 split in two for accuracy; |r| <= ln2 / 2.
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  // Taylor polynomial of degree 6 (truncation error < 2e-7 on |r| <= 0.347).
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const float scale = std::bit_cast<float>((ni + 127) << 23);
  const float v = p * scale;
  return x < -87.0f ? 0.0f : v;
}

// Largest value of x[0..n); -inf for an empty or all -inf row. NaNs are ignored.
inline float row_max(const float* x, int32_t n) {
  float lane[kLanes];
  for (int j = 0; j < kLanes; ++j) lane[j] = kNegInf;
  int32_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) lane[j] = x[i + j] > lane[j] ? x[i + j] : lane[j];
  float m = kNegInf;
  for (int j = 0; j < kLanes; ++j) m = lane[j] > m ? lane[j] : m;
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// Index of the largest value; ties go to the lowest index (greedy decoding's rule).
inline int32_t row_argmax(const float* x, int32_t n) {
  const float m = row_max(x, n);
  for (int32_t i = 0; i < n; ++i)
    if (x[i] == m) return i;
  return 0;  // empty, all-NaN row: nothing better to return
}

// sum_i exp((x[i] - m) * inv_t). Float lanes are flushed to a double every block so the
// rounding error stays ~1e-7 relative even for a 128k row.
inline double sum_exp(const float* x, int32_t n, float m, float inv_t) {
  constexpr int32_t kBlock = 1024;
  double s = 0.0;
  int32_t i = 0;
  while (i + kLanes <= n) {
    float lane[kLanes] = {};
    const int32_t end = i + kBlock <= n ? i + kBlock : n;
    for (; i + kLanes <= end; i += kLanes)
      for (int j = 0; j < kLanes; ++j) lane[j] += exp_nonpos((x[i + j] - m) * inv_t);
    for (int j = 0; j < kLanes; ++j) s += lane[j];
  }
  for (; i < n; ++i) s += exp_nonpos((x[i] - m) * inv_t);
  return s;
}

}  // namespace kvserve::sampler_math

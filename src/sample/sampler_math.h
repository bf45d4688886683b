// Scalar helpers shared by the sampler's plain code and its per-ISA kernels.
//
// Everything here has internal linkage (unnamed namespace) on purpose: the header is also
// compiled into the AVX2 / AVX-512 kernel files, and an external inline function built
// there could be picked by the linker for the generic callers too, crashing CPUs without
// those instructions.
#pragma once

#include <bit>
#include <cstdint>
#include <limits>

namespace kvserve::sampler_math {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// exp(x) for x <= 0 (the caller subtracts the row maximum first), relative error ~2e-7.
// Exactly 0 below -87 (so -inf logits get zero weight) and exactly 1 at x == 0. The
// vector kernels (sampler_kernels_impl.h) evaluate the same formula lane-wise.
inline float exp_nonpos(float x) {
  const bool tiny = x < -87.0f;
  const float xc = tiny ? -87.0f : x;
  // Round x / ln2 to an integer with the 1.5 * 2^23 trick (exact without -ffast-math).
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
  const float v = p * std::bit_cast<float>((ni + 127) << 23);
  return tiny ? 0.0f : v;
}

}  // namespace
}  // namespace kvserve::sampler_math

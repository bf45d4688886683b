// The constants of the vector exp used by the SIMD kernels (exp_avx512.h, attention_avx2.cpp):
// Cephes-style range reduction x = n ln2 + r (ln2 split in two for accuracy) and a
// degree-5 polynomial for (exp(r) - 1 - r) / r^2, about 1 ulp for x in [-87, 88].
#pragma once

namespace kvserve::exp_poly {

constexpr float kMin = -87.0f;  // below: exactly 0
constexpr float kMax = 88.0f;   // above: exp(88)
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kP[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                         4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

}  // namespace kvserve::exp_poly

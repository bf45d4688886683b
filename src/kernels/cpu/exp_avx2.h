// Vector exp for AVX2 kernels; include only from files compiled for AVX2 (*_avx2.cpp).
#pragma once

#include <immintrin.h>

#include "kernels/cpu/exp_poly.h"

namespace kvserve {
namespace {  // internal linkage: never shared with code built for other ISAs

// exp(x) lane-wise (Cephes-style range reduction and polynomial, about 1 ulp) for x in
// [-87, 88]; lanes below -87 (including -inf) give exactly 0, lanes above 88 exp(88).
// Lane for lane the same operations as exp512 (2^n applied by an exact multiply).
inline __m256 exp256(__m256 x) {
  using namespace exp_poly;
  const __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(kMin), _CMP_GE_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(kMin)), _mm256_set1_ps(kMax));
  const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(kLn2Hi), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(kLn2Lo), x);
  __m256 y = _mm256_set1_ps(kP[0]);
  for (int i = 1; i < 6; ++i) y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(kP[i]));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  // 2^fx through the exponent field (fx in [-126, 127] after the clamp).
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_and_ps(_mm256_mul_ps(y, _mm256_castsi256_ps(e)), live);
}

}  // namespace
}  // namespace kvserve

// Vector exp for AVX-512 kernels; include only from files compiled for AVX-512 (*_avx512.cpp).
#pragma once

#include <immintrin.h>

#include "kernels/cpu/exp_poly.h"

namespace kvserve {
namespace {  // internal linkage: never shared with code built for other ISAs

// exp(x) lane-wise, Cephes-style range reduction and polynomial (about 1 ulp) for
// x in [-87, 88]; lanes below -87 (including -inf) give exactly 0, lanes above 88 give
// exp(88).
inline __m512 exp512(__m512 x) {
  using namespace exp_poly;
  const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kMin), _CMP_GE_OQ);
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(kMin)), _mm512_set1_ps(kMax));
  const __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(kLn2Hi), x);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(kLn2Lo), x);
  __m512 y = _mm512_set1_ps(kP[0]);
  for (int i = 1; i < 6; ++i) y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(kP[i]));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
  return _mm512_maskz_mov_ps(live, _mm512_scalef_ps(y, fx));
}

}  // namespace
}  // namespace kvserve

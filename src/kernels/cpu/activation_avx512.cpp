// AVX-512 versions of the element-wise activations (this file is compiled with -mavx512f ...).
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/exp_avx512.h"

namespace kvserve {

void silu_mul_avx512(const float* gate, const float* up, float* out, int64_t n) {
  int64_t i = 0;
  const __m512 one = _mm512_set1_ps(1.0f);
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1u);
    const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
    const __m512 u = _mm512_maskz_loadu_ps(m, up + i);
    // silu(g) = g / (1 + exp(-g)); exp saturates at exp(88), giving ~0 for very negative g.
    const __m512 s = _mm512_div_ps(g, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), g))));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(s, u));
  }
}

}  // namespace kvserve

// AVX2 versions of the element-wise activations (this file is compiled with -mavx2 -mfma).
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/exp_avx2.h"

namespace kvserve {

void silu_mul_avx2(const float* gate, const float* up, float* out, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    // silu(g) = g / (1 + exp(-g)), as in silu_mul_avx512.
    const __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), g))));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
  }
  if (i < n) {  // the tail through a zero-padded vector, the same operations per lane
    alignas(32) float g8[8] = {}, u8[8] = {}, o8[8];
    for (int64_t k = i; k < n; ++k) g8[k - i] = gate[k], u8[k - i] = up[k];
    const __m256 g = _mm256_load_ps(g8);
    const __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), g))));
    _mm256_store_ps(o8, _mm256_mul_ps(s, _mm256_load_ps(u8)));
    for (int64_t k = i; k < n; ++k) out[k] = o8[k - i];
  }
}

}  // namespace kvserve

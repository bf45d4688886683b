// AVX2 versions of the element-wise activations (this file is compiled with -mavx2 -mfma).
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/exp_avx2.h"
#include "kernels/cpu/isa_dispatch.h"

namespace kvserve {

static void silu_mul_avx2(const float* gate, const float* up, float* out, int64_t n) {
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

namespace {
// gelu_tanh as in gelu_tanh512 (activation_avx512.cpp): x * sigmoid(2u) through
// t = exp(-2|u|) in [0, 1], so nothing overflows or cancels.
inline __m256 gelu_tanh256(__m256 x) {
  const __m256 u =
      _mm256_mul_ps(x, _mm256_fmadd_ps(_mm256_set1_ps(0.7978845608028654f * 0.044715f), _mm256_mul_ps(x, x),
                                       _mm256_set1_ps(0.7978845608028654f)));
  const __m256 abs_u = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), u);
  const __m256 t = exp256(_mm256_mul_ps(abs_u, _mm256_set1_ps(-2.0f)));
  const __m256 num =
      _mm256_blendv_ps(x, _mm256_mul_ps(x, t), _mm256_cmp_ps(u, _mm256_setzero_ps(), _CMP_LT_OQ));
  return _mm256_div_ps(num, _mm256_add_ps(_mm256_set1_ps(1.0f), t));
}
}  // namespace

static void gelu_tanh_mul_avx2(const float* gate, const float* up, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i,
                     _mm256_mul_ps(gelu_tanh256(_mm256_loadu_ps(gate + i)), _mm256_loadu_ps(up + i)));
  if (i < n) {  // the tail through a zero-padded vector, the same operations per lane
    alignas(32) float g8[8] = {}, u8[8] = {}, o8[8];
    for (int64_t k = i; k < n; ++k) g8[k - i] = gate[k], u8[k - i] = up[k];
    _mm256_store_ps(o8, _mm256_mul_ps(gelu_tanh256(_mm256_load_ps(g8)), _mm256_load_ps(u8)));
    for (int64_t k = i; k < n; ++k) out[k] = o8[k - i];
  }
}

constinit const detail::ActivationKernels detail::kActivationAvx2{silu_mul_avx2, gelu_tanh_mul_avx2};

}  // namespace kvserve

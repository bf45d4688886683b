// AVX-512 versions of the element-wise activations (this file is compiled with -mavx512f ...).
// GCC 12 reports its own _mm512_undefined_* placeholders as uninitialized (GCC bug
// 105593, fixed in 13) wherever AVX-512 intrinsics inline.
#pragma GCC diagnostic ignored "-Wuninitialized"
#if defined(__GNUC__) && !defined(__clang__)  // clang has no such warning (and warns of the name)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/exp_avx512.h"
#include "kernels/cpu/isa_dispatch.h"

namespace kvserve {

static void silu_mul_avx512(const float* gate, const float* up, float* out, int64_t n) {
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

namespace {
// gelu_tanh(x) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3), taken as x / (1 + t)
// for u >= 0 and x t / (1 + t) for u < 0 with t = exp(-2|u|) in [0, 1]: nothing
// overflows (x^3 = +-inf gives t = 0, so x or -0) and nothing cancels for negative x.
inline __m512 gelu_tanh512(__m512 x) {
  const __m512 u =
      _mm512_mul_ps(x, _mm512_fmadd_ps(_mm512_set1_ps(0.7978845608028654f * 0.044715f), _mm512_mul_ps(x, x),
                                       _mm512_set1_ps(0.7978845608028654f)));
  const __m512 t = exp512(_mm512_mul_ps(_mm512_abs_ps(u), _mm512_set1_ps(-2.0f)));
  const __m512 num = _mm512_mask_mul_ps(x, _mm512_cmp_ps_mask(u, _mm512_setzero_ps(), _CMP_LT_OQ), x, t);
  return _mm512_div_ps(num, _mm512_add_ps(_mm512_set1_ps(1.0f), t));
}
}  // namespace

static void gelu_tanh_mul_avx512(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {  // the tail through masked loads, the same operations per lane
    const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1u);
    const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(gelu_tanh512(g), _mm512_maskz_loadu_ps(m, up + i)));
  }
}

constinit const detail::ActivationKernels detail::kActivationAvx512{silu_mul_avx512, gelu_tanh_mul_avx512};

}  // namespace kvserve

// AVX-512 activation conversion, bit-identical to the scalar code in quant_act.cpp:
// the same float operations in the same order (max, one division, one multiply per
// element, round-to-nearest-even), only vectorized.
// GCC 12 reports its own _mm512_undefined_* placeholders as uninitialized (GCC bug
// 105593, fixed in 13) wherever AVX-512 intrinsics inline.
#pragma GCC diagnostic ignored "-Wuninitialized"
#if defined(__GNUC__) && !defined(__clang__)  // clang has no such warning (and warns of the name)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstring>

#include "gguf/quant_blocks.h"
#include "kernels/cpu/isa_dispatch.h"

namespace kvserve::detail {
namespace {

// Round-to-nearest-even fp32 -> fp16 with vcvtps2ph; same results as fp32_to_fp16
// (no DAZ/FTZ is set in kvserve), NaN payloads aside.
void to_f16(const float* x, int64_t n, void* dst) {
  auto* d = static_cast<uint16_t*>(dst);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(
        reinterpret_cast<__m256i*>(d + i),
        _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1);
    _mm256_mask_storeu_epi16(
        d + i, m,
        _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
}

// bf16 by integer rounding (x + 0x7fff + lsb) >> 16, as the scalar fp32_to_bf16;
// NaNs are quieted the same way.
void to_bf16(const float* x, int64_t n, void* dst) {
  auto* d = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = i + 16 <= n ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
    const __m512i u = _mm512_castps_si512(_mm512_maskz_loadu_ps(m, x + i));
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                  _mm512_set1_epi32(0x7f800000));
    r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    _mm256_mask_storeu_epi16(d + i, m, _mm512_cvtepi32_epi16(r));
  }
}

// A function, not a global: a global would run AVX-512 code at start-up on any CPU.
inline __m512 abs_mask() {
  return _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
}

template <bool kQ81>
void to_q8_01(const float* x, int64_t n, void* dst) {
  auto* out = static_cast<uint8_t*>(dst);
  constexpr size_t kBytes = kQ81 ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0);
  constexpr size_t kQs = kQ81 ? 4 : 2;
  for (int64_t b = 0; b < n / 32; ++b, x += 32, out += kBytes) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax =
        _mm512_reduce_max_ps(_mm512_max_ps(_mm512_and_ps(v0, abs_mask()), _mm512_and_ps(v1, abs_mask())));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    const __m512 vid = _mm512_set1_ps(id);
    const __m512i q0 =
        _mm512_cvt_roundps_epi32(_mm512_mul_ps(v0, vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512i q1 =
        _mm512_cvt_roundps_epi32(_mm512_mul_ps(v1, vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const uint16_t dh = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    std::memcpy(out, &dh, 2);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + kQs), _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + kQs + 16), _mm512_cvtepi32_epi8(q1));
    if constexpr (kQ81) {
      const int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
      const uint16_t sh = _cvtss_sh(d * float(sum), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      std::memcpy(out + 2, &sh, 2);
    }
  }
}

void to_q8_0(const float* x, int64_t n, void* dst) {
  to_q8_01<false>(x, n, dst);
}
void to_q8_1(const float* x, int64_t n, void* dst) {
  to_q8_01<true>(x, n, dst);
}

void to_q8_k(const float* x, int64_t n, void* dst) {
  auto* y = static_cast<BlockQ8_K*>(dst);
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
    __m512 amax16 = _mm512_setzero_ps();
    for (int i = 0; i < QK_K; i += 16)
      amax16 = _mm512_max_ps(amax16, _mm512_and_ps(_mm512_loadu_ps(x + i), abs_mask()));
    const float amax = _mm512_reduce_max_ps(amax16);
    if (amax == 0.0f) {
      std::memset(&y[b], 0, sizeof(BlockQ8_K));
      continue;
    }
    // The scalar code keeps the first element of largest magnitude (with its sign).
    float vmax = 0.0f;
    for (int i = 0; i < QK_K; i += 16) {
      const __mmask16 hit = _mm512_cmp_ps_mask(_mm512_and_ps(_mm512_loadu_ps(x + i), abs_mask()),
                                               _mm512_set1_ps(amax), _CMP_EQ_OQ);
      if (hit) {
        vmax = x[i + __builtin_ctz(hit)];
        break;
      }
    }
    const float iscale = -127.0f / vmax;
    const __m512 vs = _mm512_set1_ps(iscale);
    for (int g = 0; g < QK_K / 16; ++g) {
      __m512i q = _mm512_cvt_roundps_epi32(_mm512_mul_ps(vs, _mm512_loadu_ps(x + 16 * g)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      q = _mm512_min_epi32(q, _mm512_set1_epi32(127));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs + 16 * g), _mm512_cvtepi32_epi8(q));
      y[b].bsums[g] = int16_t(_mm512_reduce_add_epi32(q));
    }
    y[b].d = 1.0f / iscale;
  }
}

}  // namespace

static QuantizeActFn quantize_act_fn_avx512(ActFormat f) {
  switch (f) {
    case ActFormat::F16: return to_f16;
    case ActFormat::BF16: return to_bf16;
    case ActFormat::Q8_0: return to_q8_0;
    case ActFormat::Q8_1: return to_q8_1;
    case ActFormat::Q8_K: return to_q8_k;
    default: return nullptr;  // F32: a copy
  }
}

constinit const QuantActKernels kQuantActAvx512{quantize_act_fn_avx512};

}  // namespace kvserve::detail

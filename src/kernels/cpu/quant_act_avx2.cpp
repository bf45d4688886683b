// AVX2 (+ F16C) activation conversion, bit-identical to the scalar code in quant_act.cpp:
// the same float operations in the same order (max, one division, one multiply per
// element, round-to-nearest-even in the default rounding mode), only vectorized.
#include <immintrin.h>

#include <cstring>

#include "gguf/quant_blocks.h"
#include "kernels/cpu/isa_dispatch.h"

namespace kvserve::detail {
namespace {

constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

// vcvtps2ph rounds to nearest even: fp32_to_fp16's results (no DAZ/FTZ is set in
// kvserve), NaN payloads aside.
void to_f16(const float* x, int64_t n, void* dst) {
  auto* d = static_cast<uint16_t*>(dst);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), kRound));
  for (; i < n; ++i) d[i] = _cvtss_sh(x[i], kRound);
}

inline __m256 abs8(__m256 v) {
  return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
}

inline float hmax8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

inline int hsum8(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// 32 int32 (in |q| <= 127) to 32 int8 in order.
inline __m256i pack32(__m256i q0, __m256i q1, __m256i q2, __m256i q3) {
  const __m256i a = _mm256_packs_epi32(q0, q1);  // lanes interleaved by 128-bit halves
  const __m256i b = _mm256_packs_epi32(q2, q3);
  const __m256i c = _mm256_packs_epi16(a, b);
  return _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

template <bool kQ81>
void to_q8_01(const float* x, int64_t n, void* dst) {
  auto* out = static_cast<uint8_t*>(dst);
  constexpr size_t kBytes = kQ81 ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0);
  constexpr size_t kQs = kQ81 ? 4 : 2;
  for (int64_t b = 0; b < n / 32; ++b, x += 32, out += kBytes) {
    __m256 v[4];
    for (int k = 0; k < 4; ++k) v[k] = _mm256_loadu_ps(x + 8 * k);
    const float amax =
        hmax8(_mm256_max_ps(_mm256_max_ps(abs8(v[0]), abs8(v[1])), _mm256_max_ps(abs8(v[2]), abs8(v[3]))));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int k = 0; k < 4; ++k) q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], vid));  // nearest even
    const uint16_t dh = _cvtss_sh(d, kRound);
    std::memcpy(out, &dh, 2);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + kQs), pack32(q[0], q[1], q[2], q[3]));
    if constexpr (kQ81) {
      const int sum = hsum8(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
      const uint16_t sh = _cvtss_sh(d * float(sum), kRound);
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
    __m256 amax8 = _mm256_setzero_ps();
    for (int i = 0; i < QK_K; i += 8) amax8 = _mm256_max_ps(amax8, abs8(_mm256_loadu_ps(x + i)));
    const float amax = hmax8(amax8);
    if (amax == 0.0f) {
      std::memset(&y[b], 0, sizeof(BlockQ8_K));
      continue;
    }
    // The scalar code keeps the first element of largest magnitude (with its sign).
    float vmax = 0.0f;
    for (int i = 0; i < QK_K; i += 8) {
      const int hit =
          _mm256_movemask_ps(_mm256_cmp_ps(abs8(_mm256_loadu_ps(x + i)), _mm256_set1_ps(amax), _CMP_EQ_OQ));
      if (hit) {
        vmax = x[i + __builtin_ctz(unsigned(hit))];
        break;
      }
    }
    const float iscale = -127.0f / vmax;
    const __m256 vs = _mm256_set1_ps(iscale);
    for (int g = 0; g < QK_K / 16; g += 2) {  // 32 elements: bsums of two groups of 16
      __m256i q[4];
      for (int k = 0; k < 4; ++k)
        q[k] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(vs, _mm256_loadu_ps(x + 16 * g + 8 * k))),
                                _mm256_set1_epi32(127));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs + 16 * g), pack32(q[0], q[1], q[2], q[3]));
      y[b].bsums[g] = int16_t(hsum8(_mm256_add_epi32(q[0], q[1])));
      y[b].bsums[g + 1] = int16_t(hsum8(_mm256_add_epi32(q[2], q[3])));
    }
    y[b].d = 1.0f / iscale;
  }
}

}  // namespace

static QuantizeActFn quantize_act_fn_avx2(ActFormat f) {
  switch (f) {
    case ActFormat::F16: return to_f16;
    case ActFormat::Q8_0: return to_q8_0;
    case ActFormat::Q8_1: return to_q8_1;
    case ActFormat::Q8_K: return to_q8_k;
    default: return nullptr;  // F32: a copy; BF16: the scalar code
  }
}

constinit const QuantActKernels kQuantActAvx2{quantize_act_fn_avx2};

}  // namespace kvserve::detail

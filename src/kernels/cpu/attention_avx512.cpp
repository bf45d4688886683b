// attention_paged with AVX-512 vector ops (this file is compiled with -mavx512f ...).
// GCC 12 reports its own _mm512_undefined_* placeholders as uninitialized (GCC bug
// 105593, fixed in 13) wherever AVX-512 intrinsics inline.
#pragma GCC diagnostic ignored "-Wuninitialized"
#if defined(__GNUC__) && !defined(__clang__)  // clang has no such warning (and warns of the name)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "kernels/cpu/attention_impl.h"
#include "kernels/cpu/isa_dispatch.h"

namespace kvserve {
namespace {
// Masked tails keep every head_dim (64, 80, 96, 128, odd sizes) on the vector path.
inline __mmask16 tail_mask(int rem) {
  return __mmask16((1u << rem) - 1u);
}

struct Avx512Ops {
  static float dot(const float* a, const float* b, int n) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
      acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
      acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
    }
    for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    if (i < n) {
      const __mmask16 m = tail_mask(n - i);
      acc1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc1);
    }
    // Manual reduction: GCC 12's _mm512_reduce_add_ps trips -Wmaybe-uninitialized.
    const __m512 acc = _mm512_add_ps(acc0, acc1);
    const __m256 h = _mm256_add_ps(_mm512_extractf32x8_ps(acc, 0), _mm512_extractf32x8_ps(acc, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static void axpy(float* y, float a, const float* x, int n) {
    const __m512 va = _mm512_set1_ps(a);
    int i = 0;
    for (; i + 16 <= n; i += 16)
      _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
      const __mmask16 m = tail_mask(n - i);
      _mm512_mask_storeu_ps(
          y + i, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
  }
  static void scale(float* y, float a, int n) {
    const __m512 va = _mm512_set1_ps(a);
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(va, _mm512_loadu_ps(y + i)));
    if (i < n) {
      const __mmask16 m = tail_mask(n - i);
      _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(va, _mm512_maskz_loadu_ps(m, y + i)));
    }
  }
  static void to_f32(const void* src, KvDtype t, float* dst, int n) {
    int i = 0;
    if (t == KvDtype::F32) {
      const auto* f = static_cast<const float*>(src);
      for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_loadu_ps(f + i));
      if (i < n)
        _mm512_mask_storeu_ps(dst + i, tail_mask(n - i), _mm512_maskz_loadu_ps(tail_mask(n - i), f + i));
      return;
    }
    const auto* h = static_cast<const uint16_t*>(src);
    for (; i + 16 <= n; i += 16)
      _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(h + i))));
    if (i < n)
      _mm512_mask_storeu_ps(dst + i, tail_mask(n - i),
                            _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(tail_mask(n - i), h + i)));
  }
};
}  // namespace

static void attention_partial_avx512(const float* q, int64_t q_stride, int n_rows, int n_group,
                                     int64_t n_past, const PagedKvHead& kv, int head_dim, float scale,
                                     int64_t key_begin, int64_t key_end, float* acc, int64_t acc_stride,
                                     float* m, float* l) {
  // The generic path below widens f32 and f16 only: past 256 dims bf16 and the scaled
  // types (int8, fp8) run the AVX2 kernel, which every AVX-512 CPU can.
  if (head_dim > 256 && kv.dtype != KvDtype::F32 && kv.dtype != KvDtype::F16) {
    detail::kAttentionAvx2.partial(q, q_stride, n_rows, n_group, n_past, kv, head_dim, scale, key_begin,
                                   key_end, acc, acc_stride, m, l);
    return;
  }
  // The fast kernel (every dtype) gives a row the same bits whatever the call's row count, so decoded
  // alone, batched, or in a prefill chunk of any size (batch invariance).
  if (head_dim <= 256) {
    detail::attention_fast_avx512(q, q_stride, n_rows, n_group, n_past, kv, head_dim, scale, key_begin,
                                  key_end, acc, acc_stride, m, l);
    return;
  }
  attention_detail::attention_partial_impl<Avx512Ops>(q, q_stride, n_rows, n_group, n_past, kv, head_dim,
                                                      scale, key_begin, key_end, acc, acc_stride, m, l);
}

// F16 stores: nullptr, AVX2's (the same bits on every ISA, see kv_store_token).
constinit const detail::AttentionKernels detail::kAttentionAvx512{attention_partial_avx512, nullptr};

}  // namespace kvserve

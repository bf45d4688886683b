// attention_paged with AVX2/FMA vector ops, and the F16C store of new K/V (this file is
// compiled with -mavx2 -mfma -mf16c).
#include <immintrin.h>

#include <cstring>

#include "kernels/cpu/attention_impl.h"

namespace kvserve {
namespace {
struct Avx2Ops {
  static float dot(const float* a, const float* b, int n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
      acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc0 = _mm256_add_ps(acc0, acc1);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc0), _mm256_extractf128_ps(acc0, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    float r = _mm_cvtss_f32(s);
    for (; i < n; ++i) r += a[i] * b[i];
    return r;
  }
  static void axpy(float* y, float a, const float* x, int n) {
    const __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; ++i) y[i] += a * x[i];
  }
  static void scale(float* y, float a, int n) {
    const __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(va, _mm256_loadu_ps(y + i)));
    for (; i < n; ++i) y[i] *= a;
  }
  static void to_f32(const void* src, KvDtype t, float* dst, int n) {
    if (t == KvDtype::F32) {
      std::memcpy(dst, src, sizeof(float) * size_t(n));
      return;
    }
    const auto* h = static_cast<const uint16_t*>(src);
    int i = 0;
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
    for (; i < n; ++i) dst[i] = _cvtsh_ss(h[i]);
  }
};

// 8 floats -> 8 halves, round to nearest even.
inline __m128i to_half8(const float* x) {
  return _mm256_cvtps_ph(_mm256_loadu_ps(x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
}  // namespace

void attention_paged_avx2(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                          const PagedKvHead& kv, int head_dim, float scale, float* out, int64_t out_stride) {
  attention_detail::attention_paged_impl<Avx2Ops>(q, q_stride, n_rows, n_group, n_past, kv, head_dim, scale,
                                                  out, out_stride);
}

void kv_store_token_f16_avx2(void* k_head, void* v_head, int bs, int head_dim, int slot, const float* k,
                             const float* v) {
  auto* kd = static_cast<uint16_t*>(k_head);
  auto* vd = static_cast<uint16_t*>(v_head) + int64_t(slot) * head_dim;
  int d = 0;
  for (; d + 8 <= head_dim; d += 8) {
    alignas(16) uint16_t kh[8];
    _mm_store_si128(reinterpret_cast<__m128i*>(kh), to_half8(k + d));
    for (int i = 0; i < 8; ++i) kd[int64_t(d + i) * bs + slot] = kh[i];  // K is [head_dim][bs]
    _mm_storeu_si128(reinterpret_cast<__m128i*>(vd + d), to_half8(v + d));
  }
  for (; d < head_dim; ++d) {
    kd[int64_t(d) * bs + slot] = _cvtss_sh(k[d], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    vd[d] = _cvtss_sh(v[d], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
}

}  // namespace kvserve

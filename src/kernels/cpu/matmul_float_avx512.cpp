// AVX-512 kernels for float weights: F32 (f32 activations, FMA), F16 (fp16 activations
// widened with vcvtph2ps, FMA) and BF16 (bf16 activations, vdpbf16ps). Register tiles of
// 4 rows x 4 tokens reuse each loaded weight vector for 4 tokens; any n_in works (the
// tail is a masked load, whose zeros add nothing).
// F16 has its own faster path (f16_* below): fp16 values widen to f32 exactly, so
// widening activations (and, for several tokens, a panel of weight rows) once and then
// running plain f32 FMAs performs, per (row, token), the very same operations in the
// same order as the one-token path: acc = fma(w, x, acc) over 16-lane vectors from
// i = 0 (zeros past n_in), then _mm512_reduce_add_ps. Hence batch invariance.
// GCC 12 reports its own _mm512_undefined_* placeholders as uninitialized (GCC bug
// 105593, fixed in 13) wherever AVX-512 intrinsics inline.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/cpu/matmul_internal.h"

namespace kvserve::detail {
namespace {

template <GgmlType T>
struct Ops;

template <>
struct Ops<GgmlType::F32> {
  static constexpr int kStep = 16;
  using V = __m512;
  static V load(const uint8_t* p, int64_t i, uint32_t mask) {
    return _mm512_maskz_loadu_ps(__mmask16(mask), reinterpret_cast<const float*>(p) + i);
  }
  static __m512 mac(__m512 acc, V w, V x) { return _mm512_fmadd_ps(w, x, acc); }
};

template <>
struct Ops<GgmlType::F16> {
  static constexpr int kStep = 16;
  using V = __m512;
  static V load(const uint8_t* p, int64_t i, uint32_t mask) {
    return _mm512_cvtph_ps(
        _mm256_maskz_loadu_epi16(__mmask16(mask), reinterpret_cast<const uint16_t*>(p) + i));
  }
  static __m512 mac(__m512 acc, V w, V x) { return _mm512_fmadd_ps(w, x, acc); }
};

template <>
struct Ops<GgmlType::BF16> {
  static constexpr int kStep = 32;
  using V = __m512i;
  static V load(const uint8_t* p, int64_t i, uint32_t mask) {
    return _mm512_maskz_loadu_epi16(__mmask32(mask), reinterpret_cast<const uint16_t*>(p) + i);
  }
  static __m512 mac(__m512 acc, V w, V x) { return _mm512_dpbf16_ps(acc, __m512bh(w), __m512bh(x)); }
};

template <GgmlType T, int R, int NT>
void float_tile(const MatmulArgs& a, int64_t o, int64_t t0) {
  using O = Ops<T>;
  constexpr int S = O::kStep;
  const int64_t n = a.n_in;
  const uint8_t* wr[R];
  const uint8_t* xr[NT];
  for (int r = 0; r < R; ++r) wr[r] = a.w + size_t(o + r) * a.w_row_bytes;
  for (int t = 0; t < NT; ++t) xr[t] = a.x + size_t(t0 + t) * a.x_row_bytes;
  __m512 acc[R][NT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
  auto step = [&](int64_t i, uint32_t mask) {
    typename O::V w[R];
    for (int r = 0; r < R; ++r) w[r] = O::load(wr[r], i, mask);
    for (int t = 0; t < NT; ++t) {
      const typename O::V x = O::load(xr[t], i, mask);
      for (int r = 0; r < R; ++r) acc[r][t] = O::mac(acc[r][t], w[r], x);
    }
  };
  int64_t i = 0;
  for (; i + S <= n; i += S) step(i, S == 32 ? 0xffffffffu : 0xffffu);
  if (i < n) step(i, (1u << (n - i)) - 1);
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) a.y[(t0 + t) * a.ldy + o + r] = _mm512_reduce_add_ps(acc[r][t]);
}

template <GgmlType T, int R>
void float_rows(const MatmulArgs& a, int64_t o) {
  int64_t t = 0;
  for (; t + 4 <= a.n_tokens; t += 4) float_tile<T, R, 4>(a, o, t);
  switch (a.n_tokens - t) {
    case 3: float_tile<T, R, 3>(a, o, t); break;
    case 2: float_tile<T, R, 2>(a, o, t); break;
    case 1: float_tile<T, R, 1>(a, o, t); break;
    default: break;
  }
}

template <GgmlType T>
void matmul_float(const MatmulArgs& a, int64_t o0, int64_t o1) {
  int64_t o = o0;
  for (; o + 4 <= o1; o += 4) float_rows<T, 4>(a, o);
  for (; o < o1; ++o) float_rows<T, 1>(a, o);
}

// ---- F16 ----

// Grow-only per-thread scratch, 64-byte aligned.
float* f16_scratch(std::vector<float>& v, size_t n) {
  if (v.size() < n + 16) v.resize(n + 16);
  auto p = reinterpret_cast<uintptr_t>(v.data());
  return reinterpret_cast<float*>((p + 63) & ~uintptr_t(63));
}

// Widens fp16 rows [n_rows, n_in] (stride src_stride bytes) to f32 rows of n_pad
// elements, zero-filled past n_in.
void f16_widen(const uint8_t* src, size_t src_stride, int64_t n_rows, int64_t n_in, int64_t n_pad,
               float* dst) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const auto* s = reinterpret_cast<const uint16_t*>(src + size_t(r) * src_stride);
    float* d = dst + r * n_pad;
    int64_t i = 0;
    for (; i + 16 <= n_in; i += 16)
      _mm512_store_ps(d + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i))));
    for (; i < n_pad; i += 16) {
      const __mmask16 m = i < n_in ? __mmask16((1u << (n_in - i)) - 1) : __mmask16(0);
      _mm512_store_ps(d + i, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, s + i)));
    }
  }
}

// One token (decode): bandwidth-bound, so R rows stream at once while the rows
// kPrefetchRows ahead are prefetched at the rate they are consumed.
constexpr int64_t kPrefetchRows = 16;

template <int R>
void f16_gemv_rows(const MatmulArgs& a, const float* xf, int64_t o, const uint8_t* w_end) {
  const int64_t n = a.n_in;
  const uint8_t* w0 = a.w + size_t(o) * a.w_row_bytes;
  const uint16_t* wr[R];
  for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const uint16_t*>(w0 + size_t(r) * a.w_row_bytes);
  const uint8_t* pf = w0 + size_t(kPrefetchRows) * a.w_row_bytes;
  const uint8_t* pf_end = std::min(w_end, pf + size_t(R) * a.w_row_bytes);
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    // R rows consume 32 * R bytes per step: prefetch as many ahead.
    for (int k = 0; k < R / 2; ++k, pf += 64)
      if (pf < pf_end) _mm_prefetch(reinterpret_cast<const char*>(pf), _MM_HINT_T0);
    const __m512 x = _mm512_load_ps(xf + i);
    for (int r = 0; r < R; ++r)
      acc[r] = _mm512_fmadd_ps(
          _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr[r] + i))), x, acc[r]);
  }
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1);
    const __m512 x = _mm512_load_ps(xf + i);
    for (int r = 0; r < R; ++r)
      acc[r] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, wr[r] + i)), x, acc[r]);
  }
  for (int r = 0; r < R; ++r) a.y[o + r] = _mm512_reduce_add_ps(acc[r]);
}

// Several tokens: a tile of R widened weight rows x NT widened tokens, all in cache.
template <int R, int NT>
void f16_tile(const float* wf, const float* xf, int64_t n_pad, float* y, int64_t ldy) {
  __m512 acc[R][NT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
  for (int64_t i = 0; i < n_pad; i += 16) {
    __m512 w[R];
    for (int r = 0; r < R; ++r) w[r] = _mm512_load_ps(wf + r * n_pad + i);
    for (int t = 0; t < NT; ++t) {
      const __m512 x = _mm512_load_ps(xf + t * n_pad + i);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(w[r], x, acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
}

template <int R>
void f16_rows_tokens(const float* wf, const float* xf, int64_t n_pad, int64_t nt, float* y, int64_t ldy) {
  constexpr int kNT = 6;
  int64_t t = 0;
  for (; t + kNT <= nt; t += kNT) f16_tile<R, kNT>(wf, xf + t * n_pad, n_pad, y + t * ldy, ldy);
  const float* x = xf + t * n_pad;
  float* yt = y + t * ldy;
  switch (nt - t) {
    case 5: f16_tile<R, 5>(wf, x, n_pad, yt, ldy); break;
    case 4: f16_tile<R, 4>(wf, x, n_pad, yt, ldy); break;
    case 3: f16_tile<R, 3>(wf, x, n_pad, yt, ldy); break;
    case 2: f16_tile<R, 2>(wf, x, n_pad, yt, ldy); break;
    case 1: f16_tile<R, 1>(wf, x, n_pad, yt, ldy); break;
    default: break;
  }
}

void matmul_f16(const MatmulArgs& a, int64_t o0, int64_t o1) {
  const int64_t n = a.n_in;
  const int64_t n_pad = (n + 15) / 16 * 16;
  thread_local std::vector<float> xbuf, wbuf;
  if (a.n_tokens == 1) {
    float* xf = f16_scratch(xbuf, size_t(n_pad));
    f16_widen(a.x, a.x_row_bytes, 1, n, n_pad, xf);
    const uint8_t* w_end = a.w + size_t(o1) * a.w_row_bytes;
    int64_t o = o0;
    for (; o + 8 <= o1; o += 8) f16_gemv_rows<8>(a, xf, o, w_end);
    for (; o < o1; ++o) f16_gemv_rows<1>(a, xf, o, w_end);
    return;
  }
  // Token blocks keep the widened activations in L2 (128 x 1536 f32 = 768 KiB); each block
  // re-widens the weight rows (a small cost next to its FMAs) 4 rows at a time into L1.
  constexpr int64_t kTokBlock = 128;
  constexpr int kR = 4;
  float* wf = f16_scratch(wbuf, size_t(kR * n_pad));
  float* xf = f16_scratch(xbuf, size_t(std::min(a.n_tokens, kTokBlock) * n_pad));
  for (int64_t t0 = 0; t0 < a.n_tokens; t0 += kTokBlock) {
    const int64_t nt = std::min(kTokBlock, a.n_tokens - t0);
    f16_widen(a.x + size_t(t0) * a.x_row_bytes, a.x_row_bytes, nt, n, n_pad, xf);
    float* y = a.y + t0 * a.ldy;
    int64_t o = o0;
    for (; o + kR <= o1; o += kR) {
      f16_widen(a.w + size_t(o) * a.w_row_bytes, a.w_row_bytes, kR, n, n_pad, wf);
      f16_rows_tokens<kR>(wf, xf, n_pad, nt, y + o, a.ldy);
    }
    for (; o < o1; ++o) {
      f16_widen(a.w + size_t(o) * a.w_row_bytes, a.w_row_bytes, 1, n, n_pad, wf);
      f16_rows_tokens<1>(wf, xf, n_pad, nt, y + o, a.ldy);
    }
  }
}

}  // namespace

MatmulRangeFn matmul_float_fn_avx512(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return matmul_float<GgmlType::F32>;
    case GgmlType::F16: return matmul_f16;
    case GgmlType::BF16: return matmul_float<GgmlType::BF16>;
    default: return nullptr;
  }
}

}  // namespace kvserve::detail

// AVX-512 kernels for float weights: F32 (f32 activations, FMA) and BF16 (bf16
// activations, vdpbf16ps). Register tiles of 4 rows x 4 tokens reuse each loaded weight
// vector for 4 tokens; any n_in works (the tail is a masked load, whose zeros add
// nothing). F16 has its own kernel, matmul_f16_avx512.cpp.
// GCC 12 reports its own _mm512_undefined_* placeholders as uninitialized (GCC bug
// 105593, fixed in 13) wherever AVX-512 intrinsics inline.
#pragma GCC diagnostic ignored "-Wuninitialized"
#if defined(__GNUC__) && !defined(__clang__)  // clang has no such warning (and warns of the name)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/isa_dispatch.h"

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

}  // namespace

MatmulRangeFn matmul_float_fn_avx512(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return matmul_float<GgmlType::F32>;
    case GgmlType::F16: return matmul_f16_avx512;
    case GgmlType::BF16: return matmul_float<GgmlType::BF16>;
    default: return nullptr;
  }
}

}  // namespace kvserve::detail

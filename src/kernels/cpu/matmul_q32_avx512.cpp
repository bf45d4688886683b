// AVX-512 VNNI kernels for the 32-element block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)
// against Q8_0/Q8_1 activations, for few tokens (decode); many tokens go to the panel
// GEMM (matmul_panel_avx512.cpp).
//
// Weights become unsigned bytes u = q + zero_point, so one vpdpbusd multiplies 64 of
// them by 64 signed activation quants. Each weight row is read once from memory and
// dotted with up to 4 tokens (or 4 rows with one token); lanes hold 2 blocks of one row
// and are scaled per block, and the zero point times the activation block sum
// (args.xcorr) is subtracted in float with the same scale.
// GCC 12 reports its own _mm512_undefined_* placeholders as uninitialized (GCC bug
// 105593, fixed in 13) wherever AVX-512 intrinsics inline.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/matmul_q32_layout.h"

namespace kvserve::detail {
namespace {

// 64 unsigned weights of blocks blk[0] and (if two) blk[1] of one row.
template <GgmlType T>
inline __m512i unpack2(const uint8_t* blk, bool two) {
  constexpr Q32Layout L = kLayout<T>;
  if constexpr (!L.nibbles) {
    const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + L.qs));
    const __m256i hi = two ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + L.bytes + L.qs))
                           : _mm256_setzero_si256();
    const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    return _mm512_xor_si512(v, _mm512_set1_epi8(char(0x80)));
  } else {
    // Block byte j holds element j (low nibble) and j + 16 (high nibble): duplicate each
    // block's 16 bytes into two 128-bit lanes and shift the second by 4.
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + L.qs));
    const __m128i b =
        two ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + L.bytes + L.qs)) : _mm_setzero_si128();
    const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_broadcastsi128_si256(a)),
                                         _mm256_broadcastsi128_si256(b), 1);
    const __m512i shifts = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);
    __m512i u = _mm512_and_si512(_mm512_srlv_epi64(v, shifts), _mm512_set1_epi8(0x0f));
    if constexpr (L.qh >= 0) {
      uint32_t h0, h1 = 0;
      std::memcpy(&h0, blk + L.qh, 4);
      if (two) std::memcpy(&h1, blk + L.bytes + L.qh, 4);
      const __mmask64 hm = __mmask64(h0) | (__mmask64(h1) << 32);
      u = _mm512_or_si512(u, _mm512_maskz_mov_epi8(hm, _mm512_set1_epi8(0x10)));
    }
    return u;
  }
}

// Scales d (and mins m) of up to 16 blocks starting at blk, as floats.
template <GgmlType T>
inline void load_scales16(const uint8_t* blk, __mmask16 mask, __m512& d, __m512& m) {
  constexpr Q32Layout L = kLayout<T>;
  const __m512i idx = _mm512_mullo_epi32(
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(L.bytes));
  // The dword at each block's start holds d (low half) and, for Q4_1/Q5_1, m (high).
  const __m512i g = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mask, idx, blk, 1);
  d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
  if constexpr (L.m >= 0) m = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(g, 16)));
}

// y[t, o..o+R) for R rows from o and NT tokens from t0. Several rows (for one token) or
// tokens keep R * NT independent accumulation chains in flight.
template <GgmlType T, int R, int NT>
void direct_rows(const MatmulArgs& a, int64_t o, int64_t t0) {
  constexpr Q32Layout L = kLayout<T>;
  const int64_t nb = a.n_in / 32;
  const uint8_t* row[R];
  for (int r = 0; r < R; ++r) row[r] = a.w + size_t(o + r) * a.w_row_bytes;
  __m512 acc[R][NT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
  for (int64_t bb = 0; bb < nb; bb += 16) {
    const int n = int(std::min<int64_t>(16, nb - bb));
    const __mmask16 mask = __mmask16((1u << n) - 1);
    __m512 sc[R][NT];
    for (int r = 0; r < R; ++r) {
      __m512 dw, mw;
      load_scales16<T>(row[r] + bb * L.bytes, mask, dw, mw);
      for (int t = 0; t < NT; ++t) {
        const int64_t xo = (t0 + t) * nb + bb;
        sc[r][t] = _mm512_mul_ps(dw, _mm512_maskz_loadu_ps(mask, a.xd + xo));
        if constexpr (T == GgmlType::Q4_1 || T == GgmlType::Q5_1)
          acc[r][t] = _mm512_fmadd_ps(mw, _mm512_maskz_loadu_ps(mask, a.xs + xo), acc[r][t]);
        else
          acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(mask, a.xcorr + xo)),
                                      sc[r][t], acc[r][t]);
      }
    }
    for (int j = 0; j < n; j += 2) {
      const bool two = j + 1 < n;
      // Lanes 0-7 take block j's scale, lanes 8-15 block j + 1's.
      const __m512i perm =
          _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(j)), _mm256_set1_epi32(j + 1), 1);
      __m512i xv[NT];
      for (int t = 0; t < NT; ++t) {
        const int8_t* xq = a.xq + (t0 + t) * a.n_in + (bb + j) * 32;
        xv[t] = two ? _mm512_loadu_si512(xq)
                    : _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq)));
      }
      for (int r = 0; r < R; ++r) {
        const __m512i wv = unpack2<T>(row[r] + (bb + j) * L.bytes, two);
        for (int t = 0; t < NT; ++t) {
          const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, xv[t]);
          acc[r][t] =
              _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_permutexvar_ps(perm, sc[r][t]), acc[r][t]);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) a.y[(t0 + t) * a.ldy + o + r] = _mm512_reduce_add_ps(acc[r][t]);
}

template <GgmlType T>
void matmul_direct(const MatmulArgs& a, int64_t o0, int64_t o1) {
  if (a.n_tokens == 1) {  // decode: 4 rows at a time
    int64_t o = o0;
    for (; o + 4 <= o1; o += 4) direct_rows<T, 4, 1>(a, o, 0);
    for (; o < o1; ++o) direct_rows<T, 1, 1>(a, o, 0);
    return;
  }
  for (int64_t o = o0; o < o1; ++o) {
    int64_t t = 0;
    for (; t + 4 <= a.n_tokens; t += 4) direct_rows<T, 1, 4>(a, o, t);
    switch (a.n_tokens - t) {
      case 3: direct_rows<T, 1, 3>(a, o, t); break;
      case 2: direct_rows<T, 1, 2>(a, o, t); break;
      case 1: direct_rows<T, 1, 1>(a, o, t); break;
      default: break;
    }
  }
}

template <GgmlType T>
void matmul_q32(const MatmulArgs& a, int64_t o0, int64_t o1) {
  if (a.n_tokens >= kPanelMinTokens)
    matmul_panel_fn_avx512(T)(a, o0, o1);
  else
    matmul_direct<T>(a, o0, o1);
}

}  // namespace

MatmulRangeFn matmul_q32_fn_avx512(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0: return matmul_q32<GgmlType::Q4_0>;
    case GgmlType::Q4_1: return matmul_q32<GgmlType::Q4_1>;
    case GgmlType::Q5_0: return matmul_q32<GgmlType::Q5_0>;
    case GgmlType::Q5_1: return matmul_q32<GgmlType::Q5_1>;
    case GgmlType::Q8_0: return matmul_q32<GgmlType::Q8_0>;
    default: return nullptr;
  }
}

}  // namespace kvserve::detail

// AVX-512 VNNI kernel for few tokens (decode) on every type the panel GEMM serves
// (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K); many tokens go to the panel GEMM
// (matmul_panel_avx512.cpp).
//
// Batch invariance: y[t, o] must be bit-identical whether t is computed here or in the
// panel, so this kernel does exactly the panel's float operations per (row, token): for
// each unit b in order, the unit's exact int32 dot s_b (zero point correction included),
// then acc = fma(float(s_b), d_w * d_x, acc) (and acc = fma(m_w, s_x, acc) for types
// with mins). Integer sums are exact in any order, so only the float sequence matters.
//
// Weight rows are read as stored (no repacking): one vpdpbusd dots 64 unpacked weights
// of one row with 64 activation quants, giving 16 int32 partial sums; a transposing
// reduction over 16 rows then leaves lane r = row r's unit sums, and the float work
// happens once per unit per 16 rows, as in the panel.
// GCC 12 reports its own _mm512_undefined_* placeholders as uninitialized (GCC bug
// 105593, fixed in 13) wherever AVX-512 intrinsics inline.
#pragma GCC diagnostic ignored "-Wuninitialized"
#if defined(__GNUC__) && !defined(__clang__)  // clang has no such warning (and warns of the name)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "kernels/cpu/isa_dispatch.h"
#include "kernels/cpu/matmul_q32_layout.h"

namespace kvserve::detail {
namespace {

template <GgmlType T>
constexpr bool kHasMin = T == GgmlType::Q4_1 || T == GgmlType::Q5_1 || kIsK<T>;
// Units per 64-element group and per scale block (the units whose scales are loaded
// together: a pair of 32-element blocks, or a K-quant super-block).
template <GgmlType T>
constexpr int kGroupUnits = 64 / kUnitElems<T>;
template <GgmlType T>
constexpr int kScaleUnits = kUnitsPerBlock<T> == 1 ? 2 : int(kUnitsPerBlock<T>);

// Scales d and mins m (lane r = row r) of units [kb, kb + n) of 16 rows, computed with
// the same operations as the panel's repack so the products round identically.
template <GgmlType T>
void load_scales(const MatmulArgs& a, int64_t o, __mmask16 mask, int64_t kb, int n, __m512* d, __m512* m) {
  const __m512i ridx =
      _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_epi32(int(a.w_row_bytes)));
  const __m512i zero = _mm512_setzero_si512();
  const uint8_t* base =
      a.w + size_t(o) * a.w_row_bytes + unit_offset<T>(kb / kUnitsPerBlock<T> * kUnitsPerBlock<T>);
  if constexpr (T == GgmlType::Q6_K) {
    const __m512 dd = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(
        _mm512_mask_i32gather_epi32(zero, mask, ridx, base + offsetof(BlockQ6_K, d) - 2, 1), 16)));
    for (int i = 0; i < 4; ++i) {
      const __m512i sc =
          _mm512_mask_i32gather_epi32(zero, mask, ridx, base + offsetof(BlockQ6_K, scales) + 4 * i, 1);
      for (int j = 0; j < 4; ++j) {
        const __m512i s = _mm512_srai_epi32(_mm512_slli_epi32(sc, 24 - 8 * j), 24);  // signed byte j
        d[4 * i + j] = _mm512_mul_ps(dd, _mm512_cvtepi32_ps(s));
      }
    }
  } else if constexpr (kIsK<T>) {
    const __m512i g = _mm512_mask_i32gather_epi32(zero, mask, ridx, base, 1);
    const __m512 dd = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
    const __m512 dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(g, 16)));
    // The 12 packed scale bytes q[0..11] of each row as three dwords (lane r = row r).
    const __m512i qa = _mm512_mask_i32gather_epi32(zero, mask, ridx, base + 4, 1);
    const __m512i qb = _mm512_mask_i32gather_epi32(zero, mask, ridx, base + 8, 1);
    const __m512i qc = _mm512_mask_i32gather_epi32(zero, mask, ridx, base + 12, 1);
    const __m512i m6 = _mm512_set1_epi32(63), m4 = _mm512_set1_epi32(15), m2 = _mm512_set1_epi32(3);
    for (int j = 0; j < 4; ++j) {
      const __m512i a = _mm512_srli_epi32(qa, 8 * j), b = _mm512_srli_epi32(qb, 8 * j);
      const __m512i c = _mm512_srli_epi32(qc, 8 * j);
      const __m512i sc_lo = _mm512_and_si512(a, m6), mn_lo = _mm512_and_si512(b, m6);
      const __m512i sc_hi = _mm512_or_si512(
          _mm512_and_si512(c, m4), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(a, 6), m2), 4));
      const __m512i mn_hi =
          _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(c, 4), m4),
                          _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(b, 6), m2), 4));
      // The same products as the panel's repack (exact small integers to float first).
      d[j] = _mm512_mul_ps(dd, _mm512_cvtepi32_ps(sc_lo));
      m[j] = _mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(mn_lo)));
      d[j + 4] = _mm512_mul_ps(dd, _mm512_cvtepi32_ps(sc_hi));
      m[j + 4] = _mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(mn_hi)));
    }
  } else {
    constexpr Q32Layout L = kLayout<T>;
    for (int u = 0; u < n; ++u) {
      const __m512i g = _mm512_mask_i32gather_epi32(zero, mask, ridx, base + u * L.bytes, 1);
      d[u] = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
      if constexpr (L.m >= 0) m[u] = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(g, 16)));
    }
  }
}

// Unsigned weights of one row's elements [64 g, 64 g + 64) in element order (for
// 32-element blocks with an odd count, the last group's upper half is zero).
template <GgmlType T>
inline __m512i unpack64(const uint8_t* row, int64_t g, bool two) {
  if constexpr (T == GgmlType::Q6_K) {
    const auto* b = reinterpret_cast<const BlockQ6_K*>(row) + g / 4;
    const int v = int(g % 4), h = v / 2;
    const __m512i lo4 = _mm512_set1_epi8(0x0f), lo2 = _mm512_set1_epi8(3);
    // Elements 128h + 32j + l: nibble j / 2 of ql[64h + 32(j % 2) + l], bits 2j of qh[32h + l].
    const __m512i ql = _mm512_loadu_si512(b->ql + 64 * h);
    const __m512i qh =
        _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qh + 32 * h)));
    const __m512i sh =
        v % 2 ? _mm512_set_epi64(6, 6, 6, 6, 4, 4, 4, 4) : _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0);
    const __m512i hi = _mm512_and_si512(_mm512_srlv_epi64(qh, sh), lo2);
    const __m512i low = _mm512_and_si512(v % 2 ? _mm512_srli_epi16(ql, 4) : ql, lo4);
    return _mm512_or_si512(low, _mm512_slli_epi16(hi, 4));
  } else if constexpr (kIsK<T>) {
    constexpr bool kHigh = T == GgmlType::Q5_K;
    const int c = int(g % 4);
    const uint8_t *qs, *qhp = nullptr;
    if constexpr (kHigh) {
      const auto* b = reinterpret_cast<const BlockQ5_K*>(row) + g / 4;
      qs = b->qs, qhp = b->qh;
    } else {
      qs = (reinterpret_cast<const BlockQ4_K*>(row) + g / 4)->qs;
    }
    // Sub-block 2c: low nibbles of qs[32c..32c+31], 2c + 1: the high nibbles.
    const __m256i lo4 = _mm256_set1_epi8(0x0f);
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * c));
    __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(q, lo4)),
                                   _mm256_and_si256(_mm256_srli_epi16(q, 4), lo4), 1);
    if constexpr (kHigh) {
      // The 5th bit of element 32 sb + l is bit sb of qh[l].
      const __m512i qh2 = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qhp)));
      const __m512i bit = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi8(char(1 << (2 * c)))),
                                             _mm256_set1_epi8(char(1 << (2 * c + 1))), 1);
      w = _mm512_or_si512(w, _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(qh2, bit), _mm512_set1_epi8(0x10)));
    }
    return w;
  } else {
    constexpr Q32Layout L = kLayout<T>;
    const uint8_t* blk = row + 2 * g * L.bytes;
    if constexpr (!L.nibbles) {
      const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + L.qs));
      const __m256i hi = two ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + L.bytes + L.qs))
                             : _mm256_setzero_si256();
      const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
      const __m512i u = _mm512_xor_si512(v, _mm512_set1_epi8(char(0x80)));
      return two ? u : _mm512_zextsi256_si512(_mm512_castsi512_si256(u));
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
}

// Rows j = 0..3 -> lane 4l + j = sum of the 4 dwords of 128-bit lane l of p_j.
inline __m512i reduce_quad(__m512i p0, __m512i p1, __m512i p2, __m512i p3) {
  const __m512i a01 = _mm512_add_epi32(_mm512_unpacklo_epi32(p0, p1), _mm512_unpackhi_epi32(p0, p1));
  const __m512i a23 = _mm512_add_epi32(_mm512_unpacklo_epi32(p2, p3), _mm512_unpackhi_epi32(p2, p3));
  return _mm512_add_epi32(_mm512_unpacklo_epi64(a01, a23), _mm512_unpackhi_epi64(a01, a23));
}

// Combines the sums of quads 2h, 2h + 1 (b0, b1) into the halves e[] that finish_units
// joins: G = 4 units (unit u = 128-bit lane u) keep lanes {0, 1} and {2, 3}; G = 2 units
// (unit u = 128-bit lanes 2u, 2u + 1) add each unit's two lanes.
template <int G>
inline void combine_pair(__m512i b0, __m512i b1, __m512i* e) {
  if constexpr (G == 4) {
    e[0] = _mm512_shuffle_i32x4(b0, b1, _MM_SHUFFLE(1, 0, 1, 0));
    e[1] = _mm512_shuffle_i32x4(b0, b1, _MM_SHUFFLE(3, 2, 3, 2));
  } else {
    e[0] = _mm512_add_epi32(_mm512_shuffle_i32x4(b0, b1, _MM_SHUFFLE(2, 0, 2, 0)),
                            _mm512_shuffle_i32x4(b0, b1, _MM_SHUFFLE(3, 1, 3, 1)));
  }
}

// s[u] lane r = row r's sum over unit u, from the halves of rows 0-7 (e0) and 8-15 (e1).
template <int G>
inline void finish_units(const __m512i* e0, const __m512i* e1, __m512i* s) {
  for (int i = 0; i < G / 2; ++i) {
    s[2 * i] = _mm512_shuffle_i32x4(e0[i], e1[i], _MM_SHUFFLE(2, 0, 2, 0));
    s[2 * i + 1] = _mm512_shuffle_i32x4(e0[i], e1[i], _MM_SHUFFLE(3, 1, 3, 1));
  }
}

// y[t, o..o+rows) for NT tokens from t0. Reading 16 rows side by side defeats the
// hardware prefetcher, so bytes [pf, pf + pf_len) (the next rows) are prefetched along.
template <GgmlType T, int NT>
void rows16(const MatmulArgs& a, int64_t o, int rows, int64_t t0, const uint8_t* pf, int64_t pf_len) {
  constexpr int U = kUnitElems<T>, G = kGroupUnits<T>, SU = kScaleUnits<T>;
  const int64_t nb = a.n_in / U;
  const __mmask16 mask = __mmask16((1u << rows) - 1);
  const uint8_t* row[16];
  for (int r = 0; r < 16; ++r) row[r] = a.w + size_t(o + std::min(r, rows - 1)) * a.w_row_bytes;
  const int8_t* xq[NT];
  for (int t = 0; t < NT; ++t) xq[t] = a.xq + (t0 + t) * a.n_in;
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  __m512 d[SU], m[SU];
  const int64_t pf_step = (pf_len + (nb + G - 1) / G - 1) / ((nb + G - 1) / G);  // bytes per group
  int64_t pf_done = 0;
  for (int64_t kb0 = 0; kb0 < nb; kb0 += SU) {
    const int n_units = int(std::min<int64_t>(SU, nb - kb0));
    load_scales<T>(a, o, mask, kb0, n_units, d, m);
    for (int u0 = 0; u0 < n_units; u0 += G) {
      const int64_t g = (kb0 + u0) / G;  // 64-element group in the row
      const bool two = u0 + 1 < n_units;
      for (const int64_t end = std::min(pf_len, pf_done + pf_step); pf_done < end; pf_done += 64)
        _mm_prefetch(reinterpret_cast<const char*>(pf + pf_done), _MM_HINT_T0);
      __m512i xv[NT];
      for (int t = 0; t < NT; ++t)
        xv[t] = two ? _mm512_loadu_si512(xq[t] + 64 * g)
                    : _mm512_zextsi256_si512(
                          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[t] + 64 * g)));
      __m512i e[2][NT][G / 2];
      for (int h = 0; h < 2; ++h) {
        __m512i b[NT][2];
        for (int q = 0; q < 2; ++q) {
          __m512i p[NT][4];
          for (int j = 0; j < 4; ++j) {
            const __m512i w = unpack64<T>(row[8 * h + 4 * q + j], g, two);
            for (int t = 0; t < NT; ++t) p[t][j] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, xv[t]);
          }
          for (int t = 0; t < NT; ++t) b[t][q] = reduce_quad(p[t][0], p[t][1], p[t][2], p[t][3]);
        }
        for (int t = 0; t < NT; ++t) combine_pair<G>(b[t][0], b[t][1], e[h][t]);
      }
      for (int t = 0; t < NT; ++t) {
        __m512i s[G];
        finish_units<G>(e[0][t], e[1][t], s);
        for (int u = 0; u < G && u0 + u < n_units; ++u) {
          const int64_t xo = (t0 + t) * nb + kb0 + u0 + u;
          if constexpr (!kHasMin<T>) s[u] = _mm512_add_epi32(s[u], _mm512_set1_epi32(a.xcorr[xo]));
          acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[u]),
                                   _mm512_mul_ps(d[u0 + u], _mm512_set1_ps(a.xd[xo])), acc[t]);
          if constexpr (kHasMin<T>) acc[t] = _mm512_fmadd_ps(m[u0 + u], _mm512_set1_ps(a.xs[xo]), acc[t]);
        }
      }
    }
  }
  for (int t = 0; t < NT; ++t) _mm512_mask_storeu_ps(a.y + (t0 + t) * a.ldy + o, mask, acc[t]);
}

template <GgmlType T>
void matmul_direct(const MatmulArgs& a, int64_t o0, int64_t o1) {
  for (int64_t o = o0; o < o1; o += 16) {
    const int rows = int(std::min<int64_t>(16, o1 - o));
    // The first token tile prefetches the next 16 rows (contiguous); later ones find
    // this group's rows in cache.
    const uint8_t* next = a.w + size_t(o + 16) * a.w_row_bytes;
    const int64_t next_len =
        std::max<int64_t>(0, std::min<int64_t>(16, o1 - o - 16)) * int64_t(a.w_row_bytes);
    int64_t t = 0;
    for (; t + 4 <= a.n_tokens; t += 4) rows16<T, 4>(a, o, rows, t, next, t == 0 ? next_len : 0);
    const int64_t pf_len = t == 0 ? next_len : 0;
    switch (a.n_tokens - t) {
      case 3: rows16<T, 3>(a, o, rows, t, next, pf_len); break;
      case 2: rows16<T, 2>(a, o, rows, t, next, pf_len); break;
      case 1: rows16<T, 1>(a, o, rows, t, next, pf_len); break;
      default: break;
    }
  }
}

template <GgmlType T>
void matmul_blocks(const MatmulArgs& a, int64_t o0, int64_t o1) {
  if (a.n_tokens >= kPanelMinTokens)
    matmul_panel_fn_avx512(T)(a, o0, o1);
  else
    matmul_direct<T>(a, o0, o1);
}

}  // namespace

MatmulRangeFn matmul_q32_fn_avx512(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0: return matmul_blocks<GgmlType::Q4_0>;
    case GgmlType::Q4_1: return matmul_blocks<GgmlType::Q4_1>;
    case GgmlType::Q5_0: return matmul_blocks<GgmlType::Q5_0>;
    case GgmlType::Q5_1: return matmul_blocks<GgmlType::Q5_1>;
    case GgmlType::Q8_0: return matmul_blocks<GgmlType::Q8_0>;
    default: return nullptr;
  }
}

MatmulRangeFn matmul_kquant_fn_avx512(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_K: return matmul_blocks<GgmlType::Q4_K>;
    case GgmlType::Q5_K: return matmul_blocks<GgmlType::Q5_K>;
    case GgmlType::Q6_K: return matmul_blocks<GgmlType::Q6_K>;
    default: return nullptr;
  }
}

}  // namespace kvserve::detail

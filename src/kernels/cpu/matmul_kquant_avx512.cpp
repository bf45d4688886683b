// AVX-512 kernels for Q4_K, Q5_K and Q6_K weights against Q8_K activations. Each
// 256-element super-block is unpacked to unsigned bytes once per row and dotted with up
// to 8 tokens: vpmaddubsw makes int16 pair sums (no saturation: weights < 64), vpdpwssd
// applies the sub-block scales in int32, and the mins / Q6_K's offset of 32 come from
// the activations' per-16 sums (bsums). Q2_K and Q3_K use the scalar kernel.
// GCC 12 reports its own _mm512_undefined_* placeholders as uninitialized (GCC bug
// 105593, fixed in 13) wherever AVX-512 intrinsics inline.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "core/half.h"
#include "gguf/quant_blocks.h"
#include "kernels/cpu/matmul_internal.h"

namespace kvserve::detail {
namespace {

// Scales and mins (6 bits each) of the 8 sub-blocks of a Q4_K / Q5_K super-block.
inline void scales_mins_k4(const uint8_t* q, int16_t* sc, int16_t* m) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = q[j] & 63;
    m[j] = q[j + 4] & 63;
    sc[j + 4] = int16_t((q[j + 8] & 0xf) | ((q[j] >> 6) << 4));
    m[j + 4] = int16_t((q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4));
  }
}

inline __m512i pair16(int16_t a, int16_t b) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(a)), _mm256_set1_epi16(b), 1);
}

// Q4_K (kHigh = false) and Q5_K (kHigh = true): one row, NT tokens from t0.
template <bool kHigh, int NT>
void k45_row(const MatmulArgs& a, int64_t o, int64_t t0) {
  const int64_t nsb = a.n_in / QK_K;
  const uint8_t* row = a.w + size_t(o) * a.w_row_bytes;
  const __m256i lo4 = _mm256_set1_epi8(0x0f);
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t k = 0; k < nsb; ++k) {
    const uint8_t *scales, *qs, *qh = nullptr;
    uint16_t dh, dminh;
    if constexpr (kHigh) {
      const auto* blk = reinterpret_cast<const BlockQ5_K*>(row) + k;
      scales = blk->scales, qs = blk->qs, qh = blk->qh, dh = blk->d, dminh = blk->dmin;
    } else {
      const auto* blk = reinterpret_cast<const BlockQ4_K*>(row) + k;
      scales = blk->scales, qs = blk->qs, dh = blk->d, dminh = blk->dmin;
    }
    alignas(32) int16_t sc[8], mn[8];
    scales_mins_k4(scales, sc, mn);
    // Mins per 16-element group (each sub-block of 32 covers two bsums).
    const __m256i mins16 = _mm256_setr_epi16(mn[0], mn[0], mn[1], mn[1], mn[2], mn[2], mn[3], mn[3], mn[4],
                                             mn[4], mn[5], mn[5], mn[6], mn[6], mn[7], mn[7]);
    __m512i w[4], s[4];
    __m512i qh2;
    if constexpr (kHigh)
      qh2 = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh)));
    for (int c = 0; c < 4; ++c) {
      // Chunk c: sub-block 2c = low nibbles of qs[32c..], 2c + 1 = the high nibbles.
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * c));
      w[c] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(q, lo4)),
                                _mm256_and_si256(_mm256_srli_epi16(q, 4), lo4), 1);
      if constexpr (kHigh) {
        const __m512i bit = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi8(char(1 << (2 * c)))),
                                               _mm256_set1_epi8(char(1 << (2 * c + 1))), 1);
        w[c] = _mm512_or_si512(
            w[c], _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(qh2, bit), _mm512_set1_epi8(0x10)));
      }
      s[c] = pair16(sc[2 * c], sc[2 * c + 1]);
    }
    const float d = fp16_to_fp32(dh), dmin = fp16_to_fp32(dminh);
    for (int t = 0; t < NT; ++t) {
      const auto* y = reinterpret_cast<const BlockQ8_K*>(a.x + size_t(t0 + t) * a.x_row_bytes) + k;
      __m512i isum = _mm512_setzero_si512();
      for (int c = 0; c < 4; ++c)
        isum =
            _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(w[c], _mm512_loadu_si512(y->qs + 64 * c)), s[c]);
      const __m256i msum =
          _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(y->bsums)), mins16);
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * y->d), acc[t]);
      acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(_mm512_zextsi256_si512(msum)), _mm512_set1_ps(dmin * y->d),
                                acc[t]);
    }
  }
  for (int t = 0; t < NT; ++t) a.y[(t0 + t) * a.ldy + o] = _mm512_reduce_add_ps(acc[t]);
}

template <int NT>
void q6k_row(const MatmulArgs& a, int64_t o, int64_t t0) {
  const int64_t nsb = a.n_in / QK_K;
  const auto* blks = reinterpret_cast<const BlockQ6_K*>(a.w + size_t(o) * a.w_row_bytes);
  const __m512i lo4 = _mm512_set1_epi8(0x0f), lo2 = _mm512_set1_epi8(3);
  // Scale index per int16 lane of the four 64-element vectors of a super-block.
  __m512i sidx[4];
  for (int v = 0; v < 4; ++v) {
    alignas(64) int16_t idx[32];
    for (int i = 0; i < 32; ++i) idx[i] = int16_t(4 * v + i / 8);
    sidx[v] = _mm512_load_si512(idx);
  }
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t k = 0; k < nsb; ++k) {
    const BlockQ6_K& b = blks[k];
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)));
    const __m512i sc16z = _mm512_castsi256_si512(sc16);
    __m512i w[4], s[4];
    for (int h = 0; h < 2; ++h) {
      // Elements 128h + 32j + l: low nibble (j / 2) of ql[64h + 32(j % 2) + l], high
      // bits 2j of qh[32h + l]. Vector 2h holds j = 0, 1; vector 2h + 1 holds j = 2, 3.
      const __m512i ql = _mm512_loadu_si512(b.ql + 64 * h);
      const __m512i qh =
          _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * h)));
      const __m512i hA =
          _mm512_and_si512(_mm512_srlv_epi64(qh, _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0)), lo2);
      const __m512i hB =
          _mm512_and_si512(_mm512_srlv_epi64(qh, _mm512_set_epi64(6, 6, 6, 6, 4, 4, 4, 4)), lo2);
      w[2 * h] = _mm512_or_si512(_mm512_and_si512(ql, lo4), _mm512_slli_epi16(hA, 4));
      w[2 * h + 1] =
          _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), lo4), _mm512_slli_epi16(hB, 4));
    }
    for (int v = 0; v < 4; ++v) s[v] = _mm512_permutexvar_epi16(sidx[v], sc16z);
    const float d = fp16_to_fp32(b.d);
    for (int t = 0; t < NT; ++t) {
      const auto* y = reinterpret_cast<const BlockQ8_K*>(a.x + size_t(t0 + t) * a.x_row_bytes) + k;
      __m512i isum = _mm512_setzero_si512();
      for (int v = 0; v < 4; ++v)
        isum =
            _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(w[v], _mm512_loadu_si512(y->qs + 64 * v)), s[v]);
      // Stored values are q + 32: subtract 32 * sum over groups of scale * bsum.
      const __m256i corr =
          _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(y->bsums)), sc16);
      isum = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(_mm256_slli_epi32(corr, 5)));
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * y->d), acc[t]);
    }
  }
  for (int t = 0; t < NT; ++t) a.y[(t0 + t) * a.ldy + o] = _mm512_reduce_add_ps(acc[t]);
}

// Runs Row<NT>::run(a, o, t) over every row and token, tokens in tiles of 8, then 4, 2,
// 1: each unpacked super-block serves a whole tile.
template <template <int> class Row>
void rows_by_token_tiles(const MatmulArgs& a, int64_t o0, int64_t o1) {
  for (int64_t o = o0; o < o1; ++o) {
    int64_t t = 0;
    for (; t + 8 <= a.n_tokens; t += 8) Row<8>::run(a, o, t);
    const int64_t rest = a.n_tokens - t;
    if (rest & 4) Row<4>::run(a, o, t), t += 4;
    if (rest & 2) Row<2>::run(a, o, t), t += 2;
    if (rest & 1) Row<1>::run(a, o, t);
  }
}

template <bool kHigh>
struct K45 {
  template <int NT>
  struct Row {
    static void run(const MatmulArgs& a, int64_t o, int64_t t) { k45_row<kHigh, NT>(a, o, t); }
  };
};

template <int NT>
struct Q6K {
  static void run(const MatmulArgs& a, int64_t o, int64_t t) { q6k_row<NT>(a, o, t); }
};

// Many tokens: the repacked panel kernel (matmul_q32_avx512.cpp); few: per row.
template <bool kHigh>
void k45_matmul(const MatmulArgs& a, int64_t o0, int64_t o1) {
  if (a.n_tokens >= kPanelMinTokens && a.xq)
    matmul_panel_fn_avx512(kHigh ? GgmlType::Q5_K : GgmlType::Q4_K)(a, o0, o1);
  else
    rows_by_token_tiles<K45<kHigh>::template Row>(a, o0, o1);
}

void q6k_matmul(const MatmulArgs& a, int64_t o0, int64_t o1) {
  if (a.n_tokens >= kPanelMinTokens && a.xq)
    matmul_panel_fn_avx512(GgmlType::Q6_K)(a, o0, o1);
  else
    rows_by_token_tiles<Q6K>(a, o0, o1);
}

}  // namespace

MatmulRangeFn matmul_kquant_fn_avx512(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_K: return k45_matmul<false>;
    case GgmlType::Q5_K: return k45_matmul<true>;
    case GgmlType::Q6_K: return q6k_matmul;
    default: return nullptr;
  }
}

}  // namespace kvserve::detail

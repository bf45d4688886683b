// AVX2 kernels for Q4_K, Q5_K and Q6_K weights against Q8_K activations (CPUs without
// AVX-512): per 32 weights, vpmaddubsw (unsigned weights < 64, so no saturation) then vpmaddwd by the
// sub-block scale; mins and Q6_K's offset of 32 come from the activations' bsums. Each super-block chunk is
// unpacked once per row and used for up to 4 tokens.
#include <immintrin.h>

#include "core/half.h"
#include "gguf/quant_blocks.h"
#include "kernels/cpu/isa_dispatch.h"

namespace kvserve::detail {
namespace {

inline float hsum(__m256 v) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

inline __m256i load256(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

inline const BlockQ8_K* act_block(const MatmulArgs& a, int64_t t, int64_t k) {
  return reinterpret_cast<const BlockQ8_K*>(a.x + size_t(t) * a.x_row_bytes) + k;
}

// sum over 32 elements of w * x, scaled by sc, in 8 int32 lanes.
inline __m256i scaled_dot32(__m256i w, __m256i x, __m256i sc) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), sc);
}

inline void scales_mins_k4(const uint8_t* q, int16_t* sc, int16_t* m) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = q[j] & 63;
    m[j] = q[j + 4] & 63;
    sc[j + 4] = int16_t((q[j + 8] & 0xf) | ((q[j] >> 6) << 4));
    m[j + 4] = int16_t((q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4));
  }
}

template <bool kHigh, int NT>
void k45_row(const MatmulArgs& a, int64_t o, int64_t t0) {
  const int64_t nsb = a.n_in / QK_K;
  const uint8_t* row = a.w + size_t(o) * a.w_row_bytes;
  const __m256i lo4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
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
    int16_t sc[8], mn[8];
    scales_mins_k4(scales, sc, mn);
    __m256i isum[NT];
    for (int t = 0; t < NT; ++t) isum[t] = _mm256_setzero_si256();
    __m256i qhv = kHigh ? load256(qh) : _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      // Sub-block 2c = low nibbles of qs[32c..], 2c + 1 = high nibbles; Q5_K's 5th bits
      // are bits 2c and 2c + 1 of qh[l].
      const __m256i q = load256(qs + 32 * c);
      __m256i lo = _mm256_and_si256(q, lo4);
      __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), lo4);
      if constexpr (kHigh) {
        lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(qhv, one), 4));
        hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qhv, 1), one), 4));
        qhv = _mm256_srli_epi16(qhv, 2);
      }
      const __m256i s_lo = _mm256_set1_epi16(sc[2 * c]), s_hi = _mm256_set1_epi16(sc[2 * c + 1]);
      for (int t = 0; t < NT; ++t) {
        const BlockQ8_K* y = act_block(a, t0 + t, k);
        isum[t] = _mm256_add_epi32(isum[t], scaled_dot32(lo, load256(y->qs + 64 * c), s_lo));
        isum[t] = _mm256_add_epi32(isum[t], scaled_dot32(hi, load256(y->qs + 64 * c + 32), s_hi));
      }
    }
    const __m256i mins16 = _mm256_setr_epi16(mn[0], mn[0], mn[1], mn[1], mn[2], mn[2], mn[3], mn[3], mn[4],
                                             mn[4], mn[5], mn[5], mn[6], mn[6], mn[7], mn[7]);
    const float d = fp16_to_fp32(dh), dmin = fp16_to_fp32(dminh);
    for (int t = 0; t < NT; ++t) {
      const BlockQ8_K* y = act_block(a, t0 + t, k);
      const __m256i msum = _mm256_madd_epi16(load256(y->bsums), mins16);
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_set1_ps(d * y->d), acc[t]);
      acc[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_set1_ps(dmin * y->d), acc[t]);
    }
  }
  for (int t = 0; t < NT; ++t) a.y[(t0 + t) * a.ldy + o] = hsum(acc[t]);
}

template <int NT>
void q6k_row(const MatmulArgs& a, int64_t o, int64_t t0) {
  const int64_t nsb = a.n_in / QK_K;
  const auto* blks = reinterpret_cast<const BlockQ6_K*>(a.w + size_t(o) * a.w_row_bytes);
  const __m256i lo4 = _mm256_set1_epi8(0x0f), lo2 = _mm256_set1_epi8(3);
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t k = 0; k < nsb; ++k) {
    const BlockQ6_K& b = blks[k];
    __m256i isum[NT];
    for (int t = 0; t < NT; ++t) isum[t] = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = load256(b.ql + 64 * h), ql1 = load256(b.ql + 64 * h + 32);
      const __m256i qh = load256(b.qh + 32 * h);
      for (int j = 0; j < 4; ++j) {
        // Elements 128h + 32j + l: nibble j / 2 of ql[64h + 32(j % 2) + l], bits 2j of qh.
        const __m256i ql = j % 2 ? ql1 : ql0;
        const __m256i low =
            j < 2 ? _mm256_and_si256(ql, lo4) : _mm256_and_si256(_mm256_srli_epi16(ql, 4), lo4);
        const __m256i high = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * j)), lo2);
        const __m256i w = _mm256_or_si256(low, _mm256_slli_epi16(high, 4));
        const int g = 8 * h + 2 * j;  // the two 16-element groups' scales
        const __m256i sc = _mm256_set_m128i(_mm_set1_epi16(b.scales[g + 1]), _mm_set1_epi16(b.scales[g]));
        for (int t = 0; t < NT; ++t) {
          const BlockQ8_K* y = act_block(a, t0 + t, k);
          isum[t] = _mm256_add_epi32(isum[t], scaled_dot32(w, load256(y->qs + 128 * h + 32 * j), sc));
        }
      }
    }
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)));
    const float d = fp16_to_fp32(b.d);
    for (int t = 0; t < NT; ++t) {
      const BlockQ8_K* y = act_block(a, t0 + t, k);
      // Stored values are q + 32: subtract 32 * sum over groups of scale * bsum.
      const __m256i corr = _mm256_madd_epi16(load256(y->bsums), sc16);
      const __m256i s = _mm256_sub_epi32(isum[t], _mm256_slli_epi32(corr, 5));
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d * y->d), acc[t]);
    }
  }
  for (int t = 0; t < NT; ++t) a.y[(t0 + t) * a.ldy + o] = hsum(acc[t]);
}

template <template <int> class Row>
void rows_by_token_tiles(const MatmulArgs& a, int64_t o0, int64_t o1) {
  for (int64_t o = o0; o < o1; ++o) {
    int64_t t = 0;
    for (; t + 4 <= a.n_tokens; t += 4) Row<4>::run(a, o, t);
    const int64_t rest = a.n_tokens - t;
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

}  // namespace

MatmulRangeFn matmul_kquant_fn_avx2(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_K: return rows_by_token_tiles<K45<false>::Row>;
    case GgmlType::Q5_K: return rows_by_token_tiles<K45<true>::Row>;
    case GgmlType::Q6_K: return rows_by_token_tiles<Q6K>;
    default: return nullptr;
  }
}

}  // namespace kvserve::detail

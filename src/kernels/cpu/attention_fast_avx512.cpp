// AVX-512 attention kernel (this file is compiled with -mavx512f ...), the same paged
// online-softmax algorithm as attention_impl.h: sixteen (token, head) query rows share
// one register, so a score for all of them is head_dim FMAs against a broadcast key
// element, with no horizontal sums, and the running max, normalizer and exp are
// lane-wise vector ops; the weighted V sum of a row is kept in registers.
//
// attention_rows_avx512, for decode, does each row's float operations in the same order
// with keys in lanes instead, so a row's output is bit-identical whether it is decoded
// or sits in a prefill chunk of any size (batch invariance).
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/exp_avx512.h"

namespace kvserve {

namespace {

constexpr int kLanes = 16;
constexpr int kKeys = 32;  // keys scored at once (scores and probabilities kept on the stack)
constexpr int kMaxLaneHeadDim = 256;

inline __mmask16 tail(int n) {
  return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1u);
}

// acc (NV vectors of one row) = acc * corr + sum_j p[j] * v_j, over nk keys.
template <int NV>
void accumulate_row(float* acc, int head_dim, float corr, const float* p, int p_stride, const float* v,
                    int nk) {
  __m512 a[NV];
  for (int t = 0; t < NV; ++t)
    a[t] = _mm512_mul_ps(_mm512_maskz_loadu_ps(tail(head_dim - 16 * t), acc + 16 * t), _mm512_set1_ps(corr));
  for (int j = 0; j < nk; ++j) {
    const __m512 pj = _mm512_set1_ps(p[j * p_stride]);
    const float* vj = v + int64_t(j) * head_dim;
    for (int t = 0; t < NV; ++t)
      a[t] = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(tail(head_dim - 16 * t), vj + 16 * t), a[t]);
  }
  for (int t = 0; t < NV; ++t) _mm512_mask_storeu_ps(acc + 16 * t, tail(head_dim - 16 * t), a[t]);
}

using AccumulateFn = void (*)(float*, int, float, const float*, int, const float*, int);

AccumulateFn accumulate_for(int head_dim) {
  switch ((head_dim + 15) / 16) {
    case 1: return accumulate_row<1>;
    case 2: return accumulate_row<2>;
    case 3: return accumulate_row<3>;
    case 4: return accumulate_row<4>;
    case 5: return accumulate_row<5>;
    case 6: return accumulate_row<6>;
    case 7: return accumulate_row<7>;
    case 8: return accumulate_row<8>;
    case 9: return accumulate_row<9>;
    case 10: return accumulate_row<10>;
    case 11: return accumulate_row<11>;
    case 12: return accumulate_row<12>;
    case 13: return accumulate_row<13>;
    case 14: return accumulate_row<14>;
    case 15: return accumulate_row<15>;
    default: return accumulate_row<16>;
  }
}

// out[k] = column k of the 16 x 16 matrix whose rows are in[0..15].
inline void transpose16(const __m512* in, __m512* out) {
  __m512 t[16], u[16], v[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(in[2 * i], in[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(in[2 * i], in[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // u[4i + k] lane L: column 4L + k of rows 4i..4i+3
    u[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int k = 0; k < 4; ++k) {
    v[k] = _mm512_shuffle_f32x4(u[k], u[4 + k], _MM_SHUFFLE(2, 0, 2, 0));
    v[4 + k] = _mm512_shuffle_f32x4(u[k], u[4 + k], _MM_SHUFFLE(3, 1, 3, 1));
    v[8 + k] = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], _MM_SHUFFLE(2, 0, 2, 0));
    v[12 + k] = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], _MM_SHUFFLE(3, 1, 3, 1));
  }
  for (int k = 0; k < 4; ++k) {
    out[k] = _mm512_shuffle_f32x4(v[k], v[8 + k], _MM_SHUFFLE(2, 0, 2, 0));
    out[8 + k] = _mm512_shuffle_f32x4(v[k], v[8 + k], _MM_SHUFFLE(3, 1, 3, 1));
    out[4 + k] = _mm512_shuffle_f32x4(v[4 + k], v[12 + k], _MM_SHUFFLE(2, 0, 2, 0));
    out[12 + k] = _mm512_shuffle_f32x4(v[4 + k], v[12 + k], _MM_SHUFFLE(3, 1, 3, 1));
  }
}

}  // namespace

void attention_lanes_avx512(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                            const PagedKvHead& kv, int head_dim, float scale, float* out,
                            int64_t out_stride) {
  const int bs = kv.block_size;
  const int n_flat = n_rows * n_group;
  const AccumulateFn accumulate = accumulate_for(head_dim);
  alignas(64) float qt[kMaxLaneHeadDim * kLanes];  // [head_dim][lane] scaled queries of the tile
  alignas(64) float s[kKeys * kLanes];             // [key][lane] scores, then probabilities
  alignas(64) float corr_l[kLanes];
  alignas(64) int32_t last_l[kLanes];

  for (int i0 = 0; i0 < n_flat; i0 += kLanes) {
    const int nl = n_flat - i0 < kLanes ? n_flat - i0 : kLanes;
    // Lane i is row i0 + i: token r = row / n_group, head g = row % n_group. Spare lanes
    // repeat the last row (finite values; never written back).
    for (int i = 0; i < kLanes; ++i) {
      const int row = i0 + (i < nl ? i : nl - 1);
      const int r = row / n_group, g = row % n_group;
      const float* qr = q + r * q_stride + g * head_dim;
      for (int d = 0; d < head_dim; ++d) qt[d * kLanes + i] = qr[d] * scale;
      last_l[i] = int32_t(n_past + r);  // last visible key position
    }
    for (int i = 0; i < nl; ++i) {
      const int row = i0 + i;
      float* o = out + (row / n_group) * out_stride + (row % n_group) * head_dim;
      for (int d = 0; d < head_dim; ++d) o[d] = 0.0f;
    }
    const __m512i last = _mm512_load_si512(last_l);
    __m512 m = _mm512_set1_ps(-INFINITY);  // running max per lane
    __m512 l = _mm512_setzero_ps();        // running normalizer per lane
    const int64_t n_keys = n_past + (i0 + nl - 1) / n_group + 1;
    const int64_t n_blocks = (n_keys + bs - 1) / bs;
    for (int64_t b = 0; b < n_blocks; ++b) {
      const int64_t phys = kv.block_table[b];
      const float* kb = kv.k + phys * kv.block_stride;  // [bs, head_dim]
      const float* vb = kv.v + phys * kv.block_stride;
      const int block_keys = int(n_keys - b * bs < bs ? n_keys - b * bs : bs);
      for (int j0 = 0; j0 < block_keys; j0 += kKeys) {
        const int nk = block_keys - j0 < kKeys ? block_keys - j0 : kKeys;
        // Scores, masked causally per lane.
        __m512 mx = _mm512_set1_ps(-INFINITY);
        for (int j = 0; j < nk; ++j) {
          const float* kj = kb + int64_t(j0 + j) * head_dim;
          __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
          int d = 0;
          for (; d + 2 <= head_dim; d += 2) {
            a0 = _mm512_fmadd_ps(_mm512_load_ps(qt + d * kLanes), _mm512_set1_ps(kj[d]), a0);
            a1 = _mm512_fmadd_ps(_mm512_load_ps(qt + (d + 1) * kLanes), _mm512_set1_ps(kj[d + 1]), a1);
          }
          if (d < head_dim) a0 = _mm512_fmadd_ps(_mm512_load_ps(qt + d * kLanes), _mm512_set1_ps(kj[d]), a0);
          const __mmask16 vis =
              _mm512_cmp_epi32_mask(_mm512_set1_epi32(int32_t(b * bs + j0 + j)), last, _MM_CMPINT_LE);
          const __m512 sj = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), vis, _mm512_add_ps(a0, a1));
          _mm512_store_ps(s + j * kLanes, sj);
          mx = _mm512_max_ps(mx, sj);
        }
        const __m512 m_new = _mm512_max_ps(m, mx);
        // exp(-inf - finite) = 0 on the first chunk; a lane with nothing visible yet keeps
        // m = -inf and gets corr = 0 (-inf - -inf is NaN, so guard it).
        const __mmask16 has = _mm512_cmp_ps_mask(m_new, _mm512_set1_ps(-INFINITY), _CMP_NEQ_OQ);
        const __m512 corr = _mm512_maskz_mov_ps(has, exp512(_mm512_sub_ps(m, m_new)));
        __m512 sum = _mm512_setzero_ps();
        for (int j = 0; j < nk; ++j) {
          const __m512 p =
              _mm512_maskz_mov_ps(has, exp512(_mm512_sub_ps(_mm512_load_ps(s + j * kLanes), m_new)));
          _mm512_store_ps(s + j * kLanes, p);
          sum = _mm512_add_ps(sum, p);
        }
        l = _mm512_fmadd_ps(l, corr, sum);
        m = m_new;
        _mm512_store_ps(corr_l, corr);
        for (int i = 0; i < nl; ++i) {
          const int row = i0 + i;
          accumulate(out + (row / n_group) * out_stride + (row % n_group) * head_dim, head_dim, corr_l[i],
                     s + i, kLanes, vb + int64_t(j0) * head_dim, nk);
        }
      }
    }
    alignas(64) float l_l[kLanes];
    _mm512_store_ps(l_l, l);
    for (int i = 0; i < nl; ++i) {
      const int row = i0 + i;
      float* o = out + (row / n_group) * out_stride + (row % n_group) * head_dim;
      const float inv = 1.0f / l_l[i];
      for (int d = 0; d < head_dim; ++d) o[d] *= inv;
    }
  }
}

// Decode (a few rows): one row at a time with up to 16 keys in the lanes. Each score,
// exp, sum and V update is the same float operation, in the same order, as the row's
// lane in attention_lanes_avx512 (scaled query; FMAs over even dims into one sum and odd
// dims into another, then their sum; probabilities summed key by key), so the output is
// bit-identical to that kernel's; keys are transposed 16 x 16 to sit in lanes.
void attention_rows_avx512(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                           const PagedKvHead& kv, int head_dim, float scale, float* out, int64_t out_stride) {
  const int bs = kv.block_size;
  const AccumulateFn accumulate = accumulate_for(head_dim);
  alignas(64) float qs[kMaxLaneHeadDim];  // the scaled query
  alignas(64) float s[kKeys];             // scores, then probabilities
  for (int row = 0; row < n_rows * n_group; ++row) {
    const int r = row / n_group, g = row % n_group;
    const float* qr = q + r * q_stride + g * head_dim;
    float* acc = out + r * out_stride + g * head_dim;
    for (int d = 0; d < head_dim; ++d) qs[d] = qr[d] * scale;
    for (int d = 0; d < head_dim; ++d) acc[d] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    const int64_t n_keys = n_past + r + 1;
    for (int64_t b = 0; b * bs < n_keys; ++b) {
      const int64_t phys = kv.block_table[b];
      const float* kb = kv.k + phys * kv.block_stride;  // [bs, head_dim]
      const float* vb = kv.v + phys * kv.block_stride;
      const int block_keys = int(n_keys - b * bs < bs ? n_keys - b * bs : bs);
      for (int j0 = 0; j0 < block_keys; j0 += kKeys) {
        const int nk = block_keys - j0 < kKeys ? block_keys - j0 : kKeys;
        __m512 mxv = _mm512_set1_ps(-INFINITY);
        for (int jt = 0; jt < nk; jt += kLanes) {
          const int nkt = nk - jt < kLanes ? nk - jt : kLanes;
          __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
          for (int d0 = 0; d0 < head_dim; d0 += 16) {
            const __mmask16 dm = tail(head_dim - d0);
            __m512 rows_in[16], cols[16];
            for (int j = 0; j < 16; ++j)
              rows_in[j] = j < nkt ? _mm512_maskz_loadu_ps(dm, kb + int64_t(j0 + jt + j) * head_dim + d0)
                                   : _mm512_setzero_ps();
            transpose16(rows_in, cols);
            const int nd = head_dim - d0 < 16 ? head_dim - d0 : 16;
            for (int i = 0; i < nd; ++i) {
              const __m512 qd = _mm512_set1_ps(qs[d0 + i]);
              if ((d0 + i) % 2 == 0)
                a0 = _mm512_fmadd_ps(qd, cols[i], a0);
              else
                a1 = _mm512_fmadd_ps(qd, cols[i], a1);
            }
          }
          const __mmask16 live = tail(nkt);
          const __m512 sj = _mm512_add_ps(a0, a1);
          _mm512_mask_storeu_ps(s + jt, live, sj);
          mxv = _mm512_mask_max_ps(mxv, live, mxv, sj);
        }
        const float mx = _mm512_reduce_max_ps(mxv);
        const float m_new = m > mx ? m : mx;
        // corr = exp(m - m_new): 0 on the first chunk (m = -inf).
        const float corr = _mm512_cvtss_f32(exp512(_mm512_set1_ps(m - m_new)));
        for (int j = 0; j < nk; j += kLanes) {
          const __mmask16 live = tail(nk - j);
          const __m512 p = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(live, s + j), _mm512_set1_ps(m_new)));
          _mm512_mask_storeu_ps(s + j, live, p);
        }
        float sum = 0.0f;
        for (int j = 0; j < nk; ++j) sum += s[j];  // key by key, as the lane kernel adds
        l = _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(l), _mm_set_ss(corr), _mm_set_ss(sum)));
        m = m_new;
        accumulate(acc, head_dim, corr, s, 1, vb + int64_t(j0) * head_dim, nk);
      }
    }
    const float inv = 1.0f / l;
    for (int d = 0; d < head_dim; ++d) acc[d] *= inv;
  }
}

}  // namespace kvserve

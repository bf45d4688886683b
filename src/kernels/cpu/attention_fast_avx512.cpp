// AVX-512 attention kernel for head_dim <= 256 (this file is compiled with -mavx512f ...),
// the paged online-softmax algorithm of attention_impl.h with the keys of a 16-key chunk
// in the lanes of one register. K is stored transposed ([head_dim][block_size], see
// src/cache/kv_cache.h), so a chunk's keys of one dim are one load: a row's scores are
// head_dim FMAs of a broadcast query element against those loads, with no transposes.
//
// The same code serves prefill chunks and decode: rows are taken up to four at a time
// (independent FMA chains; they share every K and V load, which is how the query heads
// of a GQA group share a block), and a row's float operations never depend on which rows
// it is grouped with, on the row tile or on the call's row count, so a token's output is
// bit-identical decoded alone, batched, or anywhere in a prefill chunk (batch
// invariance). f16 K/V are converted once per chunk into a small f32 tile shared by the
// row tile.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/exp_avx512.h"

namespace kvserve {

namespace {

constexpr int kKeys = 16;     // keys per chunk: one register of scores
constexpr int kRowTile = 32;  // rows sharing one converted chunk
constexpr int kGroup = 4;     // rows computed together
constexpr int kMaxHeadDim = 256;
constexpr int kColVecs = 4;  // output vectors per row kept in registers while accumulating V

inline __mmask16 tail(int n) {
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u);
}

// Sum of the 16 lanes as a fixed tree (lane i + lane i + 8, then + 4, + 2, + 1): the
// order every path uses for a chunk's probability sum.
inline float tree_sum(__m512 x) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(x), _mm512_extractf32x8_ps(x, 1));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float fma_ss(float a, float b, float c) {
  return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)));
}

// The state of the row tile: scaled queries, running max and normalizer, causal limit.
struct Tile {
  alignas(64) float qs[kRowTile][kMaxHeadDim];  // [row][head_dim] query * scale
  float m[kRowTile];                            // running max of scores
  float l[kRowTile];                            // running sum of exp(score - m)
  int64_t last[kRowTile];                       // last visible key position
  float* out[kRowTile];                         // the row's output (accumulator until the end)
};

// One chunk of nc <= 16 keys: kp + d * k_stride holds the keys' dim d (lanes 0..nc-1),
// vp + j * head_dim key j's value row; key j is at position pos0 + j.
struct Chunk {
  const float* kp;
  int64_t k_stride;
  const float* vp;
  int nc;
  int64_t pos0;
};

// Scores of G rows (tile rows r0..r0+G-1): for each row and key, FMAs over even dims into
// one sum and odd dims into another, then their sum.
template <int G>
void scores(const Tile& t, int r0, const Chunk& c, int head_dim, __m512* s) {
  const __mmask16 live = tail(c.nc);
  __m512 a0[G], a1[G];
  for (int g = 0; g < G; ++g) a0[g] = a1[g] = _mm512_setzero_ps();
  int d = 0;
  for (; d + 2 <= head_dim; d += 2) {
    const __m512 k0 = _mm512_maskz_loadu_ps(live, c.kp + d * c.k_stride);
    const __m512 k1 = _mm512_maskz_loadu_ps(live, c.kp + (d + 1) * c.k_stride);
    for (int g = 0; g < G; ++g) {
      a0[g] = _mm512_fmadd_ps(_mm512_set1_ps(t.qs[r0 + g][d]), k0, a0[g]);
      a1[g] = _mm512_fmadd_ps(_mm512_set1_ps(t.qs[r0 + g][d + 1]), k1, a1[g]);
    }
  }
  if (d < head_dim) {
    const __m512 k0 = _mm512_maskz_loadu_ps(live, c.kp + d * c.k_stride);
    for (int g = 0; g < G; ++g) a0[g] = _mm512_fmadd_ps(_mm512_set1_ps(t.qs[r0 + g][d]), k0, a0[g]);
  }
  for (int g = 0; g < G; ++g) s[g] = _mm512_add_ps(a0[g], a1[g]);
}

// out[row] = out[row] * corr[g] + sum_{j < nk[g]} p[g][j] * v_j over output vectors
// v0 .. v0 + NV - 1, V loads shared by the G rows; each element's sum runs over j in order.
template <int G, int NV>
void accumulate_cols(const Tile& t, int r0, const Chunk& c, int head_dim, const float (*p)[kKeys],
                     const float* corr, const int* nk, int v0) {
  __m512 a[G][NV];
  __mmask16 cm[NV];
  for (int v = 0; v < NV; ++v) cm[v] = tail(head_dim - 16 * (v0 + v));
  for (int g = 0; g < G; ++g)
    for (int v = 0; v < NV; ++v)
      a[g][v] =
          _mm512_mul_ps(_mm512_maskz_loadu_ps(cm[v], t.out[r0 + g] + 16 * (v0 + v)), _mm512_set1_ps(corr[g]));
  int nk_min = nk[0], nk_max = nk[0];
  for (int g = 1; g < G; ++g) {
    nk_min = nk[g] < nk_min ? nk[g] : nk_min;
    nk_max = nk[g] > nk_max ? nk[g] : nk_max;
  }
  for (int j = 0; j < nk_max; ++j) {
    const float* vj = c.vp + int64_t(j) * head_dim + 16 * v0;
    __m512 x[NV];
    for (int v = 0; v < NV; ++v) x[v] = _mm512_maskz_loadu_ps(cm[v], vj + 16 * v);
    for (int g = 0; g < G; ++g) {
      if (j >= nk_min && j >= nk[g]) continue;  // past this row's causal limit: no update at all
      const __m512 pj = _mm512_set1_ps(p[g][j]);
      for (int v = 0; v < NV; ++v) a[g][v] = _mm512_fmadd_ps(pj, x[v], a[g][v]);
    }
  }
  for (int g = 0; g < G; ++g)
    for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(t.out[r0 + g] + 16 * (v0 + v), cm[v], a[g][v]);
}

template <int G>
void accumulate(const Tile& t, int r0, const Chunk& c, int head_dim, const float (*p)[kKeys],
                const float* corr, const int* nk) {
  const int n_vec = (head_dim + 15) / 16;
  int v0 = 0;
  for (; v0 + kColVecs <= n_vec; v0 += kColVecs)
    accumulate_cols<G, kColVecs>(t, r0, c, head_dim, p, corr, nk, v0);
  switch (n_vec - v0) {
    case 1: accumulate_cols<G, 1>(t, r0, c, head_dim, p, corr, nk, v0); break;
    case 2: accumulate_cols<G, 2>(t, r0, c, head_dim, p, corr, nk, v0); break;
    case 3: accumulate_cols<G, 3>(t, r0, c, head_dim, p, corr, nk, v0); break;
    default: break;
  }
}

// One chunk for G rows, every one of which sees at least its first key.
template <int G>
void process_rows(Tile& t, int r0, const Chunk& c, int head_dim) {
  __m512 s[G];
  scores<G>(t, r0, c, head_dim, s);
  alignas(64) float p[G][kKeys];
  float corr[G];
  int nk[G];
  for (int g = 0; g < G; ++g) {
    const int64_t n = t.last[r0 + g] + 1 - c.pos0;
    nk[g] = n < c.nc ? int(n) : c.nc;
    const __m512 sg = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), tail(nk[g]), s[g]);
    const float mx = _mm512_reduce_max_ps(sg);
    const float m = t.m[r0 + g];
    const float m_new = m > mx ? m : mx;
    // exp(-inf) = 0 on the row's first chunk; masked keys (score -inf) get p = 0.
    corr[g] = _mm512_cvtss_f32(exp512(_mm512_set1_ps(m - m_new)));
    const __m512 pg = exp512(_mm512_sub_ps(sg, _mm512_set1_ps(m_new)));
    _mm512_store_ps(p[g], pg);
    t.l[r0 + g] = fma_ss(t.l[r0 + g], corr[g], tree_sum(pg));
    t.m[r0 + g] = m_new;
  }
  accumulate<G>(t, r0, c, head_dim, p, corr, nk);
}

}  // namespace

void attention_fast_avx512(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                           const PagedKvHead& kv, int head_dim, float scale, float* out, int64_t out_stride) {
  const int bs = kv.block_size;
  const int n_flat = n_rows * n_group;
  const bool f16 = kv.dtype == KvDtype::F16;
  Tile t;
  alignas(64) float kt[kMaxHeadDim * kKeys];  // [head_dim][16] converted keys of a chunk (f16)
  alignas(64) float vt[kKeys * kMaxHeadDim];  // [16][head_dim] converted values
  for (int i0 = 0; i0 < n_flat; i0 += kRowTile) {
    const int nt = n_flat - i0 < kRowTile ? n_flat - i0 : kRowTile;
    for (int i = 0; i < nt; ++i) {
      const int r = (i0 + i) / n_group, g = (i0 + i) % n_group;
      const float* qr = q + r * q_stride + g * head_dim;
      for (int d = 0; d < head_dim; ++d) t.qs[i][d] = qr[d] * scale;
      t.out[i] = out + r * out_stride + g * head_dim;
      for (int d = 0; d < head_dim; ++d) t.out[i][d] = 0.0f;
      t.m[i] = -INFINITY;
      t.l[i] = 0.0f;
      t.last[i] = n_past + r;
    }
    const int64_t n_keys = t.last[nt - 1] + 1;  // keys the tile's last row sees
    for (int64_t b = 0; b * bs < n_keys; ++b) {
      const int64_t phys = kv.block_table[b];
      const int block_keys = int(n_keys - b * bs < bs ? n_keys - b * bs : bs);
      for (int c0 = 0; c0 < block_keys; c0 += kKeys) {
        Chunk c;
        c.nc = block_keys - c0 < kKeys ? block_keys - c0 : kKeys;
        c.pos0 = b * bs + c0;
        if (f16) {
          const __mmask16 live = tail(c.nc);
          const auto* kb = static_cast<const uint16_t*>(kv.k) + phys * kv.block_stride + c0;
          for (int d = 0; d < head_dim; ++d)
            _mm512_store_ps(kt + d * kKeys,
                            _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(live, kb + int64_t(d) * bs)));
          const auto* vb =
              static_cast<const uint16_t*>(kv.v) + phys * kv.block_stride + int64_t(c0) * head_dim;
          const int nv = c.nc * head_dim;
          for (int e = 0; e < nv; e += 16)
            _mm512_storeu_ps(vt + e, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(tail(nv - e), vb + e)));
          c.kp = kt;
          c.k_stride = kKeys;
          c.vp = vt;
        } else {
          c.kp = static_cast<const float*>(kv.k) + phys * kv.block_stride + c0;
          c.k_stride = bs;
          c.vp = static_cast<const float*>(kv.v) + phys * kv.block_stride + int64_t(c0) * head_dim;
        }
        // Rows are in position order, so the ones that see this chunk are a prefix... of
        // the tile's suffix: skip the leading rows whose causal limit is before it.
        int r0 = 0;
        while (r0 < nt && t.last[r0] < c.pos0) ++r0;
        for (; r0 < nt; r0 += kGroup) {
          switch (nt - r0 < kGroup ? nt - r0 : kGroup) {
            case 1: process_rows<1>(t, r0, c, head_dim); break;
            case 2: process_rows<2>(t, r0, c, head_dim); break;
            case 3: process_rows<3>(t, r0, c, head_dim); break;
            default: process_rows<4>(t, r0, c, head_dim); break;
          }
        }
      }
    }
    for (int i = 0; i < nt; ++i) {
      const float inv = 1.0f / t.l[i];
      for (int d = 0; d < head_dim; ++d) t.out[i][d] *= inv;
    }
  }
}

}  // namespace kvserve

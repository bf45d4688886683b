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
// invariance). The online softmax advances in steps of two chunks (32 keys) fixed by
// position, and the scores of several chunks are computed together when few rows share
// them. f16 K/V are converted in the loads for a few rows (decode) and once per chunk
// into a small f32 tile for a larger row tile (prefill); the numbers are the same.
//
// bf16, int8 and fp8 are widened in the loads. int8 / fp8 keys and values carry a scale
// per slot: a row's scores come straight from the codes (sum_d q_d * code), times the
// key's scale once, and a value's scale is folded into its probability (p_j * scale_j
// times the codes), so no dequantized tile is ever written (fp8 codes widen through f16
// to value * 2^-8, and the scales are taken 256x, as the AVX2 kernel does).
//
// With a sliding window a row skips the steps wholly before its window start and masks
// the keys before it in the step that holds it (their scores -inf, their values never
// loaded), and the tile skips the steps before every row's window, keeping the pairing
// of chunks: a row's steps are still the same in any call.
// GCC 12 reports its own _mm512_undefined_* placeholders as uninitialized (GCC bug
// 105593, fixed in 13) wherever AVX-512 intrinsics inline.
#pragma GCC diagnostic ignored "-Wuninitialized"
#if defined(__GNUC__) && !defined(__clang__)  // clang has no such warning (and warns of the name)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/attention_prefetch.h"
#include "kernels/cpu/exp_avx512.h"
#include "kernels/cpu/isa_dispatch.h"

namespace kvserve {

namespace {
using attention_detail::Prefetcher;

constexpr int kKeys = 16;             // keys per chunk: one register of scores
constexpr int kRowTile = 32;          // rows sharing one converted chunk
constexpr int kGroup = 4;             // rows computed together
constexpr int kBatch = 4;             // chunks whose scores a lone row computes together (even)
constexpr int kStepKeys = 2 * kKeys;  // keys per online-softmax step: two chunks
constexpr int kMaxHeadDim = 256;

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

// The state of the row tile: scaled queries, running max and normalizer, visible keys.
struct Tile {
  alignas(64) float qs[kRowTile][kMaxHeadDim];  // [row][head_dim] query * scale
  float m[kRowTile];                            // running max of scores
  float l[kRowTile];                            // running sum of exp(score - m)
  int64_t first[kRowTile];                      // first visible key position (window start)
  int64_t last[kRowTile];                       // last visible key position
  float* out[kRowTile];                         // the row's output (accumulator until the end)
};

// One chunk of nc <= 16 keys: kp + d * k_stride holds the keys' dim d (lanes 0..nc-1),
// vp + j * head_dim key j's value row; key j is at position pos0 + j.
// Elements are f32 (the cache's or a converted tile's) or f16 read straight from the cache.
// Scaled types: ks / vs hold the chunk's nc key / value scales (slot order).
template <class E>
struct Chunk {
  const E* kp;
  int64_t k_stride;
  const E* vp;
  int nc;
  int64_t pos0;
  const float* ks = nullptr;
  const float* vs = nullptr;
};

// Stored element types besides float and f16 (uint16_t).
struct Bf16 {
  uint16_t bits;
};
struct Fp8 {  // E4M3
  uint8_t bits;
};
// A chunk of E widened once into an f32 tile for a large row tile: the same numbers the
// loads give (codes for the scaled types, whose scales still apply the same way).
template <class E>
struct Tiled {
  float v;
};
template <class E>
constexpr bool kScaled = std::is_same_v<E, int8_t> || std::is_same_v<E, Fp8>;
template <class E>
constexpr bool kScaled<Tiled<E>> = kScaled<E>;
template <class E>
constexpr float kScaleMul = std::is_same_v<E, Fp8> ? 256.0f : 1.0f;
template <class E>
constexpr float kScaleMul<Tiled<E>> = kScaleMul<E>;

inline __m512 load16(__mmask16 m, const float* p) {
  return _mm512_maskz_loadu_ps(m, p);
}
inline __m512 load16(__mmask16 m, const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
inline __m512 load16(__mmask16 m, const Bf16* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
inline __m512 load16(__mmask16 m, const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, p)));
}
template <class E>
inline __m512 load16(__mmask16 m, const Tiled<E>* p) {
  return _mm512_maskz_loadu_ps(m, &p->v);
}
inline __m512 load16(__mmask16 m, const Fp8* p) {  // sign to bit 15, the rest to bits 7..14 of a half
  const __m256i c = _mm256_cvtepu8_epi16(_mm_maskz_loadu_epi8(m, p));
  const __m256i h = _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(c, _mm256_set1_epi16(0x80)), 8),
                                    _mm256_slli_epi16(_mm256_and_si256(c, _mm256_set1_epi16(0x7f)), 7));
  return _mm512_cvtph_ps(h);
}
// A chunk's scales (lanes past nc: 0), times kScaleMul.
template <class E>
inline __m512 load_scales(__mmask16 m, const float* p) {
  return _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p), _mm512_set1_ps(kScaleMul<E>));
}

// Scores of G rows (tile rows r0..r0+G-1) for C chunks: for each row and key, FMAs over
// even dims into one sum and odd dims into another, then their sum. Several chunks at
// once give a single row (decode without GQA grouping) independent FMA chains.
template <class E, int G, int C>
void scores(const Tile& t, int r0, const Chunk<E>* c, int head_dim, __m512 (*s)[C]) {
  __mmask16 live[C];
#pragma GCC unroll 16
  for (int k = 0; k < C; ++k) live[k] = tail(c[k].nc);
  __m512 a0[G][C], a1[G][C];
#pragma GCC unroll 16
  for (int g = 0; g < G; ++g)
#pragma GCC unroll 16
    for (int k = 0; k < C; ++k) a0[g][k] = a1[g][k] = _mm512_setzero_ps();
  const E* kp[C];  // dim d of each chunk, stepped rather than multiplied out
  int64_t ks[C];
#pragma GCC unroll 16
  for (int k = 0; k < C; ++k) {
    kp[k] = c[k].kp;
    ks[k] = c[k].k_stride;
  }
  const float* qd = &t.qs[r0][0];
  int d = 0;
  for (; d + 2 <= head_dim; d += 2, qd += 2) {
    __m512 k0[C], k1[C];
#pragma GCC unroll 16
    for (int k = 0; k < C; ++k) {
      k0[k] = load16(live[k], kp[k]);
      k1[k] = load16(live[k], kp[k] + ks[k]);
      kp[k] += 2 * ks[k];
    }
#pragma GCC unroll 16
    for (int g = 0; g < G; ++g) {
      const __m512 q0 = _mm512_set1_ps(qd[g * kMaxHeadDim]), q1 = _mm512_set1_ps(qd[g * kMaxHeadDim + 1]);
#pragma GCC unroll 16
      for (int k = 0; k < C; ++k) {
        a0[g][k] = _mm512_fmadd_ps(q0, k0[k], a0[g][k]);
        a1[g][k] = _mm512_fmadd_ps(q1, k1[k], a1[g][k]);
      }
    }
  }
  if (d < head_dim) {
#pragma GCC unroll 16
    for (int k = 0; k < C; ++k) {
      const __m512 k0 = load16(live[k], kp[k]);
#pragma GCC unroll 16
      for (int g = 0; g < G; ++g)
        a0[g][k] = _mm512_fmadd_ps(_mm512_set1_ps(qd[g * kMaxHeadDim]), k0, a0[g][k]);
    }
  }
#pragma GCC unroll 16
  for (int g = 0; g < G; ++g)
#pragma GCC unroll 16
    for (int k = 0; k < C; ++k) s[g][k] = _mm512_add_ps(a0[g][k], a1[g][k]);
  if constexpr (kScaled<E>) {  // scores from codes: times each key's scale, once
#pragma GCC unroll 16
    for (int k = 0; k < C; ++k) {
      const __m512 ks = load_scales<E>(live[k], c[k].ks);
#pragma GCC unroll 16
      for (int g = 0; g < G; ++g) s[g][k] = _mm512_mul_ps(s[g][k], ks);
    }
  }
}

// The keys of one or two chunks that each of G rows sees: [lo, hi) of chunk part (lo =
// hi: none), and whether it sees any of them.
template <int G>
struct Visible {
  int lo[G][2], hi[G][2];
  bool any[G];
};

// u[g] += p[g][j] * v_j for one key j of a chunk, for every row or (Masked) for the rows
// of `rows` (all lanes or none per row). A row that does not see the key is left
// untouched (masked, not p = 0: before the window its value may be NaN).
template <class E, int G, int NV, bool Masked>
inline void add_key(__m512 (*u)[NV], const E* vj, const __mmask16* cm, const float (*p)[kStepKeys], int pj_at,
                    const __mmask16* rows) {
  __m512 x[NV];
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) x[v] = load16(cm[v], vj + 16 * v);
#pragma GCC unroll 16
  for (int g = 0; g < G; ++g) {
    const __m512 pj = _mm512_set1_ps(p[g][pj_at]);
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v)
      u[g][v] =
          Masked ? _mm512_mask3_fmadd_ps(pj, x[v], u[g][v], rows[g]) : _mm512_fmadd_ps(pj, x[v], u[g][v]);
  }
}

// out[row] = out[row] * corr[g] + sum_k p[g][k] * v_k over the keys the row sees in the
// (one or two) chunks of a softmax step, in key order (one FMA; the sum runs from zero),
// over output vectors v0 .. v0 + NV - 1; the G rows share the V loads. Summing apart from
// the running output keeps that output off the critical path: only the final FMA waits
// for corr, so steps overlap.
template <class E, int G, int NV>
void accumulate_cols(const Tile& t, int r0, const Chunk<E>* c, int n_parts, int head_dim,
                     const float (*p)[kStepKeys], const float* corr, const Visible<G>& vis, int v0) {
  __m512 u[G][NV];
  __mmask16 cm[NV];
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) cm[v] = tail(head_dim - 16 * (v0 + v));
#pragma GCC unroll 16
  for (int g = 0; g < G; ++g)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) u[g][v] = _mm512_setzero_ps();
  for (int part = 0; part < n_parts; ++part) {
    const E* vp = c[part].vp + 16 * v0;
    const int pk = part * kKeys;  // this chunk's probabilities in p[g]
    // Keys [lo_min, hi_max) are seen by some row, [lo_max, hi_min) by every row.
    int lo_min = kKeys, lo_max = 0, hi_min = kKeys, hi_max = 0;
    for (int g = 0; g < G; ++g) {
      const int lo = vis.lo[g][part], hi = vis.hi[g][part];
      if (lo >= hi) {
        hi_min = 0;  // this row sees none: no key is every row's
        continue;
      }
      lo_min = lo < lo_min ? lo : lo_min;
      lo_max = lo > lo_max ? lo : lo_max;
      hi_min = hi < hi_min ? hi : hi_min;
      hi_max = hi > hi_max ? hi : hi_max;
    }
    auto edge = [&](int j) {  // the window's start or the causal edge: rows masked
      __mmask16 rows[G];
      for (int g = 0; g < G; ++g)
        rows[g] = j >= vis.lo[g][part] && j < vis.hi[g][part] ? __mmask16(0xffff) : __mmask16(0);
      add_key<E, G, NV, true>(u, vp + int64_t(j) * head_dim, cm, p, pk + j, rows);
    };
    int j = lo_min;
    for (const int e = lo_max < hi_max ? lo_max : hi_max; j < e; ++j) edge(j);
    for (; j < hi_min; ++j) add_key<E, G, NV, false>(u, vp + int64_t(j) * head_dim, cm, p, pk + j, nullptr);
    for (; j < hi_max; ++j) edge(j);
  }
#pragma GCC unroll 16
  for (int g = 0; g < G; ++g) {
    if (!vis.any[g]) continue;
    float* o = t.out[r0 + g] + 16 * v0;
    const __m512 cg = _mm512_set1_ps(corr[g]);
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v)
      _mm512_mask_storeu_ps(o + 16 * v, cm[v],
                            _mm512_fmadd_ps(_mm512_maskz_loadu_ps(cm[v], o + 16 * v), cg, u[g][v]));
  }
}

template <class E, int G>
void accumulate(const Tile& t, int r0, const Chunk<E>* c, int n_parts, int head_dim,
                const float (*p)[kStepKeys], const float* corr, const Visible<G>& vis) {
  constexpr int kCols = 4;  // output vectors at a time: G * kCols sums in registers
  const int n_vec = (head_dim + 15) / 16;
  int v0 = 0;
  for (; v0 + kCols <= n_vec; v0 += kCols)
    accumulate_cols<E, G, kCols>(t, r0, c, n_parts, head_dim, p, corr, vis, v0);
  switch (n_vec - v0) {
    case 1: accumulate_cols<E, G, 1>(t, r0, c, n_parts, head_dim, p, corr, vis, v0); break;
    case 2: accumulate_cols<E, G, 2>(t, r0, c, n_parts, head_dim, p, corr, vis, v0); break;
    case 3: accumulate_cols<E, G, 3>(t, r0, c, n_parts, head_dim, p, corr, vis, v0); break;
    default: break;
  }
}

// One online-softmax step of G rows over a pair of consecutive chunks (chunk indices
// 2i, 2i + 1 of the sequence; n_parts = 1 when the second is not in this tile), given
// their scores s0[g], s1[g]. A row that sees none of the second chunk gets exactly what
// a step over the first alone gives (its probabilities there are 0 and add nothing to
// the sum), so a row's steps are the same whichever tile it is in. Rows that see none
// of the pair (past their causal limit, or before their window) are left exactly as
// they are: a row's first step is the one holding its first key, in any call.
template <class E, int G>
void update_rows(Tile& t, int r0, const Chunk<E>* c, int n_parts, int head_dim, const __m512* s0,
                 const __m512* s1) {
  alignas(64) float p[G][kStepKeys];
  float corr[G];
  Visible<G> vis;
  bool any = false;
  for (int g = 0; g < G; ++g) {
    vis.any[g] = false;
    for (int part = 0; part < 2; ++part) {
      int lo = 0, hi = 0;
      if (part < n_parts) {
        hi = int(std::clamp<int64_t>(t.last[r0 + g] + 1 - c[part].pos0, 0, c[part].nc));
        lo = int(std::clamp<int64_t>(t.first[r0 + g] - c[part].pos0, 0, hi));
      }
      vis.lo[g][part] = lo;
      vis.hi[g][part] = hi;
      vis.any[g] |= lo < hi;
    }
    corr[g] = 1.0f;
    if (!vis.any[g]) continue;
    any = true;
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    const auto live = [&](int part) { return __mmask16(tail(vis.hi[g][part]) & ~tail(vis.lo[g][part])); };
    const __m512 sg0 = _mm512_mask_mov_ps(ninf, live(0), s0[g]);
    const __m512 sg1 = _mm512_mask_mov_ps(ninf, live(1), s1[g]);
    const float mx = _mm512_reduce_max_ps(_mm512_max_ps(sg0, sg1));
    const float m = t.m[r0 + g];
    const float m_new = m > mx ? m : mx;
    // exp(-inf) = 0 on the row's first step; masked keys (score -inf) get p = 0.
    corr[g] = _mm512_cvtss_f32(exp512(_mm512_set1_ps(m - m_new)));
    const __m512 mv = _mm512_set1_ps(m_new);
    const __m512 p0 = exp512(_mm512_sub_ps(sg0, mv));
    const __m512 p1 = exp512(_mm512_sub_ps(sg1, mv));
    if constexpr (kScaled<E>) {  // the values' scales go with their probabilities
      _mm512_store_ps(p[g], _mm512_mul_ps(p0, load_scales<E>(tail(c[0].nc), c[0].vs)));
      _mm512_store_ps(p[g] + kKeys, n_parts > 1 ? _mm512_mul_ps(p1, load_scales<E>(tail(c[1].nc), c[1].vs))
                                                : _mm512_setzero_ps());
    } else {
      _mm512_store_ps(p[g], p0);
      _mm512_store_ps(p[g] + kKeys, p1);
    }
    t.l[r0 + g] = fma_ss(t.l[r0 + g], corr[g], tree_sum(_mm512_add_ps(p0, p1)));
    t.m[r0 + g] = m_new;
  }
  if (any) accumulate<E, G>(t, r0, c, n_parts, head_dim, p, corr, vis);
}

// G rows over the chunks c[0..n_chunks) (c[0] has an even chunk index), C at a time for
// the scores, in softmax steps of two chunks. With pf, the lines of the blocks ahead are
// prefetched as the chunks are done.
template <class E, int G, int C>
void process_rows(Tile& t, int r0, const Chunk<E>* c, int n_chunks, int head_dim, Prefetcher* pf) {
  static_assert(C % 2 == 0, "steps are pairs of chunks");
  int k0 = 0;
  for (; k0 + C <= n_chunks; k0 += C) {
    __m512 s[G][C];
    scores<E, G, C>(t, r0, c + k0, head_dim, s);
    if (pf) pf->issue(C * pf->lines_per_chunk / 2);
    for (int k = 0; k < C; k += 2) {
      __m512 s0[G], s1[G];
      for (int g = 0; g < G; ++g) {
        s0[g] = s[g][k];
        s1[g] = s[g][k + 1];
      }
      update_rows<E, G>(t, r0, c + k0 + k, 2, head_dim, s0, s1);
      if (pf) pf->issue(pf->lines_per_chunk);
    }
  }
  for (; k0 < n_chunks; k0 += 2) {
    const int n_parts = n_chunks - k0 >= 2 ? 2 : 1;
    __m512 s0[G], s1[G];
    if (n_parts == 2) {
      __m512 s[G][2];
      scores<E, G, 2>(t, r0, c + k0, head_dim, s);
      for (int g = 0; g < G; ++g) {
        s0[g] = s[g][0];
        s1[g] = s[g][1];
      }
    } else {
      __m512 s[G][1];
      scores<E, G, 1>(t, r0, c + k0, head_dim, s);
      for (int g = 0; g < G; ++g) s0[g] = s[g][0], s1[g] = _mm512_set1_ps(-INFINITY);
    }
    update_rows<E, G>(t, r0, c + k0, n_parts, head_dim, s0, s1);
    if (pf) pf->issue(n_parts * pf->lines_per_chunk);
  }
}

// Up to kBatch chunks, in key order, for every tile row that sees some of them.
template <class E>
void process_batch(Tile& t, int nt, const Chunk<E>* c, int n_chunks, int head_dim, Prefetcher& pf) {
  // Rows are in position order: skip the leading ones whose causal limit is before the
  // batch and the trailing ones whose window starts after it.
  int r0 = 0, r1 = nt;
  while (r0 < nt && t.last[r0] < c[0].pos0) ++r0;
  while (r1 > r0 && t.first[r1 - 1] >= c[n_chunks - 1].pos0 + c[n_chunks - 1].nc) --r1;
  // The first row group paces the prefetch (once per chunk, whatever the row count).
  for (Prefetcher* p = &pf; r0 < r1; r0 += kGroup, p = nullptr) {
    switch (r1 - r0 < kGroup ? r1 - r0 : kGroup) {
      case 1: process_rows<E, 1, 4>(t, r0, c, n_chunks, head_dim, p); break;
      case 2: process_rows<E, 2, 2>(t, r0, c, n_chunks, head_dim, p); break;
      case 3: process_rows<E, 3, 2>(t, r0, c, n_chunks, head_dim, p); break;
      default: process_rows<E, 4, 2>(t, r0, c, n_chunks, head_dim, p); break;
    }
  }
}

}  // namespace

namespace {

// The kernel for one stored element type E (float, f16 as uint16_t, Bf16, int8_t, Fp8).
template <class E>
void attention_run(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                   const PagedKvHead& kv, int head_dim, float scale, int64_t key_begin, int64_t key_end,
                   float* out, int64_t out_stride, float* m_out, float* l_out) {
  const int bs = kv.block_size;
  const int n_flat = n_rows * n_group;
  constexpr bool widened = !std::is_same_v<E, float>;  // a large row tile widens each chunk once
  const int64_t scale_off = int64_t(bs) * head_dim;    // elements (bytes) from a head's codes to its scales
  Tile t;
  // Widened chunks of one batch: keys [head_dim][16], values [16][head_dim].
  alignas(64) float kt[widened ? kBatch : 1][widened ? kMaxHeadDim * kKeys : 1];
  alignas(64) float vt[widened ? kBatch : 1][widened ? kKeys * kMaxHeadDim : 1];
  Chunk<Tiled<E>> tbatch[kBatch];
  Chunk<E> ebatch[kBatch];
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
      t.first[i] = attention_first_key(n_past + r, kv.window);
    }
    // Keys the tile's last row sees, within the range.
    const int64_t n_keys = t.last[nt - 1] + 1 < key_end ? t.last[nt - 1] + 1 : key_end;
    // Chunks: 16 keys, or to the end of the block or of the keys.
    auto chunk_end = [&](int64_t pos) { return std::min({pos + kKeys, (pos / bs + 1) * bs, n_keys}); };
    // Steps (pairs of chunks, by position from key_begin) before every row's window: skipped.
    int64_t pos = key_begin;
    for (int64_t next; pos < n_keys && (next = chunk_end(chunk_end(pos))) <= t.first[0];) pos = next;
    // A few rows (decode) read the cache straight, widening in the loads; a larger tile
    // widens each chunk once into an f32 tile that all its rows reuse. The widened
    // numbers are the same either way.
    const bool direct = !widened || nt <= kGroup;
    // Four chunks' lines ahead to start with (more, at once, get dropped); the
    // computation then keeps the pace.
    Prefetcher pf(kv, std::max(pos, t.first[0]), n_keys, head_dim, kKeys);
    if (i0 + kRowTile < n_flat) pf.then = nullptr;  // the next row tile reads these blocks again
    pf.issue(4 * pf.lines_per_chunk);
    int n_batch = 0;
    while (pos < n_keys) {
      const int64_t b = pos / bs;
      const int c0 = int(pos - b * bs);
      const int64_t left = (b + 1) * bs < n_keys ? (b + 1) * bs - pos : n_keys - pos;  // in this block
      const int n_pos = left < kKeys ? int(left) : kKeys;
      // The first chunk of a step can be wholly before every row's window: it is then
      // given as no keys (masked loads of nothing), which changes no row's numbers.
      const bool dead = pos + n_pos <= t.first[0];
      const int nc = dead ? 0 : n_pos;
      const int64_t phys = dead ? 0 : kv.block_table[b];
      const int64_t k_off = phys * kv.block_stride + c0,
                    v_off = phys * kv.block_stride + int64_t(c0) * head_dim;
      const float *ks = nullptr, *vs = nullptr;
      if constexpr (kScaled<E>) {
        const int64_t s_off = phys * kv.block_stride + scale_off;  // bytes: the codes are bytes
        ks = reinterpret_cast<const float*>(static_cast<const char*>(kv.k) + s_off) + c0;
        vs = reinterpret_cast<const float*>(static_cast<const char*>(kv.v) + s_off) + c0;
      }
      const E* kb = static_cast<const E*>(kv.k) + k_off;
      const E* vb = static_cast<const E*>(kv.v) + v_off;
      if (direct) {
        ebatch[n_batch] = {kb, bs, vb, nc, pos, ks, vs};
      } else if constexpr (widened) {
        const __mmask16 live = tail(nc);
        float* kd = kt[n_batch];
        for (int d = 0; d < head_dim; ++d)
          _mm512_store_ps(kd + d * kKeys, load16(live, kb + int64_t(d) * bs));
        float* vd = vt[n_batch];
        const int nv = nc * head_dim;
        for (int e = 0; e < nv; e += 16) _mm512_storeu_ps(vd + e, load16(tail(nv - e), vb + e));
        tbatch[n_batch] = {reinterpret_cast<const Tiled<E>*>(kd),
                           kKeys,
                           reinterpret_cast<const Tiled<E>*>(vd),
                           nc,
                           pos,
                           ks,
                           vs};
      }
      pos += n_pos;
      if (++n_batch == kBatch || pos >= n_keys) {
        if (direct)
          process_batch(t, nt, ebatch, n_batch, head_dim, pf);
        else if constexpr (widened)
          process_batch(t, nt, tbatch, n_batch, head_dim, pf);
        n_batch = 0;
      }
    }
    for (int i = 0; i < nt; ++i) {
      m_out[i0 + i] = t.m[i];
      l_out[i0 + i] = t.l[i];
    }
  }
}

}  // namespace

void detail::attention_fast_avx512(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                                   const PagedKvHead& kv, int head_dim, float scale, int64_t key_begin,
                                   int64_t key_end, float* out, int64_t out_stride, float* m_out,
                                   float* l_out) {
  decltype(&attention_run<float>) fn = nullptr;
  switch (kv.dtype) {
    case KvDtype::F32: fn = attention_run<float>; break;
    case KvDtype::F16: fn = attention_run<uint16_t>; break;
    case KvDtype::BF16: fn = attention_run<Bf16>; break;
    case KvDtype::Int8: fn = attention_run<int8_t>; break;
    case KvDtype::Fp8: fn = attention_run<Fp8>; break;
  }
  fn(q, q_stride, n_rows, n_group, n_past, kv, head_dim, scale, key_begin, key_end, out, out_stride, m_out,
     l_out);
}

}  // namespace kvserve

// AVX-512 VNNI kernels on weights packed at load (matmul_pack.h), for every token count
// (decode GEMV and prefill / batched GEMM alike): per 16-row tile and token tile, each
// quant vector is loaded once (dword r = 4 bytes of row r) and fed to one vpdpbusd per
// token against a broadcast of 4 activation bytes; the 16 rows' scales are contiguous
// loads. No gathers, transposes or per-call repacking, and a tile streams sequentially.
//
// Batch invariance: per (row, token) the float operations are those of the panel and
// direct kernels: for each unit b in order, the exact int32 dot s_b (zero point
// correction included), acc = fma(float(s_b), d_w * d_x, acc), then for types with
// mins acc = fma(m_w, s_x, acc). Integer sums are exact in any order.
// GCC 12 reports its own _mm512_undefined_* placeholders as uninitialized (GCC bug
// 105593, fixed in 13) wherever AVX-512 intrinsics inline.
#pragma GCC diagnostic ignored "-Wuninitialized"
#if defined(__GNUC__) && !defined(__clang__)  // clang has no such warning (and warns of the name)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "gguf/quant_blocks.h"
#include "kernels/cpu/isa_dispatch.h"
#include "kernels/cpu/matmul_pack.h"

namespace kvserve::detail {
namespace {

// Software prefetch distance along a tile's stream (into L2: the lines are consumed
// several microseconds later, and L1 holds the activations): the tiles are contiguous,
// so this runs ahead into the next tile too. Measured at 2 threads, decode tok/s over
// 2048 B: +9 % (q4_0), +6 % (Q4_1), +4 % (q8_0); 4-8 KiB are alike, 12 KiB is slower.
constexpr int64_t kPrefetchAhead = 6144;

// The stream's prefetch runs kPrefetchAhead bytes ahead of the tile being read, so the
// first kPrefetchAhead bytes of a thread's range (a decode matmul's range is a few
// tens of KB) would be demand misses one after another: they are prefetched at once.
// Rows [o0, o1) are tiles of 16 rows, tile_bytes each, one after another.
inline void prefetch_head(const MatmulArgs& a, int64_t o0, int64_t o1, int64_t tile_bytes) {
  const uint8_t* p = a.wp + size_t(o0 / 16 * tile_bytes);
  const int64_t bytes = std::min((o1 - o0 + 15) / 16 * tile_bytes, kPrefetchAhead);
  for (int64_t i = 0; i < bytes; i += 64) _mm_prefetch(reinterpret_cast<const char*>(p + i), _MM_HINT_T1);
}

inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// y[t0 + t, o..o+16R) for NT tokens: R consecutive 16-row groups at once, so each
// activation broadcast feeds R vpdpbusd. With `prefetch` (the first token tile of a
// row tile) the stream ahead is prefetched.
template <GgmlType T, int NT, int R>
void packed_tile(const MatmulArgs& a, int64_t o, int64_t t0, bool prefetch) {
  constexpr bool kMin = packed_has_min(T), kQh = packed_has_qh(T);
  constexpr bool kNib = T != GgmlType::Q8_0;
  constexpr int64_t kCell = packed_cell_bytes(T);
  constexpr int64_t kQs = packed_qs_offset(T);
  // Each dot's vpdpbusd are a dependent chain (8 per block); with too few chains in flight
  // their latency, not the issue rate, bounds the tile. So split each dot into two
  // chains (low / high nibbles) wherever the registers allow: with few tokens, and for
  // the nibble types' 32-row x 4-token tiles (prefill +7 % on q4_0; Q8_0's tile has no
  // room for the second set of sums and spills).
  constexpr bool kSplit = NT * R <= 2 || (kNib && NT * R <= 8);
  const int64_t nb = a.n_in / 32;
  const uint8_t* tile[R];
  for (int r = 0; r < R; ++r) tile[r] = a.wp + size_t(o / 16 + r) * size_t(nb * kCell);
  const int8_t* xq[NT];
  for (int t = 0; t < NT; ++t) xq[t] = a.xq + (t0 + t) * a.n_in;
  const float* xd = a.xd + t0 * nb;
  const float* xs = kMin ? a.xs + t0 * nb : nullptr;
  const int32_t* xc = a.xcorr + t0 * nb;
  const __m512i lo4 = _mm512_set1_epi8(0x0f), bit4 = _mm512_set1_epi8(0x10);
  __m512 acc[R][NT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* c[R];
    for (int r = 0; r < R; ++r) c[r] = tile[r] + b * kCell;
    if (prefetch)
      for (int r = 0; r < R; ++r)
        for (int64_t i = 0; i < kCell; i += 64)
          _mm_prefetch(reinterpret_cast<const char*>(c[r] + kPrefetchAhead + i), _MM_HINT_T1);
    __m512i s[R][NT], s2[R][NT];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < NT; ++t) {
        s[r][t] = kMin ? _mm512_setzero_si512() : _mm512_set1_epi32(xc[t * nb + b]);
        if constexpr (kSplit) s2[r][t] = _mm512_setzero_si512();
      }
    const int8_t* xb[NT];
    for (int t = 0; t < NT; ++t) xb[t] = xq[t] + 32 * b;
    if constexpr (kNib) {
      // Vector k holds bytes 4k..4k+3 of each row: low nibbles = elements 4k..4k+3,
      // high nibbles = elements 16 + 4k..16 + 4k + 3.
      uint64_t qh[R][8];
      if constexpr (kQh)
        for (int r = 0; r < R; ++r) std::memcpy(qh[r], c[r] + packed_qh_offset(T), sizeof(qh[r]));
      for (int k = 0; k < 4; ++k) {
        __m512i lo[R], hi[R];
        for (int r = 0; r < R; ++r) {
          const __m512i q = _mm512_loadu_si512(c[r] + kQs + 64 * k);
          lo[r] = _mm512_and_si512(q, lo4);
          hi[r] = _mm512_and_si512(_mm512_srli_epi16(q, 4), lo4);
          if constexpr (kQh) {
            // The 5th bit: + 16 on the nibble's byte where the mask bit is set.
            lo[r] = _mm512_mask_add_epi8(lo[r], qh[r][k], lo[r], bit4);
            hi[r] = _mm512_mask_add_epi8(hi[r], qh[r][4 + k], hi[r], bit4);
          }
        }
        for (int t = 0; t < NT; ++t) {
          const __m512i xl = bcast4(xb[t] + 4 * k), xh = bcast4(xb[t] + 16 + 4 * k);
          for (int r = 0; r < R; ++r) {
            s[r][t] = _mm512_dpbusd_epi32(s[r][t], lo[r], xl);
            __m512i& sh = kSplit ? s2[r][t] : s[r][t];
            sh = _mm512_dpbusd_epi32(sh, hi[r], xh);
          }
        }
      }
    } else {
      for (int k = 0; k < 8; ++k) {
        __m512i q[R];
        for (int r = 0; r < R; ++r) q[r] = _mm512_loadu_si512(c[r] + kQs + 64 * k);
        for (int t = 0; t < NT; ++t) {
          const __m512i x = bcast4(xb[t] + 4 * k);
          for (int r = 0; r < R; ++r) {
            __m512i& sk = kSplit && (k & 1) ? s2[r][t] : s[r][t];
            sk = _mm512_dpbusd_epi32(sk, q[r], x);
          }
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c[r])));
      for (int t = 0; t < NT; ++t) {
        const __m512i st = kSplit ? _mm512_add_epi32(s[r][t], s2[r][t]) : s[r][t];
        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(st), _mm512_mul_ps(d, _mm512_set1_ps(xd[t * nb + b])),
                                    acc[r][t]);
        if constexpr (kMin) {
          const __m512 m = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c[r] + 32)));
          acc[r][t] = _mm512_fmadd_ps(m, _mm512_set1_ps(xs[t * nb + b]), acc[r][t]);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) _mm512_storeu_ps(a.y + (t0 + t) * a.ldy + o + 16 * r, acc[r][t]);
}

// Calls tile.template operator()<N>(t0, prefetch) over all n_tokens: tiles of NT tokens,
// then one tile of the rest (fewer than NT). Prefetch only on a row panel's first tile.
template <int NT, class Tile>
void for_token_tiles(int64_t n_tokens, Tile&& tile) {
  int64_t t = 0;
  for (; t + NT <= n_tokens; t += NT) tile.template operator()<NT>(t, t == 0);
  const int64_t rest = n_tokens - t;
  const bool pf = t == 0;
  [&]<int... N>(std::integer_sequence<int, N...>) {
    ((rest == N + 1 ? tile.template operator()<N + 1>(t, pf) : void()), ...);
  }
  (std::make_integer_sequence<int, NT - 1>{});
}

// All tokens for rows [o, o + 16R).
template <GgmlType T, int NT, int R>
void packed_rows(const MatmulArgs& a, int64_t o) {
  for_token_tiles<NT>(a.n_tokens, [&]<int N>(int64_t t, bool pf) { packed_tile<T, N, R>(a, o, t, pf); });
}

template <GgmlType T>
void matmul_packed(const MatmulArgs& a, int64_t o0, int64_t o1) {
  // Tiles of 32 rows x 4 tokens (each broadcast feeds 2 vpdpbusd; 8 accumulators + 8
  // sums in registers) where there are enough tokens; 16 rows x up to 8 tokens else.
  prefetch_head(a, o0, o1, a.n_in / 32 * packed_cell_bytes(T));
  int64_t o = o0;
  if (a.n_tokens >= 4)
    for (; o + 32 <= o1; o += 32) packed_rows<T, 4, 2>(a, o);
  for (; o < o1; o += 16) packed_rows<T, 8, 1>(a, o);
}

// Q4_K: y[t0 + t, o..o+16) for NT tokens. Per 32-element sub-block (unit) in order the
// same float operations as the panel / direct kernels: acc = fma(float(s), d * sc * d_x,
// acc) with the scale d * sc, then acc = fma(-(dmin * m), s_x, acc).
template <int NT>
void packed_tile_q4k(const MatmulArgs& a, int64_t o, int64_t t0, bool prefetch) {
  constexpr int64_t kCell = packed_cell_bytes(GgmlType::Q4_K);
  const int64_t nsb = a.n_in / QK_K, nb = a.n_in / 32;  // super-blocks, units
  const uint8_t* tile = a.wp + size_t(o / 16) * size_t(nsb * kCell);
  const int8_t* xq[NT];
  for (int t = 0; t < NT; ++t) xq[t] = a.xq + (t0 + t) * a.n_in;
  const float* xd = a.xd + t0 * nb;
  const float* xs = a.xs + t0 * nb;
  const __m512i lo4 = _mm512_set1_epi8(0x0f);
  const __m512i m6 = _mm512_set1_epi32(63), m4 = _mm512_set1_epi32(15), m2 = _mm512_set1_epi32(3);
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t k = 0; k < nsb; ++k) {
    const uint8_t* c = tile + k * kCell;
    if (prefetch)
      for (int64_t i = 0; i < kCell; i += 64)
        _mm_prefetch(reinterpret_cast<const char*>(c + kPrefetchAhead + i), _MM_HINT_T1);
    const __m512 dd = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c)));
    const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 32)));
    const __m512i qa = _mm512_loadu_si512(c + 64), qb = _mm512_loadu_si512(c + 128);
    const __m512i qc = _mm512_loadu_si512(c + 192);
    for (int cc = 0; cc < 4; ++cc) {
      // Scales and mins of sub-blocks 2cc, 2cc + 1 (the 6-bit unpacking of load_scales).
      __m512i sc[2], mn[2];
      for (int h = 0; h < 2; ++h) {
        const int sb = 2 * cc + h, j = sb % 4;
        const __m512i av = _mm512_srli_epi32(qa, 8 * j), bv = _mm512_srli_epi32(qb, 8 * j);
        if (sb < 4) {
          sc[h] = _mm512_and_si512(av, m6);
          mn[h] = _mm512_and_si512(bv, m6);
        } else {
          const __m512i cv = _mm512_srli_epi32(qc, 8 * j);
          sc[h] = _mm512_or_si512(_mm512_and_si512(cv, m4),
                                  _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(av, 6), m2), 4));
          mn[h] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(cv, 4), m4),
                                  _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(bv, 6), m2), 4));
        }
      }
      __m512i s0[NT], s1[NT];
      for (int t = 0; t < NT; ++t) s0[t] = s1[t] = _mm512_setzero_si512();
      for (int j = 0; j < 8; ++j) {
        const __m512i q = _mm512_loadu_si512(c + 256 + 64 * (8 * cc + j));
        const __m512i lo = _mm512_and_si512(q, lo4);
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), lo4);
        for (int t = 0; t < NT; ++t) {
          const int8_t* x = xq[t] + k * QK_K + 64 * cc + 4 * j;
          s0[t] = _mm512_dpbusd_epi32(s0[t], lo, bcast4(x));
          s1[t] = _mm512_dpbusd_epi32(s1[t], hi, bcast4(x + 32));
        }
      }
      for (int h = 0; h < 2; ++h) {
        const __m512 d = _mm512_mul_ps(dd, _mm512_cvtepi32_ps(sc[h]));
        const __m512 m = _mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(mn[h])));
        const int64_t u = k * 8 + 2 * cc + h;
        for (int t = 0; t < NT; ++t) {
          acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(h ? s1[t] : s0[t]),
                                   _mm512_mul_ps(d, _mm512_set1_ps(xd[t * nb + u])), acc[t]);
          acc[t] = _mm512_fmadd_ps(m, _mm512_set1_ps(xs[t * nb + u]), acc[t]);
        }
      }
    }
  }
  for (int t = 0; t < NT; ++t) _mm512_storeu_ps(a.y + (t0 + t) * a.ldy + o, acc[t]);
}

void matmul_packed_q4k(const MatmulArgs& a, int64_t o0, int64_t o1) {
  prefetch_head(a, o0, o1, a.n_in / QK_K * packed_cell_bytes(GgmlType::Q4_K));
  for (int64_t o = o0; o < o1; o += 16)
    for_token_tiles<4>(a.n_tokens, [&]<int N>(int64_t t, bool pf) { packed_tile_q4k<N>(a, o, t, pf); });
}

// Q6_K: y[t0 + t, o..o+16) for NT tokens. Per 16-element unit in order the same float
// operations as the panel / direct kernels: acc = fma(float(s), (d * sc) * d_x, acc),
// s including the zero point correction (-32 * sum of the activations).
template <int NT>
void packed_tile_q6k(const MatmulArgs& a, int64_t o, int64_t t0, bool prefetch) {
  constexpr int64_t kCell = packed_cell_bytes(GgmlType::Q6_K);
  const int64_t nsb = a.n_in / QK_K, nb = a.n_in / 16;  // super-blocks, units
  const uint8_t* tile = a.wp + size_t(o / 16) * size_t(nsb * kCell);
  const int8_t* xq[NT];
  for (int t = 0; t < NT; ++t) xq[t] = a.xq + (t0 + t) * a.n_in;
  const float* xd = a.xd + t0 * nb;
  const int32_t* xc = a.xcorr + t0 * nb;
  const __m512i lo4 = _mm512_set1_epi8(0x0f), lo2 = _mm512_set1_epi8(3);
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t k = 0; k < nsb; ++k) {
    const uint8_t* c = tile + k * kCell;
    if (prefetch)
      for (int64_t i = 0; i < kCell; i += 64)
        _mm_prefetch(reinterpret_cast<const char*>(c + kPrefetchAhead + i), _MM_HINT_T1);
    const __m512 dd = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c)));
    const uint8_t* ql = c + 288;
    const uint8_t* qh = ql + 2048;
    // Element 128h + 32j + l is in unit 8h + 2j + l / 16. Units are finished in order,
    // two at a time (independent chains for few tokens) or one (registers for many).
    constexpr int kPer = NT <= 4 ? 2 : 1;
    for (int u0 = 0; u0 < 16; u0 += kPer) {
      const int h = u0 / 8, j = u0 % 8 / 2;
      __m512i s[kPer][NT];
      for (int e = 0; e < kPer; ++e)
        for (int t = 0; t < NT; ++t) s[e][t] = _mm512_set1_epi32(xc[t * nb + k * 16 + u0 + e]);
      const int l4_0 = kPer == 2 ? 0 : 4 * (u0 % 2);
      for (int l4 = l4_0; l4 < l4_0 + 4 * kPer; ++l4) {
        const __m512i hv = _mm512_loadu_si512(qh + 64 * (8 * h + l4));
        const __m512i q = _mm512_loadu_si512(ql + 64 * (16 * h + 8 * (j % 2) + l4));
        const __m512i low = _mm512_and_si512(j / 2 ? _mm512_srli_epi16(q, 4) : q, lo4);
        const __m512i high = _mm512_and_si512(_mm512_srli_epi16(hv, 2 * j), lo2);
        const __m512i w = _mm512_or_si512(low, _mm512_slli_epi16(high, 4));
        __m512i* se = s[(l4 - l4_0) / 4];
        for (int t = 0; t < NT; ++t)
          se[t] = _mm512_dpbusd_epi32(se[t], w, bcast4(xq[t] + k * QK_K + 128 * h + 32 * j + 4 * l4));
      }
      for (int e = 0; e < kPer; ++e) {
        const int unit = u0 + e;  // scale byte `unit`: byte unit % 4 of scale vector unit / 4
        const __m512i sc = _mm512_loadu_si512(c + 32 + 64 * (unit / 4));
        const __m512i sv = _mm512_srai_epi32(_mm512_slli_epi32(sc, 24 - 8 * (unit % 4)), 24);
        const __m512 d = _mm512_mul_ps(dd, _mm512_cvtepi32_ps(sv));
        for (int t = 0; t < NT; ++t)
          acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[e][t]),
                                   _mm512_mul_ps(d, _mm512_set1_ps(xd[t * nb + k * 16 + unit])), acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) _mm512_storeu_ps(a.y + (t0 + t) * a.ldy + o, acc[t]);
}

void matmul_packed_q6k(const MatmulArgs& a, int64_t o0, int64_t o1) {
  prefetch_head(a, o0, o1, a.n_in / QK_K * packed_cell_bytes(GgmlType::Q6_K));
  for (int64_t o = o0; o < o1; o += 16)
    for_token_tiles<8>(a.n_tokens, [&]<int N>(int64_t t, bool pf) { packed_tile_q6k<N>(a, o, t, pf); });
}

}  // namespace

MatmulRangeFn matmul_packed_fn_avx512(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0: return matmul_packed<GgmlType::Q4_0>;
    case GgmlType::Q4_1: return matmul_packed<GgmlType::Q4_1>;
    case GgmlType::Q5_0: return matmul_packed<GgmlType::Q5_0>;
    case GgmlType::Q5_1: return matmul_packed<GgmlType::Q5_1>;
    case GgmlType::Q8_0: return matmul_packed<GgmlType::Q8_0>;
    case GgmlType::Q4_K: return matmul_packed_q4k;
    case GgmlType::Q6_K: return matmul_packed_q6k;
    default: return nullptr;
  }
}

}  // namespace kvserve::detail

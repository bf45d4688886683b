// AVX-512 VNNI kernel on weights packed at load (matmul_pack.h), for every token count:
// per 16-row tile and token tile, each block's quant vectors are loaded once (dword r =
// 4 bytes of row r) and fed to one vpdpbusd per token against a broadcast of 4
// activation bytes; the 16 rows' scales are one contiguous load.
//
// Batch invariance: per (row, token) the float operations are those of the panel and
// direct kernels: for each block b in order, the exact int32 dot s_b (zero point
// correction included), acc = fma(float(s_b), d_w * d_x, acc), then for Q4_1 acc =
// fma(m_w, s_x, acc). Integer sums are exact in any order.
// GCC 12 reports its own _mm512_undefined_* placeholders as uninitialized (GCC bug
// 105593, fixed in 13) wherever AVX-512 intrinsics inline.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/matmul_pack.h"

namespace kvserve::detail {
namespace {

// Software prefetch distance along a tile's stream: the tiles are contiguous, so this
// runs ahead into the next tile too.
constexpr int64_t kPrefetchAhead = 2048;

inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// y[t0 + t, o..o+16) for NT tokens. With `prefetch` (the first token tile of a row
// tile) the stream ahead is prefetched.
template <GgmlType T, int NT>
void packed_tile(const MatmulArgs& a, int64_t o, int64_t t0, bool prefetch) {
  constexpr bool kMin = packed_has_min(T), kQh = packed_has_qh(T);
  constexpr bool kNib = T != GgmlType::Q8_0;
  constexpr int64_t kCell = packed_cell_bytes(T);
  constexpr int64_t kQs = packed_qs_offset(T);
  // With few tokens, split each dot into two independent vpdpbusd chains.
  constexpr bool kSplit = NT <= 2;
  const int64_t nb = a.n_in / 32;
  const uint8_t* tile = a.wp + size_t(o / 16) * size_t(nb * kCell);
  const int8_t* xq[NT];
  for (int t = 0; t < NT; ++t) xq[t] = a.xq + (t0 + t) * a.n_in;
  const float* xd = a.xd + t0 * nb;
  const float* xs = kMin ? a.xs + t0 * nb : nullptr;
  const int32_t* xc = a.xcorr + t0 * nb;
  const __m512i lo4 = _mm512_set1_epi8(0x0f), bit4 = _mm512_set1_epi8(0x10);
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* c = tile + b * kCell;
    if (prefetch)
      for (int64_t i = 0; i < kCell; i += 64)
        _mm_prefetch(reinterpret_cast<const char*>(c + kPrefetchAhead + i), _MM_HINT_T0);
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c)));
    const auto* qv = reinterpret_cast<const __m512i*>(c + kQs);
    __m512i s[NT], s2[NT];
    for (int t = 0; t < NT; ++t) {
      s[t] = kMin ? _mm512_setzero_si512() : _mm512_set1_epi32(xc[t * nb + b]);
      if constexpr (kSplit) s2[t] = _mm512_setzero_si512();
    }
    const int8_t* xb[NT];
    for (int t = 0; t < NT; ++t) xb[t] = xq[t] + 32 * b;
    if constexpr (kNib) {
      // Vector k holds bytes 4k..4k+3 of each row: low nibbles = elements 4k..4k+3,
      // high nibbles = elements 16 + 4k..16 + 4k + 3.
      uint64_t qh[8];
      if constexpr (kQh) std::memcpy(qh, c + packed_qh_offset(T), sizeof(qh));
      for (int k = 0; k < 4; ++k) {
        const __m512i q = _mm512_loadu_si512(qv + k);
        __m512i lo = _mm512_and_si512(q, lo4);
        __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), lo4);
        if constexpr (kQh) {
          // The 5th bit: + 16 on the nibble's byte where the mask bit is set.
          lo = _mm512_mask_add_epi8(lo, qh[k], lo, bit4);
          hi = _mm512_mask_add_epi8(hi, qh[4 + k], hi, bit4);
        }
        for (int t = 0; t < NT; ++t) {
          s[t] = _mm512_dpbusd_epi32(s[t], lo, bcast4(xb[t] + 4 * k));
          __m512i& sh = kSplit ? s2[t] : s[t];
          sh = _mm512_dpbusd_epi32(sh, hi, bcast4(xb[t] + 16 + 4 * k));
        }
      }
    } else {
      for (int k = 0; k < 8; ++k) {
        const __m512i q = _mm512_loadu_si512(qv + k);
        for (int t = 0; t < NT; ++t) {
          __m512i& sk = kSplit && (k & 1) ? s2[t] : s[t];
          sk = _mm512_dpbusd_epi32(sk, q, bcast4(xb[t] + 4 * k));
        }
      }
    }
    for (int t = 0; t < NT; ++t) {
      const __m512i st = kSplit ? _mm512_add_epi32(s[t], s2[t]) : s[t];
      acc[t] =
          _mm512_fmadd_ps(_mm512_cvtepi32_ps(st), _mm512_mul_ps(d, _mm512_set1_ps(xd[t * nb + b])), acc[t]);
      if constexpr (kMin) {
        const __m512 m = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 32)));
        acc[t] = _mm512_fmadd_ps(m, _mm512_set1_ps(xs[t * nb + b]), acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) _mm512_storeu_ps(a.y + (t0 + t) * a.ldy + o, acc[t]);
}

template <GgmlType T>
void matmul_packed(const MatmulArgs& a, int64_t o0, int64_t o1) {
  constexpr int kTile = 8;  // tokens per tile: 8 accumulators + 8 sums + quants in registers
  for (int64_t o = o0; o < o1; o += 16) {
    int64_t t = 0;
    for (; t + kTile <= a.n_tokens; t += kTile) packed_tile<T, kTile>(a, o, t, t == 0);
    const bool pf = t == 0;
    switch (a.n_tokens - t) {
      case 7: packed_tile<T, 7>(a, o, t, pf); break;
      case 6: packed_tile<T, 6>(a, o, t, pf); break;
      case 5: packed_tile<T, 5>(a, o, t, pf); break;
      case 4: packed_tile<T, 4>(a, o, t, pf); break;
      case 3: packed_tile<T, 3>(a, o, t, pf); break;
      case 2: packed_tile<T, 2>(a, o, t, pf); break;
      case 1: packed_tile<T, 1>(a, o, t, pf); break;
      default: break;
    }
  }
}

}  // namespace

MatmulRangeFn matmul_packed_fn_avx512(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0: return matmul_packed<GgmlType::Q4_0>;
    case GgmlType::Q4_1: return matmul_packed<GgmlType::Q4_1>;
    case GgmlType::Q5_0: return matmul_packed<GgmlType::Q5_0>;
    case GgmlType::Q5_1: return matmul_packed<GgmlType::Q5_1>;
    case GgmlType::Q8_0: return matmul_packed<GgmlType::Q8_0>;
    default: return nullptr;
  }
}

}  // namespace kvserve::detail

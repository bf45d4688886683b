// AVX2 kernels on the 16-row packed layout (matmul_pack.h) for Q4_0, Q4_1, Q5_0, Q5_1 and
// Q4_K.
// Each 64-byte quant vector is read as two 32-byte halves (rows 0-7 and 8-15, dword r of a
// half = 4 quant bytes of one row), so one vpmaddubsw + vpmaddwd against a broadcast of 4
// activation bytes advances 8 rows, and the block's float work is one FMA per 8 rows
// instead of per row: without VNNI, the file-layout kernel spends most of its
// instructions on per-row scaling and reductions.
//
// Per row, the operations are those of the AVX-512 packed kernel: the exact int32 block
// dot (unsigned quants x signed activations, plus -zero_point * sum(x) for Q4_0/Q5_0),
// then acc = fma(float(dot), d * d_x, acc) (+ acc = fma(m, s_x, acc) for Q4_1/Q5_1), per
// block in order. So results are bit-identical to the AVX-512 kernels, do not depend on
// the token count or the threads (batch invariance).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "gguf/quant_blocks.h"
#include "kernels/cpu/isa_dispatch.h"
#include "kernels/cpu/matmul_pack.h"

namespace kvserve::detail {
namespace {

// Software prefetch distance along the packed stream (contiguous from one 16-row group to
// the next), issued a cell's lines per block, at the rate the stream is consumed.
constexpr int64_t kPrefetchAhead = 2048;

// The cell kPrefetchAhead bytes ahead of c (n bytes).
inline void prefetch_ahead(const uint8_t* c, int64_t n) {
  for (int64_t i = 0; i < n; i += 64)
    _mm_prefetch(reinterpret_cast<const char*>(c + kPrefetchAhead + i), _MM_HINT_T0);
}

// Rows [o0, o1) in 16-row groups, all tokens in tiles of 4, then 2 and 1: tile<NT>(o, t0,
// prefetch), the stream prefetched on a group's first tile. Tiles of 4 unpack each weight
// vector once for four tokens, which is what a speculative decode step (1 + k tokens) and
// small decode batches need; the accumulators of the half not in use spill, cheaply. A
// token's sums are formed in the same order in every tile size (batch invariance).
template <class Tile>
void over_groups_and_token_tiles(const MatmulArgs& a, int64_t o0, int64_t o1, Tile&& tile) {
  for (int64_t o = o0; o < o1; o += 16) {
    int64_t t = 0;
    for (; t + 4 <= a.n_tokens; t += 4) tile.template operator()<4>(o, t, t == 0);
    for (; t + 2 <= a.n_tokens; t += 2) tile.template operator()<2>(o, t, t == 0);
    if (t < a.n_tokens) tile.template operator()<1>(o, t, t == 0);
  }
}

// Bytes whose bit in m is set -> 0x10 (the 5th bit of Q5 quants), others 0.
inline __m256i fifth_bits(uint32_t m) {
  const __m256i rep = _mm256_shuffle_epi8(
      _mm256_set1_epi32(int(m)),
      _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL));
  const __m256i bits = _mm256_set1_epi64x(int64_t(0x8040201008040201ULL));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(rep, bits), bits), _mm256_set1_epi8(0x10));
}

// y[t0 + t, o..o+16) for NT tokens.
template <GgmlType T, int NT>
void packed_tile(const MatmulArgs& a, int64_t o, int64_t t0, bool prefetch) {
  constexpr bool kMin = packed_has_min(T), kQh = packed_has_qh(T);
  constexpr int64_t kCell = packed_cell_bytes(T);
  constexpr int64_t kQs = packed_qs_offset(T);
  // vpmaddubsw pair sums added in int16 before widening: 4-bit quants x |x| <= 127 allow
  // 16 products per lane (8 pair sums), 5-bit ones 8 (4 pair sums).
  constexpr int kPairSums = kQh ? 4 : 8;
  const int64_t nb = a.n_in / 32;
  const uint8_t* tile = a.wp + size_t(o / 16) * size_t(nb * kCell);
  const int8_t* xq[NT];
  for (int t = 0; t < NT; ++t) xq[t] = a.xq + (t0 + t) * a.n_in;
  const float* xd = a.xd + t0 * nb;
  const float* xs = kMin ? a.xs + t0 * nb : nullptr;
  const int32_t* xc = a.xcorr + t0 * nb;
  const __m256i lo4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  __m256 acc[2][NT];
  for (int h = 0; h < 2; ++h)
    for (int t = 0; t < NT; ++t) acc[h][t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* c = tile + b * kCell;
    if (prefetch) prefetch_ahead(c, kCell);
    uint64_t qh[8];
    if constexpr (kQh) std::memcpy(qh, c + packed_qh_offset(T), sizeof(qh));
    for (int h = 0; h < 2; ++h) {
      // Vector k of the half: bytes 4k..4k+3 of its 8 rows; low nibbles are elements
      // 4k..4k+3, high nibbles 16 + 4k..16 + 4k + 3.
      __m256i lo[4], hi[4];
      for (int k = 0; k < 4; ++k) {
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + kQs + 64 * k + 32 * h));
        lo[k] = _mm256_and_si256(q, lo4);
        hi[k] = _mm256_and_si256(_mm256_srli_epi16(q, 4), lo4);
        if constexpr (kQh) {
          lo[k] = _mm256_or_si256(lo[k], fifth_bits(uint32_t(qh[k] >> (32 * h))));
          hi[k] = _mm256_or_si256(hi[k], fifth_bits(uint32_t(qh[4 + k] >> (32 * h))));
        }
      }
      const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + 16 * h)));
      __m256 m;
      if constexpr (kMin)
        m = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + 32 + 16 * h)));
      for (int t = 0; t < NT; ++t) {
        const int8_t* xb = xq[t] + 32 * b;
        __m256i s = kMin ? _mm256_setzero_si256() : _mm256_set1_epi32(xc[t * nb + b]);
        __m256i p = _mm256_setzero_si256();
        int n_pairs = 0;
        for (int k = 0; k < 4; ++k) {
          int32_t xl, xh;
          std::memcpy(&xl, xb + 4 * k, 4);
          std::memcpy(&xh, xb + 16 + 4 * k, 4);
          p = _mm256_add_epi16(p, _mm256_maddubs_epi16(lo[k], _mm256_set1_epi32(xl)));
          p = _mm256_add_epi16(p, _mm256_maddubs_epi16(hi[k], _mm256_set1_epi32(xh)));
          if ((n_pairs += 2) == kPairSums) {
            s = _mm256_add_epi32(s, _mm256_madd_epi16(p, ones));
            p = _mm256_setzero_si256();
            n_pairs = 0;
          }
        }
        acc[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(d, _mm256_set1_ps(xd[t * nb + b])),
                                    acc[h][t]);
        if constexpr (kMin) acc[h][t] = _mm256_fmadd_ps(m, _mm256_set1_ps(xs[t * nb + b]), acc[h][t]);
      }
    }
  }
  for (int h = 0; h < 2; ++h)
    for (int t = 0; t < NT; ++t) _mm256_storeu_ps(a.y + (t0 + t) * a.ldy + o + 8 * h, acc[h][t]);
}

// One half (rows 8h..8h+7) of a Q4_K cell's scales: d, dmin and the three vectors of
// packed 6-bit scales (dword r = scale bytes 4v..4v+3 of row r).
struct Q4kScales {
  __m256 dd, dmin;
  __m256i qa, qb, qc;
  Q4kScales(const uint8_t* c, int h)
      : dd(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + 16 * h)))),
        dmin(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + 32 + 16 * h)))),
        qa(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 64 + 32 * h))),
        qb(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 128 + 32 * h))),
        qc(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 192 + 32 * h))) {}
  // Sub-block sb (0-7): d = dd * sc and m = -(dmin * mn), sc and mn its 6-bit scale and
  // min (the unpacking of load_scales).
  void unit(int sb, __m256& d, __m256& m) const {
    const __m256i m6 = _mm256_set1_epi32(63), m4 = _mm256_set1_epi32(15), m2 = _mm256_set1_epi32(3);
    const int j = sb % 4;
    const __m256i av = _mm256_srli_epi32(qa, 8 * j), bv = _mm256_srli_epi32(qb, 8 * j);
    __m256i sc, mn;
    if (sb < 4) {
      sc = _mm256_and_si256(av, m6);
      mn = _mm256_and_si256(bv, m6);
    } else {
      const __m256i cv = _mm256_srli_epi32(qc, 8 * j);
      sc = _mm256_or_si256(_mm256_and_si256(cv, m4),
                           _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(av, 6), m2), 4));
      mn = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(cv, 4), m4),
                           _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(bv, 6), m2), 4));
    }
    d = _mm256_mul_ps(dd, _mm256_cvtepi32_ps(sc));
    m = _mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(mn)));
  }
};

// From kStagedMinTokens tokens on, a group's weights are unpacked once per call, a stage
// of kStageUnits 32-element units at a time, into bytes and floats in L1 (what the tile
// kernels form in registers), and every token then runs over the stage reading them: on Q5
// types the unpacking costs about as much as three tokens' dot products, and tiles of 4
// still paid it once per 4 tokens. A token's partial sums cross stages through y (stored
// and reloaded exactly); per unit its operations are the tile kernels' (integer sums, then
// the same FMAs in the same order): the same bits.
constexpr int64_t kStagedMinTokens = 8;
constexpr int64_t kStageUnits = 32;  // 32 x 512 bytes of quants: 16 KiB; 4 Q4_K super-blocks

struct Stage {
  // unit, half (rows 8h..8h+7), group g: dword r = the unsigned quants of elements
  // 4g..4g+3 of row 8h + r.
  alignas(32) uint8_t q[kStageUnits][2][8][32];
  alignas(32) float d[kStageUnits][2][8];  // the factor of the unit's int32 dot
  alignas(32) float m[kStageUnits][2][8];  // the factor of the activations' sum (types with one)
};

// Units [u0, u0 + n) of a Q4_0 / Q4_1 / Q5_0 / Q5_1 group whose cells start at `tile`.
template <GgmlType T>
void unpack_units(const uint8_t* tile, int64_t u0, int64_t n, Stage& st) {
  constexpr bool kMin = packed_has_min(T), kQh = packed_has_qh(T);
  constexpr int64_t kCell = packed_cell_bytes(T);
  constexpr int64_t kQs = packed_qs_offset(T);
  const __m256i lo4 = _mm256_set1_epi8(0x0f);
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* c = tile + (u0 + i) * kCell;
    prefetch_ahead(c, kCell);
    uint64_t qh[8];
    if constexpr (kQh) std::memcpy(qh, c + packed_qh_offset(T), sizeof(qh));
    for (int h = 0; h < 2; ++h) {
      for (int k = 0; k < 4; ++k) {
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + kQs + 64 * k + 32 * h));
        __m256i lo = _mm256_and_si256(q, lo4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), lo4);
        if constexpr (kQh) {
          lo = _mm256_or_si256(lo, fifth_bits(uint32_t(qh[k] >> (32 * h))));
          hi = _mm256_or_si256(hi, fifth_bits(uint32_t(qh[4 + k] >> (32 * h))));
        }
        _mm256_store_si256(reinterpret_cast<__m256i*>(st.q[i][h][k]), lo);
        _mm256_store_si256(reinterpret_cast<__m256i*>(st.q[i][h][4 + k]), hi);
      }
      _mm256_store_ps(st.d[i][h],
                      _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + 16 * h))));
      if constexpr (kMin)
        _mm256_store_ps(st.m[i][h],
                        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + 32 + 16 * h))));
    }
  }
}

// Units [u0, u0 + n) of a Q4_K group (u0 and n multiples of 8): packed_tile_q4k's scale
// unpacking, d = d * sc and m = -(dmin * mn) per unit.
void unpack_units_q4k(const uint8_t* tile, int64_t u0, int64_t n, Stage& st) {
  constexpr int64_t kCell = packed_cell_bytes(GgmlType::Q4_K);
  const __m256i lo4 = _mm256_set1_epi8(0x0f);
  for (int64_t i = 0; i < n; i += 8) {
    const uint8_t* c = tile + (u0 + i) / 8 * kCell;
    prefetch_ahead(c, kCell);
    for (int h = 0; h < 2; ++h) {
      const Q4kScales scales(c, h);
      for (int sb = 0; sb < 8; ++sb) {
        __m256 d, m;
        scales.unit(sb, d, m);
        _mm256_store_ps(st.d[i + sb][h], d);
        _mm256_store_ps(st.m[i + sb][h], m);
      }
      for (int cc = 0; cc < 4; ++cc)
        for (int j = 0; j < 8; ++j) {
          const __m256i q =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 256 + 64 * (8 * cc + j) + 32 * h));
          _mm256_store_si256(reinterpret_cast<__m256i*>(st.q[i + 2 * cc][h][j]), _mm256_and_si256(q, lo4));
          _mm256_store_si256(reinterpret_cast<__m256i*>(st.q[i + 2 * cc + 1][h][j]),
                             _mm256_and_si256(_mm256_srli_epi16(q, 4), lo4));
        }
    }
  }
}

// y[t, o..o+16) += the staged units [u0, u0 + n) for every token (y is set by the first
// stage). kXcorr: the int32 sum starts at xcorr (the zero point's correction); kMin: the
// activations' sum times m is added; kPairSums: vpmaddubsw pair sums added in int16 before
// widening (as the tile kernels). Both halves run together: they share the activation
// broadcasts, and their two accumulator chains overlap.
template <bool kXcorr, bool kMin, int kPairSums>
void run_stage(const MatmulArgs& a, int64_t o, int64_t u0, int64_t n, const Stage& st) {
  const int64_t nb = a.n_in / 32;
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    const int8_t* xq = a.xq + t * a.n_in;
    const float* xd = a.xd + t * nb;
    const float* xs = kMin ? a.xs + t * nb : nullptr;
    const int32_t* xc = kXcorr ? a.xcorr + t * nb : nullptr;
    float* y = a.y + t * a.ldy + o;
    __m256 acc[2];
    for (int h = 0; h < 2; ++h) acc[h] = u0 == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(y + 8 * h);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t u = u0 + i;
      const int8_t* xu = xq + 32 * u;
      __m256i s[2];
      for (int h = 0; h < 2; ++h) s[h] = kXcorr ? _mm256_set1_epi32(xc[u]) : _mm256_setzero_si256();
      for (int g0 = 0; g0 < 8; g0 += kPairSums) {
        // The int16 sums are exact (no partial sum overflows), so adding products in pairs
        // first gives the tile kernels' bits with half the dependency chain, and keeps
        // few products live (16 would spill).
        __m256i p[2];
        for (int g = 0; g < kPairSums; g += 2) {
          int32_t xa, xb;
          std::memcpy(&xa, xu + 4 * (g0 + g), 4);
          std::memcpy(&xb, xu + 4 * (g0 + g + 1), 4);
          const __m256i va = _mm256_set1_epi32(xa), vb = _mm256_set1_epi32(xb);
          for (int h = 0; h < 2; ++h) {
            const __m256i* q = reinterpret_cast<const __m256i*>(st.q[i][h][g0 + g]);
            const __m256i pair = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_load_si256(q), va),
                                                  _mm256_maddubs_epi16(_mm256_load_si256(q + 1), vb));
            p[h] = g == 0 ? pair : _mm256_add_epi16(p[h], pair);
          }
        }
        for (int h = 0; h < 2; ++h) s[h] = _mm256_add_epi32(s[h], _mm256_madd_epi16(p[h], ones));
      }
      const __m256 dx = _mm256_set1_ps(xd[u]);
      for (int h = 0; h < 2; ++h)
        acc[h] =
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[h]), _mm256_mul_ps(_mm256_load_ps(st.d[i][h]), dx), acc[h]);
      if constexpr (kMin) {
        const __m256 sx = _mm256_set1_ps(xs[u]);
        for (int h = 0; h < 2; ++h) acc[h] = _mm256_fmadd_ps(_mm256_load_ps(st.m[i][h]), sx, acc[h]);
      }
    }
    for (int h = 0; h < 2; ++h) _mm256_storeu_ps(y + 8 * h, acc[h]);
  }
}

// Rows [o0, o1), every token, staged.
template <GgmlType T>
void matmul_staged(const MatmulArgs& a, int64_t o0, int64_t o1) {
  constexpr bool kQ4K = T == GgmlType::Q4_K;
  constexpr int64_t kCell = packed_cell_bytes(T);
  const int64_t nb = a.n_in / 32;
  const size_t group_bytes = size_t(nb * 32 / packed_elems(T) * kCell);
  Stage st;
  for (int64_t o = o0; o < o1; o += 16) {
    const uint8_t* tile = a.wp + size_t(o / 16) * group_bytes;
    for (int64_t u0 = 0; u0 < nb; u0 += kStageUnits) {
      const int64_t n = std::min(kStageUnits, nb - u0);
      if constexpr (kQ4K) {
        unpack_units_q4k(tile, u0, n, st);
        run_stage<false, true, 8>(a, o, u0, n, st);
      } else {
        unpack_units<T>(tile, u0, n, st);
        run_stage<!packed_has_min(T), packed_has_min(T), packed_has_qh(T) ? 4 : 8>(a, o, u0, n, st);
      }
    }
  }
}

// Q4_K: y[t0 + t, o..o+16) for NT tokens. Per row and 32-element sub-block (unit) in
// order, the AVX-512 kernel's operations: the 6-bit scale and min unpacked from the
// row's 12 scale bytes, acc = fma(float(dot), d * sc * d_x, acc), then
// acc = fma(-(dmin * m), s_x, acc).
template <int NT>
void packed_tile_q4k(const MatmulArgs& a, int64_t o, int64_t t0, bool prefetch) {
  constexpr int64_t kCell = packed_cell_bytes(GgmlType::Q4_K);
  const int64_t nsb = a.n_in / QK_K, nb = a.n_in / 32;  // super-blocks, units
  const uint8_t* tile = a.wp + size_t(o / 16) * size_t(nsb * kCell);
  const int8_t* xq[NT];
  for (int t = 0; t < NT; ++t) xq[t] = a.xq + (t0 + t) * a.n_in;
  const float* xd = a.xd + t0 * nb;
  const float* xs = a.xs + t0 * nb;
  const __m256i lo4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  __m256 acc[2][NT];
  for (int h = 0; h < 2; ++h)
    for (int t = 0; t < NT; ++t) acc[h][t] = _mm256_setzero_ps();
  for (int64_t k = 0; k < nsb; ++k) {
    const uint8_t* c = tile + k * kCell;
    if (prefetch) prefetch_ahead(c, kCell);
    for (int h = 0; h < 2; ++h) {  // rows 8h..8h+7
      const Q4kScales scales(c, h);
      for (int cc = 0; cc < 4; ++cc) {
        // Low nibbles: sub-block 2cc (x[64cc + 4j..]), high: 2cc + 1 (x[64cc + 32 + 4j..]);
        // 8 vpmaddubsw pair sums of 4-bit x int8 fit int16.
        __m256i p0[NT], p1[NT];
        for (int t = 0; t < NT; ++t) p0[t] = p1[t] = _mm256_setzero_si256();
        for (int j = 0; j < 8; ++j) {
          const __m256i q =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 256 + 64 * (8 * cc + j) + 32 * h));
          const __m256i lo = _mm256_and_si256(q, lo4);
          const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), lo4);
          for (int t = 0; t < NT; ++t) {
            const int8_t* x = xq[t] + k * QK_K + 64 * cc + 4 * j;
            int32_t xl, xh;
            std::memcpy(&xl, x, 4);
            std::memcpy(&xh, x + 32, 4);
            p0[t] = _mm256_add_epi16(p0[t], _mm256_maddubs_epi16(lo, _mm256_set1_epi32(xl)));
            p1[t] = _mm256_add_epi16(p1[t], _mm256_maddubs_epi16(hi, _mm256_set1_epi32(xh)));
          }
        }
        for (int p = 0; p < 2; ++p) {
          __m256 d, m;  // of sub-block 2cc + p
          scales.unit(2 * cc + p, d, m);
          const int64_t u = k * 8 + 2 * cc + p;
          for (int t = 0; t < NT; ++t) {
            const __m256i s32 = _mm256_madd_epi16(p ? p1[t] : p0[t], ones);
            acc[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32),
                                        _mm256_mul_ps(d, _mm256_set1_ps(xd[t * nb + u])), acc[h][t]);
            acc[h][t] = _mm256_fmadd_ps(m, _mm256_set1_ps(xs[t * nb + u]), acc[h][t]);
          }
        }
      }
    }
  }
  for (int h = 0; h < 2; ++h)
    for (int t = 0; t < NT; ++t) _mm256_storeu_ps(a.y + (t0 + t) * a.ldy + o + 8 * h, acc[h][t]);
}

void matmul_packed_q4k(const MatmulArgs& a, int64_t o0, int64_t o1) {
  if (a.n_tokens >= kStagedMinTokens) return matmul_staged<GgmlType::Q4_K>(a, o0, o1);
  over_groups_and_token_tiles(
      a, o0, o1, [&]<int NT>(int64_t o, int64_t t, bool pf) { packed_tile_q4k<NT>(a, o, t, pf); });
}

template <GgmlType T>
void matmul_packed(const MatmulArgs& a, int64_t o0, int64_t o1) {
  if (a.n_tokens >= kStagedMinTokens) return matmul_staged<T>(a, o0, o1);
  over_groups_and_token_tiles(
      a, o0, o1, [&]<int NT>(int64_t o, int64_t t, bool pf) { packed_tile<T, NT>(a, o, t, pf); });
}

}  // namespace

MatmulRangeFn matmul_packed_fn_avx2(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0: return matmul_packed<GgmlType::Q4_0>;
    case GgmlType::Q4_1: return matmul_packed<GgmlType::Q4_1>;
    case GgmlType::Q5_0: return matmul_packed<GgmlType::Q5_0>;
    case GgmlType::Q5_1: return matmul_packed<GgmlType::Q5_1>;
    case GgmlType::Q4_K: return matmul_packed_q4k;
    // Q8_0 stays in the file layout: its flipped bytes (q + 128) overflow vpmaddubsw's
    // pair sums, and the sign trick per vector costs decode more than the layout saves
    // (tried: prefill +17 %, decode -9 %). Q6_K likewise: a port of the AVX-512 kernel
    // unpacked too much per half (tried: q4_k_m prefill -5 %, decode -9 %).
    default: return nullptr;
  }
}

}  // namespace kvserve::detail

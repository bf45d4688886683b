// AVX-512 VNNI kernels for the 32-element block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)
// against Q8_0/Q8_1 activations.
//
// Weights become unsigned bytes u = q + zero_point, so one vpdpbusd multiplies 64 of
// them by 64 signed activation quants; the zero point times the activation block sum
// (args.xcorr) is added back in int32, keeping each block's dot product exact.
//
// Two kernels:
// - direct (few tokens, decode): each weight row is read once from memory and dotted
//   with up to 4 tokens; lanes hold 2 blocks of one row and are scaled per block.
// - panel GEMM (many tokens, prefill): 16 rows x 512 columns are repacked once into a layout where
//   lane r of a vector holds 4 bytes of row r, so every vpdpbusd advances 16 rows at
//   once against a broadcast of 4 activation bytes, and the float scaling happens once
//   per block per 16 rows; the panel stays in L1 while all tokens stream past it.
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <vector>

#include "gguf/quant_blocks.h"
#include "kernels/cpu/matmul_internal.h"

namespace kvserve::detail {
namespace {

// Block layout of each type: bytes, offsets of qs / qh / m (-1 when absent).
struct Q32Layout {
  int bytes, qs, qh, m;
  bool nibbles;
};
template <GgmlType T>
constexpr Q32Layout kLayout = T == GgmlType::Q4_0   ? Q32Layout{18, 2, -1, -1, true}
                              : T == GgmlType::Q4_1 ? Q32Layout{20, 4, -1, 2, true}
                              : T == GgmlType::Q5_0 ? Q32Layout{22, 6, 2, -1, true}
                              : T == GgmlType::Q5_1 ? Q32Layout{24, 8, 4, 2, true}
                                                    : Q32Layout{34, 2, -1, -1, false};

// Q4_K / Q5_K also run on the panel kernel: each 32-element sub-block acts as a block
// with scale d * sc and min -dmin * m (sub-block indices kb count 32-element units).
// Q6_K likewise with 16-element units (one scale each, zero point 32).
template <GgmlType T>
constexpr bool kIsK = T == GgmlType::Q4_K || T == GgmlType::Q5_K;
template <GgmlType T>
constexpr int kUnitElems = T == GgmlType::Q6_K ? 16 : 32;  // elements per unit
template <GgmlType T>
constexpr int kSteps = kUnitElems<T> / 4;  // vpdpbusd steps per unit
template <GgmlType T>
constexpr int64_t kUnitsPerBlock = T == GgmlType::Q6_K ? 16
                                   : kIsK<T>           ? 8
                                                       : 1;

// Byte offset of unit kb in a row (kb a multiple of kUnitsPerBlock).
template <GgmlType T>
constexpr int64_t unit_offset(int64_t kb) {
  if constexpr (T == GgmlType::Q6_K)
    return kb / 16 * int64_t(sizeof(BlockQ6_K));
  else if constexpr (kIsK<T>)
    return kb / 8 * (T == GgmlType::Q4_K ? int64_t(sizeof(BlockQ4_K)) : int64_t(sizeof(BlockQ5_K)));
  else
    return kb * kLayout<T>.bytes;
}

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

// A repacked panel of 16 rows: for block b, w[8 b + k] lane r = unpacked bytes 4k..4k+3
// of row r's block b; d[b] / m[b] lane r = that block's scale / min.
// Panels cover kChunk blocks of K at a time (10 KB for 16 rows), so a panel and the
// activations of a token tile stay in L1 whatever n_in is.
constexpr int64_t kChunk = 16;

struct Panel {
  __m512i w[kChunk * 8];
  __m512 d[kChunk];
  __m512 m[kChunk];
};

// Repacks blocks [kb0, kb1) of rows o..o+rows into slots 0..kb1-kb0 of the panel.
template <GgmlType T>
void repack_panel(const MatmulArgs& a, int64_t o, int rows, int64_t kb0, int64_t kb1, Panel& p) {
  constexpr Q32Layout L = kLayout<T>;
  const __mmask16 mask = __mmask16((1u << rows) - 1);
  // Copy the rows' chunks side by side first: sequential reads that the hardware
  // prefetcher follows, after which the gathers below hit L1.
  alignas(64) static thread_local uint8_t staged[16 * kChunk * 34];  // >= 16 rows x kChunk units
  const int64_t len = (kb1 - kb0) * L.bytes;
  for (int r = 0; r < rows; ++r)
    std::memcpy(staged + r * len, a.w + size_t(o + r) * a.w_row_bytes + kb0 * L.bytes, size_t(len));
  const __m512i ridx = _mm512_mullo_epi32(
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(int(len)));
  const __m512i zero = _mm512_setzero_si512();
  for (int64_t b = 0; b < kb1 - kb0; ++b) {
    const uint8_t* blk = staged + b * L.bytes;
    const __m512i g = _mm512_mask_i32gather_epi32(zero, mask, ridx, blk, 1);
    p.d[size_t(b)] = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
    if constexpr (L.m >= 0) p.m[size_t(b)] = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(g, 16)));
    __m512i* w = &p.w[size_t(b * 8)];
    if constexpr (!L.nibbles) {
      for (int k = 0; k < 8; ++k)
        w[k] = _mm512_xor_si512(_mm512_mask_i32gather_epi32(zero, mask, ridx, blk + L.qs + 4 * k, 1),
                                _mm512_set1_epi8(char(0x80)));
    } else {
      const __m512i lo4 = _mm512_set1_epi8(0x0f);
      for (int k = 0; k < 4; ++k) {
        const __m512i q = _mm512_mask_i32gather_epi32(zero, mask, ridx, blk + L.qs + 4 * k, 1);
        w[k] = _mm512_and_si512(q, lo4);
        w[k + 4] = _mm512_and_si512(_mm512_srli_epi32(q, 4), lo4);
      }
      if constexpr (L.qh >= 0) {
        // Bits 4k..4k+3 of qh are the 5th bits of bytes 4k..4k+3: spread 4 bits to bit 4
        // of 4 bytes with a multiply (the shifted copies do not overlap).
        const __m512i qh = _mm512_mask_i32gather_epi32(zero, mask, ridx, blk + L.qh, 1);
        for (int k = 0; k < 8; ++k) {
          const __m512i nib = _mm512_and_si512(_mm512_srli_epi32(qh, 4 * k), _mm512_set1_epi32(0xf));
          const __m512i spread = _mm512_and_si512(_mm512_mullo_epi32(nib, _mm512_set1_epi32(0x00204081)),
                                                  _mm512_set1_epi32(0x01010101));
          w[k] = _mm512_or_si512(w[k], _mm512_slli_epi32(spread, 4));
        }
      }
    }
  }
}

// Where a chunk's partial sums go: the first chunk starts from zero, later ones resume
// from acc_buf, the last one writes y.
struct ChunkPos {
  int64_t kb0, kb1;
  bool first, last;
  __m512* acc_buf;  // [n_tokens] partial sums of the panel's 16 rows
};

// Repacks 32-element units [kb0, kb1) (whole super-blocks) of Q4_K / Q5_K rows.
template <GgmlType T>
void repack_panel_k(const MatmulArgs& a, int64_t o, int rows, int64_t kb0, int64_t kb1, Panel& p) {
  constexpr bool kHigh = T == GgmlType::Q5_K;
  constexpr int kBytes = kHigh ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
  constexpr int kQs = kHigh ? offsetof(BlockQ5_K, qs) : offsetof(BlockQ4_K, qs);
  const __mmask16 mask = __mmask16((1u << rows) - 1);
  alignas(64) static thread_local uint8_t staged[16 * kChunk / 8 * sizeof(BlockQ5_K)];
  const int64_t len = unit_offset<T>(kb1) - unit_offset<T>(kb0);
  for (int r = 0; r < rows; ++r)
    std::memcpy(staged + r * len, a.w + size_t(o + r) * a.w_row_bytes + unit_offset<T>(kb0), size_t(len));
  const __m512i ridx = _mm512_mullo_epi32(
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(int(len)));
  const __m512i zero = _mm512_setzero_si512(), lo4 = _mm512_set1_epi8(0x0f);
  for (int64_t k = 0; k < (kb1 - kb0) / 8; ++k) {
    const uint8_t* blk = staged + k * kBytes;
    // d and dmin of each row, then the 6-bit scales and mins unpacked per row.
    const __m512i g = _mm512_mask_i32gather_epi32(zero, mask, ridx, blk, 1);
    const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
    const __m512 dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(g, 16)));
    alignas(64) float sc[8][16] = {}, mn[8][16] = {};
    for (int r = 0; r < rows; ++r) {
      const uint8_t* q = blk + r * len + 4;  // the 12 packed scale bytes
      for (int j = 0; j < 4; ++j) {
        sc[j][r] = float(q[j] & 63);
        mn[j][r] = float(q[j + 4] & 63);
        sc[j + 4][r] = float((q[j + 8] & 0xf) | ((q[j] >> 6) << 4));
        mn[j + 4][r] = float((q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4));
      }
    }
    for (int sb = 0; sb < 8; ++sb) {
      p.d[k * 8 + sb] = _mm512_mul_ps(d, _mm512_load_ps(sc[sb]));
      p.m[k * 8 + sb] = _mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(dmin, _mm512_load_ps(mn[sb])));
    }
    // Sub-block 2c: low nibbles of qs[32c..32c+31], 2c + 1: the high nibbles.
    for (int c = 0; c < 4; ++c)
      for (int j = 0; j < 8; ++j) {
        const __m512i q = _mm512_mask_i32gather_epi32(zero, mask, ridx, blk + kQs + 32 * c + 4 * j, 1);
        p.w[(k * 8 + 2 * c) * 8 + j] = _mm512_and_si512(q, lo4);
        p.w[(k * 8 + 2 * c + 1) * 8 + j] = _mm512_and_si512(_mm512_srli_epi32(q, 4), lo4);
      }
    if constexpr (kHigh) {
      // The 5th bit of element 32 sb + l is bit sb of qh[l].
      for (int j = 0; j < 8; ++j) {
        const __m512i h =
            _mm512_mask_i32gather_epi32(zero, mask, ridx, blk + offsetof(BlockQ5_K, qh) + 4 * j, 1);
        for (int sb = 0; sb < 8; ++sb) {
          const __m512i bit = _mm512_and_si512(_mm512_srli_epi32(h, sb), _mm512_set1_epi8(1));
          __m512i& w = p.w[(k * 8 + sb) * 8 + j];
          w = _mm512_or_si512(w, _mm512_slli_epi32(bit, 4));
        }
      }
    }
  }
}

// Repacks 16-element units [kb0, kb1) (whole super-blocks) of Q6_K rows: bytes are the
// stored 6-bit values (q + 32), the scale d * sc per unit.
void repack_panel_q6k(const MatmulArgs& a, int64_t o, int rows, int64_t kb0, int64_t kb1, Panel& p) {
  constexpr int kBytes = sizeof(BlockQ6_K);
  const __mmask16 mask = __mmask16((1u << rows) - 1);
  alignas(64) static thread_local uint8_t staged[16 * kChunk / 16 * sizeof(BlockQ6_K) + 64];
  const int64_t len = (kb1 - kb0) / 16 * kBytes;
  for (int r = 0; r < rows; ++r)
    std::memcpy(staged + r * len, a.w + size_t(o + r) * a.w_row_bytes + kb0 / 16 * kBytes, size_t(len));
  const __m512i ridx = _mm512_mullo_epi32(
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(int(len)));
  const __m512i zero = _mm512_setzero_si512(), lo4 = _mm512_set1_epi8(0x0f), lo2 = _mm512_set1_epi8(3);
  for (int64_t k = 0; k < (kb1 - kb0) / 16; ++k) {
    const uint8_t* blk = staged + k * kBytes;
    __m512* dv = &p.d[k * 16];
    __m512i* wv = &p.w[k * 16 * 4];
    // d is the high half of the dword at offset 206 (reading at 208 would pass the end).
    const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(
        _mm512_mask_i32gather_epi32(zero, mask, ridx, blk + offsetof(BlockQ6_K, d) - 2, 1), 16)));
    for (int i = 0; i < 4; ++i) {
      const __m512i sc =
          _mm512_mask_i32gather_epi32(zero, mask, ridx, blk + offsetof(BlockQ6_K, scales) + 4 * i, 1);
      for (int j = 0; j < 4; ++j) {
        const __m512i s = _mm512_srai_epi32(_mm512_slli_epi32(sc, 24 - 8 * j), 24);  // signed byte j
        dv[4 * i + j] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(s));
      }
    }
    // Element 128h + 32j + l: nibble j / 2 of ql[64h + 32(j % 2) + l], bits 2j of
    // qh[32h + l]; unit 8h + 2j + l / 16, step (l % 16) / 4.
    for (int h = 0; h < 2; ++h)
      for (int l4 = 0; l4 < 8; ++l4) {
        const __m512i qh =
            _mm512_mask_i32gather_epi32(zero, mask, ridx, blk + offsetof(BlockQ6_K, qh) + 32 * h + 4 * l4, 1);
        for (int jj = 0; jj < 2; ++jj) {
          const __m512i ql = _mm512_mask_i32gather_epi32(
              zero, mask, ridx, blk + offsetof(BlockQ6_K, ql) + 64 * h + 32 * jj + 4 * l4, 1);
          for (int jn = 0; jn < 2; ++jn) {
            const int j = jj + 2 * jn;
            const __m512i low = _mm512_and_si512(_mm512_srli_epi32(ql, 4 * jn), lo4);
            const __m512i high = _mm512_and_si512(_mm512_srli_epi32(qh, 2 * j), lo2);
            const int unit = 8 * h + 2 * j + l4 / 4;
            wv[unit * 4 + l4 % 4] = _mm512_or_si512(low, _mm512_slli_epi32(high, 4));
          }
        }
      }
  }
}

// y[t, o..o+rows) for NT tokens from t0 against a repacked panel chunk.
template <GgmlType T, int NT>
void panel_tokens(const MatmulArgs& a, const Panel& p, int64_t o, int rows, int64_t t0, const ChunkPos& c) {
  constexpr bool kMin = T == GgmlType::Q4_1 || T == GgmlType::Q5_1 || kIsK<T>;
  constexpr int U = kUnitElems<T>;
  const int64_t nb = a.n_in / U;
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = c.first ? _mm512_setzero_ps() : c.acc_buf[t0 + t];
  const int8_t* xq[NT];
  for (int t = 0; t < NT; ++t) xq[t] = a.xq + (t0 + t) * a.n_in + c.kb0 * U;
  for (int64_t b = 0; b < c.kb1 - c.kb0; ++b) {
    __m512i s[NT];
    for (int t = 0; t < NT; ++t) {
      if constexpr (kMin)
        s[t] = _mm512_setzero_si512();
      else
        s[t] = _mm512_set1_epi32(a.xcorr[(t0 + t) * nb + c.kb0 + b]);
    }
    const __m512i* w = &p.w[b * kSteps<T>];
#pragma GCC unroll 8
    for (int k = 0; k < kSteps<T>; ++k) {
      const __m512i wk = _mm512_load_si512(w + k);
      for (int t = 0; t < NT; ++t) {
        int32_t x4;
        std::memcpy(&x4, xq[t] + b * U + 4 * k, 4);
        s[t] = _mm512_dpbusd_epi32(s[t], wk, _mm512_set1_epi32(x4));
      }
    }
    const __m512 d = p.d[b];
    for (int t = 0; t < NT; ++t) {
      const int64_t xo = (t0 + t) * nb + c.kb0 + b;
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t]), _mm512_mul_ps(d, _mm512_set1_ps(a.xd[xo])), acc[t]);
      if constexpr (kMin) acc[t] = _mm512_fmadd_ps(p.m[b], _mm512_set1_ps(a.xs[xo]), acc[t]);
    }
  }
  const __mmask16 mask = __mmask16((1u << rows) - 1);
  for (int t = 0; t < NT; ++t) {
    if (c.last)
      _mm512_mask_storeu_ps(a.y + (t0 + t) * a.ldy + o, mask, acc[t]);
    else
      c.acc_buf[t0 + t] = acc[t];
  }
}

constexpr int kPanelTokens = 8;

// Weights bigger than the caches (the output layer) would otherwise reach the gathers
// of repack_panel at DRAM latency: fetch the next chunk while this one is computed.
template <GgmlType T>
void prefetch_next_chunk(const MatmulArgs& a, int64_t o, int64_t kb0, int64_t n_blocks, int64_t o1) {
  const int64_t len = unit_offset<T>(std::min(kb0 + n_blocks, a.n_in / kUnitElems<T>)) - unit_offset<T>(kb0);
  for (int64_t r = o; r < std::min(o + 16, o1); ++r) {
    const char* p = reinterpret_cast<const char*>(a.w + size_t(r) * a.w_row_bytes + unit_offset<T>(kb0));
    for (int64_t i = 0; i < len; i += 64) _mm_prefetch(p + i, _MM_HINT_T1);
  }
}

template <GgmlType T>
void matmul_panels(const MatmulArgs& a, int64_t o0, int64_t o1) {
  thread_local Panel panel;
  thread_local std::vector<__m512> acc_buf;
  if (int64_t(acc_buf.size()) < a.n_tokens) acc_buf.resize(size_t(a.n_tokens));
  const int64_t nb = a.n_in / kUnitElems<T>;
  // Equal chunks of at most kChunk blocks (576 = 18 blocks: 9 + 9, not 16 + 2).
  // K-quant chunks hold whole super-blocks (8 units).
  constexpr int64_t kUnit = kUnitsPerBlock<T>;
  const int64_t n_chunks = (nb + kChunk - 1) / kChunk;
  const int64_t chunk = ((nb + n_chunks - 1) / n_chunks + kUnit - 1) / kUnit * kUnit;
  for (int64_t o = o0; o < o1; o += 16) {
    const int rows = int(std::min<int64_t>(16, o1 - o));
    for (int64_t kb0 = 0; kb0 < nb; kb0 += chunk) {
      const ChunkPos c{kb0, std::min(nb, kb0 + chunk), kb0 == 0, kb0 + chunk >= nb, acc_buf.data()};
      prefetch_next_chunk<T>(a, c.kb1 < nb ? o : o + 16, c.kb1 < nb ? c.kb1 : 0, c.kb1 - c.kb0, o1);
      if constexpr (T == GgmlType::Q6_K)
        repack_panel_q6k(a, o, rows, c.kb0, c.kb1, panel);
      else if constexpr (kIsK<T>)
        repack_panel_k<T>(a, o, rows, c.kb0, c.kb1, panel);
      else
        repack_panel<T>(a, o, rows, c.kb0, c.kb1, panel);
      int64_t t = 0;
      for (; t + kPanelTokens <= a.n_tokens; t += kPanelTokens)
        panel_tokens<T, kPanelTokens>(a, panel, o, rows, t, c);
      const int64_t rest = a.n_tokens - t;
      if (rest & 4) panel_tokens<T, 4>(a, panel, o, rows, t, c), t += 4;
      if (rest & 2) panel_tokens<T, 2>(a, panel, o, rows, t, c), t += 2;
      if (rest & 1) panel_tokens<T, 1>(a, panel, o, rows, t, c);
    }
  }
}

// Below this many tokens, repacking a panel costs more than it saves.
constexpr int64_t kPanelMinTokens = 12;

template <GgmlType T>
void matmul_q32(const MatmulArgs& a, int64_t o0, int64_t o1) {
  if (a.n_tokens >= kPanelMinTokens)
    matmul_panels<T>(a, o0, o1);
  else
    matmul_direct<T>(a, o0, o1);
}

}  // namespace

MatmulRangeFn matmul_kpanel_fn_avx512(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_K: return matmul_panels<GgmlType::Q4_K>;
    case GgmlType::Q5_K: return matmul_panels<GgmlType::Q5_K>;
    case GgmlType::Q6_K: return matmul_panels<GgmlType::Q6_K>;
    default: return nullptr;
  }
}

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

// AVX-512 VNNI panel GEMM for many tokens (prefill): 16 weight rows x up to 16 units
// (512 elements for 32-element units) are repacked once so that lane r of a vector holds
// 4 bytes of row r; every vpdpbusd then advances 16 rows at once against a broadcast of
// 4 activation bytes, and the float scaling happens once per unit per 16 rows. The
// panel chunk (10 KB) stays in L1 while all tokens stream past it.
//
// Weights are unsigned bytes u = q + zero_point; the zero point times the activation
// unit's sum (args.xcorr) seeds the int32 accumulator, keeping each unit exact. Serves
// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (32-element blocks), Q4_K / Q5_K (32-element sub-blocks
// with scale d * sc and min -dmin * m) and Q6_K (16-element groups, zero point 32).
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
#include <vector>

#include "kernels/cpu/isa_dispatch.h"
#include "kernels/cpu/matmul_q32_layout.h"

namespace kvserve::detail {
namespace {

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
  float* acc_buf;  // [n_tokens, 16] partial sums of the panel's 16 rows
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
  for (int t = 0; t < NT; ++t)
    acc[t] = c.first ? _mm512_setzero_ps() : _mm512_loadu_ps(c.acc_buf + (t0 + t) * 16);
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
      _mm512_storeu_ps(c.acc_buf + (t0 + t) * 16, acc[t]);
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
  thread_local std::vector<float> acc_buf;
  if (int64_t(acc_buf.size()) < a.n_tokens * 16) acc_buf.resize(size_t(a.n_tokens * 16));
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
}  // namespace

MatmulRangeFn matmul_panel_fn_avx512(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0: return matmul_panels<GgmlType::Q4_0>;
    case GgmlType::Q4_1: return matmul_panels<GgmlType::Q4_1>;
    case GgmlType::Q5_0: return matmul_panels<GgmlType::Q5_0>;
    case GgmlType::Q5_1: return matmul_panels<GgmlType::Q5_1>;
    case GgmlType::Q8_0: return matmul_panels<GgmlType::Q8_0>;
    case GgmlType::Q4_K: return matmul_panels<GgmlType::Q4_K>;
    case GgmlType::Q5_K: return matmul_panels<GgmlType::Q5_K>;
    case GgmlType::Q6_K: return matmul_panels<GgmlType::Q6_K>;
    default: return nullptr;
  }
}

}  // namespace kvserve::detail

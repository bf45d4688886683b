// AVX2 Q8_0 kernel on the file's rows, 8 rows at a time, with the packed kernels'
// arithmetic: per (row, token, block) the exact int32 dot of the block's 32 products,
// then acc = fma(float(dot), d_w * d_x, acc), blocks in order. So a row's result is the
// same whatever the token count, the tile or the threads (batch invariance).
//
// Decode (fewer than kStagedMinTokens tokens) reads each block of 8 rows straight from
// the rows and sums every row's 8 int32 lanes with a vphaddd tree. Batches transpose a
// group's blocks once per call into a stage in L1 (dword r = 4 bytes of row r, as in the
// packed layout), so one vpmaddubsw advances 8 rows against a broadcast of 4 activation
// bytes and every token reuses the stage: the per-row kernel this replaces spent a
// reduction and a scalar FMA per row and block. |w| x sign(x, w) keeps vpmaddubsw's pair
// sums from saturating (|w| <= 128, |x| <= 127: 2 x 128 x 127 < 32768), and each pair sum
// is widened before the next is added.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "gguf/quant_blocks.h"
#include "kernels/cpu/isa_dispatch.h"
#include "kernels/cpu/matmul_internal.h"

namespace kvserve::detail {
namespace {

constexpr int64_t kBlockBytes = sizeof(BlockQ8_0);  // fp16 d, then 32 int8 quants
constexpr int64_t kStagedMinTokens = 8;
constexpr int64_t kStageBlocks = 32;  // 2 x 32 x 256 bytes of quants: 16 KiB

// Lanes of rows [0, n) set: the mask of a group's stores and reloads of y.
inline __m256i row_mask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The 8 rows' fp16 block scales at byte offset off of each row, as floats.
inline __m256 row_scales(const uint8_t* const* row, int64_t off) {
  uint16_t h[8];
  for (int r = 0; r < 8; ++r) std::memcpy(&h[r], row[r] + off, 2);
  return _mm256_cvtph_ps(_mm_setr_epi16(short(h[0]), short(h[1]), short(h[2]), short(h[3]), short(h[4]),
                                        short(h[5]), short(h[6]), short(h[7])));
}

// int32 dot of |w| and sign(x, w) in 8 lanes of 4 products each.
inline __m256i dot_lanes(__m256i w, __m256i x) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w)),
                           _mm256_set1_epi16(1));
}

// [sum of p[0]'s lanes, ..., sum of p[7]'s lanes] (exact in int32).
inline __m256i sum_lanes8(const __m256i* p) {
  const __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
  const __m256i b = _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
  return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
}

// Rows [o, o + rows) (rows <= 8) x NT tokens from t0, straight from the rows.
template <int NT>
void direct_tile(const MatmulArgs& a, int64_t o, int rows, int64_t t0) {
  const int64_t nb = a.n_in / 32;
  const uint8_t* row[8];
  for (int r = 0; r < 8; ++r) row[r] = a.w + size_t(o + std::min(r, rows - 1)) * a.w_row_bytes;
  // The group two ahead, streamed in as this one is consumed (rows are contiguous).
  const char* pf = reinterpret_cast<const char*>(a.w + size_t(o + 16) * a.w_row_bytes);
  const char* pf_end = pf + 8 * a.w_row_bytes;
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    for (int i = 0; i < 8 * kBlockBytes && pf < pf_end; i += 64, pf += 64) _mm_prefetch(pf, _MM_HINT_T0);
    const int64_t off = b * kBlockBytes;
    const __m256 d = row_scales(row, off);
    for (int t = 0; t < NT; ++t) {
      const __m256i x =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.xq + (t0 + t) * a.n_in + 32 * b));
      __m256i p[8];
      for (int r = 0; r < 8; ++r)
        p[r] = dot_lanes(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row[r] + off + 2)), x);
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum_lanes8(p)),
                               _mm256_mul_ps(d, _mm256_set1_ps(a.xd[(t0 + t) * nb + b])), acc[t]);
    }
  }
  const __m256i mask = row_mask(rows);
  for (int t = 0; t < NT; ++t) _mm256_maskstore_ps(a.y + (t0 + t) * a.ldy + o, mask, acc[t]);
}

struct Stage {
  // block, group g: dword r = quants 4g..4g+3 of row r; and their absolute values.
  alignas(32) int8_t w[kStageBlocks][8][32];
  alignas(32) uint8_t w_abs[kStageBlocks][8][32];
  alignas(32) float d[kStageBlocks][8];
};

// The next 8-row group (contiguous after this one), prefetched a share per token while
// this group's tokens run: in one burst, the prefetches would overrun the misses the
// core can keep in flight.
struct NextGroup {
  const char* p;
  const char* end;
  void step(int64_t bytes) {
    for (int64_t i = 0; i < bytes && p < end; i += 64, p += 64) _mm_prefetch(p, _MM_HINT_T0);
  }
};

// Blocks [b0, b0 + n) of the 8 rows into st (an 8 x 8 dword transpose per block).
void fill_stage(const uint8_t* const* row, int64_t b0, int64_t n, Stage& st) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t off = (b0 + i) * kBlockBytes;
    __m256i v[8], t[8], u[8];
    for (int r = 0; r < 8; ++r) v[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row[r] + off + 2));
    for (int r = 0; r < 8; r += 2) {
      t[r] = _mm256_unpacklo_epi32(v[r], v[r + 1]);      // dwords 0, 1 | 4, 5 of rows r, r + 1
      t[r + 1] = _mm256_unpackhi_epi32(v[r], v[r + 1]);  // dwords 2, 3 | 6, 7
    }
    for (int r = 0; r < 8; r += 4)
      for (int k = 0; k < 2; ++k) {
        u[r + 2 * k] = _mm256_unpacklo_epi64(t[r + k], t[r + 2 + k]);      // dword 2k | 2k + 4, rows r..r + 3
        u[r + 2 * k + 1] = _mm256_unpackhi_epi64(t[r + k], t[r + 2 + k]);  // dword 2k + 1 | 2k + 5
      }
    for (int g = 0; g < 4; ++g) {
      const __m256i lo = _mm256_permute2x128_si256(u[g], u[4 + g], 0x20);  // dword g of rows 0..7
      const __m256i hi = _mm256_permute2x128_si256(u[g], u[4 + g], 0x31);  // dword g + 4
      _mm256_store_si256(reinterpret_cast<__m256i*>(st.w[i][g]), lo);
      _mm256_store_si256(reinterpret_cast<__m256i*>(st.w[i][g + 4]), hi);
      _mm256_store_si256(reinterpret_cast<__m256i*>(st.w_abs[i][g]), _mm256_abs_epi8(lo));
      _mm256_store_si256(reinterpret_cast<__m256i*>(st.w_abs[i][g + 4]), _mm256_abs_epi8(hi));
    }
    _mm256_store_ps(st.d[i], row_scales(row, off));
  }
}

// Rows [o, o + rows) (rows <= 8), every token, staged. A token's sums cross stages
// through y (stored and reloaded exactly).
void staged_group(const MatmulArgs& a, int64_t o, int rows, Stage& st) {
  const int64_t nb = a.n_in / 32;
  const uint8_t* row[8];
  for (int r = 0; r < 8; ++r) row[r] = a.w + size_t(o + std::min(r, rows - 1)) * a.w_row_bytes;
  const __m256i mask = row_mask(rows), ones = _mm256_set1_epi16(1);
  const char* next = reinterpret_cast<const char*>(a.w + size_t(o + 8) * a.w_row_bytes);
  NextGroup pf{next, next + 8 * a.w_row_bytes};
  const int64_t pf_share = (8 * a.w_row_bytes * kStageBlocks / nb / a.n_tokens + 63) / 64 * 64;
  for (int64_t b0 = 0; b0 < nb; b0 += kStageBlocks) {
    const int64_t n = std::min(kStageBlocks, nb - b0);
    fill_stage(row, b0, n, st);
    for (int64_t t = 0; t < a.n_tokens; ++t) {
      pf.step(pf_share);
      const int8_t* xq = a.xq + t * a.n_in;
      const float* xd = a.xd + t * nb;
      float* y = a.y + t * a.ldy + o;
      __m256 acc = b0 == 0 ? _mm256_setzero_ps() : _mm256_maskload_ps(y, mask);
      for (int64_t i = 0; i < n; ++i) {
        const int8_t* xb = xq + 32 * (b0 + i);
        __m256i s = _mm256_setzero_si256();
        for (int g = 0; g < 8; ++g) {
          int32_t x4;
          std::memcpy(&x4, xb + 4 * g, 4);
          const __m256i x = _mm256_set1_epi32(x4);
          const __m256i w = _mm256_load_si256(reinterpret_cast<const __m256i*>(st.w[i][g]));
          const __m256i w_abs = _mm256_load_si256(reinterpret_cast<const __m256i*>(st.w_abs[i][g]));
          s = _mm256_add_epi32(s,
                               _mm256_madd_epi16(_mm256_maddubs_epi16(w_abs, _mm256_sign_epi8(x, w)), ones));
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s),
                              _mm256_mul_ps(_mm256_load_ps(st.d[i]), _mm256_set1_ps(xd[b0 + i])), acc);
      }
      _mm256_maskstore_ps(y, mask, acc);
    }
  }
}

}  // namespace

void matmul_q8_0_avx2(const MatmulArgs& a, int64_t o0, int64_t o1) {
  if (a.n_tokens >= kStagedMinTokens) {
    Stage st;
    for (int64_t o = o0; o < o1; o += 8) staged_group(a, o, int(std::min<int64_t>(8, o1 - o)), st);
    return;
  }
  for (int64_t o = o0; o < o1; o += 8) {
    const int rows = int(std::min<int64_t>(8, o1 - o));
    int64_t t = 0;
    for (; t + 4 <= a.n_tokens; t += 4) direct_tile<4>(a, o, rows, t);
    switch (a.n_tokens - t) {
      case 3: direct_tile<3>(a, o, rows, t); break;
      case 2: direct_tile<2>(a, o, rows, t); break;
      case 1: direct_tile<1>(a, o, rows, t); break;
      default: break;
    }
  }
}

}  // namespace kvserve::detail

// AVX2 + FMA kernels (for CPUs without AVX-512): the 32-element block types against
// Q8_0/Q8_1 activations, and F32/F16/BF16. Each weight block is unpacked once and dotted
// with up to 4 tokens. Without VNNI, the int8 dot product is vpmaddubsw (unsigned x
// signed, pairs to int16) + vpmaddwd; signed weights go through the sign trick
// (|w| x sign(x, w)) so the int16 pair sums cannot saturate. Q8_0: see
// matmul_q8_avx2.cpp; K-quants: matmul_kquant_avx2.cpp.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "core/half.h"
#include "kernels/cpu/isa_dispatch.h"
#include "kernels/cpu/matmul_q32_layout.h"

namespace kvserve::detail {
namespace {

// The 32 quants of one block as bytes: signed (q - zero point) for Q4_0/Q5_0, unsigned
// for Q4_1/Q5_1.
template <GgmlType T>
inline __m256i unpack(const uint8_t* blk) {
  constexpr Q32Layout L = kLayout<T>;
  static_assert(L.nibbles, "Q8_0 has its own kernel");
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + L.qs));
  const __m256i lo4 = _mm256_set1_epi8(0x0f);
  __m256i v = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), lo4);
  if constexpr (L.qh >= 0) {
    // Byte e gets bit e of qh as its bit 4: replicate qh's bytes, then test each byte
    // against its own bit.
    uint32_t qh;
    std::memcpy(&qh, blk + L.qh, 4);
    const __m256i rep = _mm256_shuffle_epi8(
        _mm256_set1_epi32(int(qh)),
        _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL));
    const __m256i bits = _mm256_set1_epi64x(int64_t(0x8040201008040201ULL));
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(rep, bits), bits);
    v = _mm256_or_si256(v, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
  }
  if constexpr (simd_zero_point(T) != 0) v = _mm256_sub_epi8(v, _mm256_set1_epi8(char(simd_zero_point(T))));
  return v;
}

inline float hsum(__m256 v) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

// ---- 32-element block types ----
//
// Per (row, token) every kernel below performs the same operations in the same order:
// per block, the int32 dot product of the quants (8 lanes), converted and accumulated
// with one FMA by d_w * d_x; then the 8 lanes summed by hsum, plus (Q4_1/Q5_1) the
// scalar sum of m_w * s_x. So a row's result does not depend on the tile it is computed
// in, on n_tokens or on threads (batch invariance).

// Prefetches the R rows two R-row tiles ahead of rows [o, o + R) (contiguous), `bytes`
// at a time as the current rows are consumed: rows read interleaved are a pattern the
// hardware prefetcher follows poorly.
struct RowsAhead {
  const char* p;
  const char* end;
  RowsAhead(const MatmulArgs& a, int64_t o, int R)
      : p(reinterpret_cast<const char*>(a.w + size_t(o + 2 * R) * a.w_row_bytes)),
        end(p + R * a.w_row_bytes) {}
  void step(int64_t bytes) {
    for (int64_t k = 0; k < bytes && p < end; k += 64, p += 64) _mm_prefetch(p, _MM_HINT_T0);
  }
};

// R rows x NT tokens. Decode runs 4 rows at once (independent FMA chains hide the FMA
// latency and the 4 weight streams keep the memory busy); batches run 2 rows x 4 tokens
// (each unpacked weight block dotted with 4 tokens).
template <GgmlType T, int R, int NT>
void q32_tile(const MatmulArgs& a, int64_t o, int64_t t0) {
  constexpr Q32Layout L = kLayout<T>;
  constexpr bool kMin = L.m >= 0;  // unsigned quants and a min: no sign trick
  const int64_t nb = a.n_in / 32;
  const uint8_t* row[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) row[r] = a.w + size_t(o + r) * a.w_row_bytes;
  __m256 acc[R][NT];
  float mins[R][NT];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) {
      acc[r][t] = _mm256_setzero_ps();
      mins[r][t] = 0.0f;
    }
  const __m256i ones = _mm256_set1_epi16(1);
  RowsAhead pf(a, o, R);
  for (int64_t b = 0; b < nb; ++b) {
    pf.step(R * L.bytes);
    __m256i w[R], wabs[R];
    float dw[R], mw[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = row[r] + b * L.bytes;
      uint16_t h;
      std::memcpy(&h, blk, 2);
      dw[r] = _cvtsh_ss(h);  // F16C: exact, as fp16_to_fp32
      if constexpr (kMin) {
        std::memcpy(&h, blk + L.m, 2);
        mw[r] = _cvtsh_ss(h);
      }
      w[r] = unpack<T>(blk);
      // Signed weights: |w| x sign(x, w), so the int16 pair sums cannot saturate.
      if constexpr (!kMin) wabs[r] = _mm256_sign_epi8(w[r], w[r]);
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) {
      const int64_t xo = (t0 + t) * nb + b;
      const __m256i x =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.xq + (t0 + t) * a.n_in + b * 32));
      const float xd = a.xd[xo];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m256i p16 =
            kMin ? _mm256_maddubs_epi16(w[r], x) : _mm256_maddubs_epi16(wabs[r], _mm256_sign_epi8(x, w[r]));
        const __m256i p = _mm256_madd_epi16(p16, ones);
        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw[r] * xd), acc[r][t]);
        if constexpr (kMin) mins[r][t] = std::fma(mw[r], a.xs[xo], mins[r][t]);
      }
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) a.y[(t0 + t) * a.ldy + o + r] = hsum(acc[r][t]) + mins[r][t];
}

// Rows [o, o + R) for all tokens: tiles of up to NT tokens, then the rest.
template <int NT, class Tile>
void over_tokens(int64_t n_tokens, Tile&& tile) {
  int64_t t = 0;
  for (; t + NT <= n_tokens; t += NT) tile.template operator()<NT>(t);
  [&]<int... N>(std::integer_sequence<int, N...>) {
    ((n_tokens - t == N + 1 ? tile.template operator()<N + 1>(t) : void()), ...);
  }
  (std::make_integer_sequence<int, NT - 1>{});
}

template <GgmlType T>
void matmul_q32(const MatmulArgs& a, int64_t o0, int64_t o1) {
  int64_t o = o0;
  if (a.n_tokens < 4) {
    for (; o + 4 <= o1; o += 4)
      over_tokens<3>(a.n_tokens, [&]<int N>(int64_t t) { q32_tile<T, 4, N>(a, o, t); });
  } else {
    for (; o + 2 <= o1; o += 2)
      over_tokens<4>(a.n_tokens, [&]<int N>(int64_t t) { q32_tile<T, 2, N>(a, o, t); });
  }
  for (; o < o1; ++o) over_tokens<4>(a.n_tokens, [&]<int N>(int64_t t) { q32_tile<T, 1, N>(a, o, t); });
}

// ---- F32 / F16 / BF16 ----
//
// Per (row, token): acc = fma(w[i..i+8), x[i..i+8), acc) for i = 0, 8, ... (zeros past
// n_in), then hsum. Decode reads the weights as they are, 4 rows at once; batches widen
// the activations of a token block and each weight panel to f32 once (the same exact
// values), so the tiles run loads and FMAs only.

template <GgmlType T>
constexpr int kElemBytes = T == GgmlType::F32 ? 4 : 2;

// 8 elements at p widened to f32.
template <GgmlType T>
inline __m256 load8(const uint8_t* p) {
  if constexpr (T == GgmlType::F32) return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  if constexpr (T == GgmlType::F16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));  // BF16
}

// The n - i < 8 elements at p + i, zero-padded to 8.
template <GgmlType T>
inline __m256 load8_tail(const uint8_t* p, int64_t i, int64_t n) {
  alignas(32) uint8_t tmp[32] = {};
  std::memcpy(tmp, p + i * kElemBytes<T>, size_t(n - i) * kElemBytes<T>);
  return load8<T>(tmp);
}

// Widens n elements at src to f32 at dst, zero-padded to n_pad (a multiple of 8).
template <GgmlType T>
void widen(const uint8_t* src, int64_t n, int64_t n_pad, float* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_store_ps(dst + i, load8<T>(src + i * kElemBytes<T>));
  if (i < n) {
    _mm256_store_ps(dst + i, load8_tail<T>(src, i, n));
    i += 8;
  }
  for (; i < n_pad; i += 8) _mm256_store_ps(dst + i, _mm256_setzero_ps());
}

// Decode: R rows x NT (< 4) tokens straight from the weight and activation rows.
template <GgmlType T, int R, int NT>
void float_rows(const MatmulArgs& a, int64_t o, int64_t t0) {
  const int64_t n = a.n_in;
  const int64_t full = n / 8 * 8;
  const uint8_t* wr[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) wr[r] = a.w + size_t(o + r) * a.w_row_bytes;
  const uint8_t* xr[NT];
#pragma GCC unroll 8
  for (int t = 0; t < NT; ++t) xr[t] = a.x + size_t(t0 + t) * a.x_row_bytes;
  __m256 acc[R][NT];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
  RowsAhead pf(a, o, R);
  for (int64_t i = 0; i < full; i += 8) {
    pf.step(R * 8 * kElemBytes<T>);
    __m256 w[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) w[r] = load8<T>(wr[r] + i * kElemBytes<T>);
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) {
      const __m256 x = load8<T>(xr[t] + i * kElemBytes<T>);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r][t] = _mm256_fmadd_ps(w[r], x, acc[r][t]);
    }
  }
  if (full < n) {
    __m256 w[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) w[r] = load8_tail<T>(wr[r], full, n);
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) {
      const __m256 x = load8_tail<T>(xr[t], full, n);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r][t] = _mm256_fmadd_ps(w[r], x, acc[r][t]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) a.y[(t0 + t) * a.ldy + o + r] = hsum(acc[r][t]);
}

// Batches: R widened weight rows (stride n_pad) x NT widened tokens (stride n_pad). The
// tokens' vectors are loaded once per step and each weight vector feeds NT FMAs.
template <int R, int NT>
void float_tile(const float* w, const float* x, int64_t n_pad, float* y, int64_t ldy) {
  __m256 acc[R][NT];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
  for (int64_t i = 0; i < n_pad; i += 8) {
    __m256 xv[NT];
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) xv[t] = _mm256_load_ps(x + t * n_pad + i);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 wv = _mm256_load_ps(w + r * n_pad + i);
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) y[t * ldy + r] = hsum(acc[r][t]);
}

// Grow-only per-thread scratch, 32-byte aligned.
float* scratch(std::vector<float>& v, size_t n) {
  if (v.size() < n + 8) v.resize(n + 8);
  const auto p = reinterpret_cast<uintptr_t>(v.data());
  return reinterpret_cast<float*>((p + 31) & ~uintptr_t(31));
}

// Tokens per block of widened activations: 64 rows of up to ~1.5K f32 stay in L2.
constexpr int64_t kTokenBlock = 64;

// Rows [o0, o1) x all tokens in widened kR-row panels and token blocks.
template <GgmlType T, int kR, int kNT>
void float_panels(const MatmulArgs& a, int64_t o0, int64_t o1, int64_t n, int64_t n_pad) {
  thread_local std::vector<float> xbuf, wbuf;
  float* xf = scratch(xbuf, size_t(std::min(a.n_tokens, kTokenBlock) * n_pad));
  float* wf = scratch(wbuf, size_t(kR * n_pad));
  for (int64_t tb = 0; tb < a.n_tokens; tb += kTokenBlock) {
    const int64_t nt = std::min(kTokenBlock, a.n_tokens - tb);
    for (int64_t t = 0; t < nt; ++t) widen<T>(a.x + size_t(tb + t) * a.x_row_bytes, n, n_pad, xf + t * n_pad);
    for (int64_t o = o0; o < o1; o += kR) {
      const int R = int(std::min<int64_t>(kR, o1 - o));
      for (int r = 0; r < R; ++r) widen<T>(a.w + size_t(o + r) * a.w_row_bytes, n, n_pad, wf + r * n_pad);
      float* y = a.y + tb * a.ldy + o;
      [&]<int... RR>(std::integer_sequence<int, RR...>) {
        ((R == RR + 1 ? over_tokens<kNT>(nt,
                                         [&]<int N>(int64_t t) {
                                           float_tile<RR + 1, N>(wf, xf + t * n_pad, n_pad, y + t * a.ldy,
                                                                 a.ldy);
                                         })
                      : void()),
         ...);
      }
      (std::make_integer_sequence<int, kR>{});
    }
  }
}

template <GgmlType T>
void matmul_float(const MatmulArgs& a, int64_t o0, int64_t o1) {
  if (a.n_tokens < 4) {
    int64_t o = o0;
    for (; o + 4 <= o1; o += 4)
      over_tokens<3>(a.n_tokens, [&]<int N>(int64_t t) { float_rows<T, 4, N>(a, o, t); });
    for (; o < o1; ++o) over_tokens<3>(a.n_tokens, [&]<int N>(int64_t t) { float_rows<T, 1, N>(a, o, t); });
    return;
  }
  const int64_t n = a.n_in, n_pad = (n + 7) / 8 * 8;
  // 4 rows x 3 tokens: 12 accumulators, 3 activations and a weight of the 16 ymm
  // registers; per step 3 activation loads (from L2, the token block) and 4 weight loads
  // (from L1, the panel) feed 12 FMAs. Measured against 6 x 2, 3 x 4, 5 x 2 and 2 x 4
  // (F16, 32-128 tokens): 4 x 3 and 3 x 4 lead by 10-20 %.
  float_panels<T, 4, 3>(a, o0, o1, n, n_pad);
}

}  // namespace

static MatmulRangeFn matmul_fn_avx2(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0: return matmul_q32<GgmlType::Q4_0>;
    case GgmlType::Q4_1: return matmul_q32<GgmlType::Q4_1>;
    case GgmlType::Q5_0: return matmul_q32<GgmlType::Q5_0>;
    case GgmlType::Q5_1: return matmul_q32<GgmlType::Q5_1>;
    case GgmlType::Q8_0: return matmul_q8_0_avx2;
    case GgmlType::F32: return matmul_float<GgmlType::F32>;
    case GgmlType::F16: return matmul_float<GgmlType::F16>;
    case GgmlType::BF16: return matmul_float<GgmlType::BF16>;
    default: return matmul_kquant_fn_avx2(type);  // Q2_K, Q3_K: none (scalar)
  }
}

// The packed kernels read the dense activation views (K-quants' included).
constinit const MatmulKernels kMatmulAvx2{matmul_fn_avx2, matmul_packed_fn_avx2, matmul_packed_fn_avx2};

}  // namespace kvserve::detail

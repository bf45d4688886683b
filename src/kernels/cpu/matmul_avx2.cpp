// AVX2 + FMA kernels (for CPUs without AVX-512): the 32-element block types against
// Q8_0/Q8_1 activations, and F32/F16/BF16. Each weight block is unpacked once and dotted
// with up to 4 tokens. Without VNNI, the int8 dot product is vpmaddubsw (unsigned x
// signed, pairs to int16) + vpmaddwd; signed weights go through the sign trick
// (|w| x sign(x, w)) so the int16 pair sums cannot saturate. K-quants: see
// matmul_kquant_avx2.cpp.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "core/half.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/matmul_q32_layout.h"

namespace kvserve::detail {
namespace {

// The 32 quants of one block as bytes: signed (q - zero point) for Q4_0/Q5_0/Q8_0,
// unsigned for Q4_1/Q5_1.
template <GgmlType T>
inline __m256i unpack(const uint8_t* blk) {
  constexpr Q32Layout L = kLayout<T>;
  if constexpr (!L.nibbles) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + L.qs));
  } else {
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
}

// Sum of w[i] * x[i] in 8 int32 lanes; kSigned selects the sign trick.
template <bool kSigned>
inline __m256i dot32(__m256i w, __m256i x) {
  __m256i p;
  if constexpr (kSigned)
    p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
  else
    p = _mm256_maddubs_epi16(w, x);
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

template <GgmlType T, int NT>
void q32_row(const MatmulArgs& a, int64_t o, int64_t t0) {
  constexpr Q32Layout L = kLayout<T>;
  constexpr bool kMin = L.m >= 0;
  const int64_t nb = a.n_in / 32;
  const uint8_t* row = a.w + size_t(o) * a.w_row_bytes;
  __m256 acc[NT];
  float mins[NT] = {};
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + b * L.bytes;
    uint16_t dh;
    std::memcpy(&dh, blk, 2);
    const float dw = fp16_to_fp32(dh);
    float mw = 0;
    if constexpr (kMin) {
      uint16_t mh;
      std::memcpy(&mh, blk + L.m, 2);
      mw = fp16_to_fp32(mh);
    }
    const __m256i w = unpack<T>(blk);
    for (int t = 0; t < NT; ++t) {
      const int64_t xo = (t0 + t) * nb + b;
      const __m256i x =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.xq + (t0 + t) * a.n_in + b * 32));
      const __m256i p = dot32<!kMin>(w, x);
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * a.xd[xo]), acc[t]);
      if constexpr (kMin) mins[t] += mw * a.xs[xo];
    }
  }
  for (int t = 0; t < NT; ++t) {
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc[t]), _mm256_extractf128_ps(acc[t], 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    const __m128 s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
    a.y[(t0 + t) * a.ldy + o] = _mm_cvtss_f32(s1) + mins[t];
  }
}

inline float hsum(__m256 v) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

// 8 float-type elements from p[i..), zero past n.
template <GgmlType T>
inline __m256 load8(const uint8_t* p, int64_t i, int64_t n) {
  alignas(32) uint8_t tmp[32] = {};
  constexpr int es = T == GgmlType::F32 ? 4 : 2;
  const uint8_t* src = p + i * es;
  if (i + 8 > n) {
    std::memcpy(tmp, src, size_t(n - i) * es);
    src = tmp;
  }
  if constexpr (T == GgmlType::F32) return _mm256_loadu_ps(reinterpret_cast<const float*>(src));
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
  if constexpr (T == GgmlType::F16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));  // BF16
}

template <GgmlType T, int R, int NT>
void float_tile(const MatmulArgs& a, int64_t o, int64_t t0) {
  const int64_t n = a.n_in;
  __m256 acc[R][NT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
  for (int64_t i = 0; i < n; i += 8) {
    __m256 w[R];
    for (int r = 0; r < R; ++r) w[r] = load8<T>(a.w + size_t(o + r) * a.w_row_bytes, i, n);
    for (int t = 0; t < NT; ++t) {
      const __m256 x = load8<T>(a.x + size_t(t0 + t) * a.x_row_bytes, i, n);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm256_fmadd_ps(w[r], x, acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) a.y[(t0 + t) * a.ldy + o + r] = hsum(acc[r][t]);
}

// Calls Tile<NT>(a, o, t) over all tokens in tiles of 4 and a remainder.
template <template <int> class Tile>
void over_tokens(const MatmulArgs& a, int64_t o) {
  int64_t t = 0;
  for (; t + 4 <= a.n_tokens; t += 4) Tile<4>::run(a, o, t);
  switch (a.n_tokens - t) {
    case 3: Tile<3>::run(a, o, t); break;
    case 2: Tile<2>::run(a, o, t); break;
    case 1: Tile<1>::run(a, o, t); break;
    default: break;
  }
}

template <GgmlType T>
struct Q32Tiles {
  template <int NT>
  struct Tile {
    static void run(const MatmulArgs& a, int64_t o, int64_t t) { q32_row<T, NT>(a, o, t); }
  };
};

template <GgmlType T, int R>
struct FloatTiles {
  template <int NT>
  struct Tile {
    static void run(const MatmulArgs& a, int64_t o, int64_t t) { float_tile<T, R, NT>(a, o, t); }
  };
};

template <GgmlType T>
void matmul_q32(const MatmulArgs& a, int64_t o0, int64_t o1) {
  for (int64_t o = o0; o < o1; ++o) over_tokens<Q32Tiles<T>::template Tile>(a, o);
}

template <GgmlType T>
void matmul_float(const MatmulArgs& a, int64_t o0, int64_t o1) {
  int64_t o = o0;
  for (; o + 2 <= o1; o += 2) over_tokens<FloatTiles<T, 2>::template Tile>(a, o);
  for (; o < o1; ++o) over_tokens<FloatTiles<T, 1>::template Tile>(a, o);
}

}  // namespace

MatmulRangeFn matmul_fn_avx2(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0: return matmul_q32<GgmlType::Q4_0>;
    case GgmlType::Q4_1: return matmul_q32<GgmlType::Q4_1>;
    case GgmlType::Q5_0: return matmul_q32<GgmlType::Q5_0>;
    case GgmlType::Q5_1: return matmul_q32<GgmlType::Q5_1>;
    case GgmlType::Q8_0: return matmul_q32<GgmlType::Q8_0>;
    case GgmlType::F32: return matmul_float<GgmlType::F32>;
    case GgmlType::F16: return matmul_float<GgmlType::F16>;
    case GgmlType::BF16: return matmul_float<GgmlType::BF16>;
    default: return matmul_kquant_fn_avx2(type);  // Q2_K, Q3_K: none (scalar)
  }
}

}  // namespace kvserve::detail

// AVX-512 F16 matmul (fp16 weights, activations rounded to fp16 as llama.cpp does).
// fp16 values widen to f32 exactly, so widening either operand (a weight panel once into
// a per-thread buffer, tokens as they are loaded) and running plain f32 FMAs performs,
// per (row, token), the very same operations in the same order as the one-token path:
//   acc = fma(w, x, acc) over 16-lane vectors from i = 0 (zeros past n_in),
//   then the 16 lanes summed in one fixed tree (lane i + lane i+8, then +4, +2, +1).
// The GEMV sums one accumulator with hsum16; tiles sum 16 (or 8) at once with shuffles
// (reduce16, reduce8), adding the same operands in the same order. Hence batch
// invariance: a token's row is bit-identical whatever n_tokens, chunking or threads.
// Multi-token work: 6-row x 4-token register tiles (f16_tile), over 768-column chunks
// (f16_panel) of weight panels (f16_panels) within token blocks (matmul_f16_avx512).
// GCC 12 reports its own _mm512_undefined_* placeholders as uninitialized (GCC bug
// 105593, fixed in 13) wherever AVX-512 intrinsics inline.
#pragma GCC diagnostic ignored "-Wuninitialized"
#if defined(__GNUC__) && !defined(__clang__)  // clang has no such warning (and warns of the name)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/cpu/isa_dispatch.h"

namespace kvserve::detail {
namespace {

// ---- The fixed summation tree ----

// Sum of the 16 lanes: s[j] = v[j] + v[j+8], t[j] = s[j] + s[j+4], u[j] = t[j] + t[j+2],
// u[0] + u[1]; the lower lane is always the first operand.
inline float hsum16(__m512 v) {
  const __m256 s = _mm256_add_ps(_mm512_castps512_ps256(v),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  const __m128 t = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  const __m128 u = _mm_add_ps(t, _mm_movehl_ps(t, t));
  return _mm_cvtss_f32(_mm_add_ss(u, _mm_movehdup_ps(u)));
}

// The four tree levels for 16 (or 8) accumulators at once. Level 1 halves 16 vectors
// to 8, each holding two accumulators' 8 partial sums, and so on; after level 4,
// lane 4 * q + j holds the sum of a[4 * j + q].
inline __m512 tree_level1(__m512 a, __m512 b) {  // [a: s0..7, b: s0..7]
  return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
}
inline __m512 tree_level2(__m512 a, __m512 b) {  // [a0 t, a1 t, b0 t, b1 t]
  return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xdd));
}
inline __m512 tree_level3(__m512 a, __m512 b) {  // per 128-bit lane [a u0 u1, b u0 u1]
  return _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x44), _mm512_shuffle_ps(a, b, 0xee));
}
inline __m512 tree_level4(__m512 a, __m512 b) {  // per 128-bit lane [a sum, a sum, b sum, b sum]
  return _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x88), _mm512_shuffle_ps(a, b, 0xdd));
}

// Sums of a[0..15]: lane 4 * q + j = sum of a[4 * j + q].
inline __m512 reduce16(const __m512* a) {
  __m512 b[8], c[4];
  for (int m = 0; m < 8; ++m) b[m] = tree_level1(a[2 * m], a[2 * m + 1]);
  for (int m = 0; m < 4; ++m) c[m] = tree_level2(b[2 * m], b[2 * m + 1]);
  return tree_level4(tree_level3(c[0], c[1]), tree_level3(c[2], c[3]));
}

// Sums of a[0..7]: lanes 4 * q + j and 4 * q + j + 2 = sum of a[4 * j + q] (j < 2).
inline __m512 reduce8(const __m512* a) {
  __m512 b[4], c[2];
  for (int m = 0; m < 4; ++m) b[m] = tree_level1(a[2 * m], a[2 * m + 1]);
  for (int m = 0; m < 2; ++m) c[m] = tree_level2(b[2 * m], b[2 * m + 1]);
  const __m512 d = tree_level3(c[0], c[1]);
  return tree_level4(d, d);
}

// ---- Widening ----

// Grow-only per-thread scratch, 64-byte aligned.
float* f16_scratch(std::vector<float>& v, size_t n) {
  if (v.size() < n + 16) v.resize(n + 16);
  auto p = reinterpret_cast<uintptr_t>(v.data());
  return reinterpret_cast<float*>((p + 63) & ~uintptr_t(63));
}

// Widens fp16 rows [n_rows, n_in] (stride src_stride bytes) to f32 rows of n_pad
// elements, zero-filled past n_in.
void f16_widen(const uint8_t* src, size_t src_stride, int64_t n_rows, int64_t n_in, int64_t n_pad,
               float* dst) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const auto* s = reinterpret_cast<const uint16_t*>(src + size_t(r) * src_stride);
    float* d = dst + r * n_pad;
    int64_t i = 0;
    for (; i + 16 <= n_in; i += 16)
      _mm512_store_ps(d + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i))));
    for (; i < n_pad; i += 16) {
      const __mmask16 m = i < n_in ? __mmask16((1u << (n_in - i)) - 1) : __mmask16(0);
      _mm512_store_ps(d + i, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, s + i)));
    }
  }
}

// ---- One token (decode) ----

// Bandwidth-bound, so R rows stream at once while the rows kPrefetchRows ahead (the next
// 8-row group) are prefetched at the rate they are consumed. Measured at 2 threads,
// f16 decode: 8 rows ahead +6 % over 16; 4, 6, 12 rows or a fixed 8-16 KiB are slower,
// and so is prefetching into L2 only.
constexpr int64_t kPrefetchRows = 8;

template <int R>
void f16_gemv_rows(const MatmulArgs& a, const float* xf, int64_t o, const uint8_t* w_end) {
  const int64_t n = a.n_in;
  const uint8_t* w0 = a.w + size_t(o) * a.w_row_bytes;
  const uint16_t* wr[R];
  for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const uint16_t*>(w0 + size_t(r) * a.w_row_bytes);
  const uint8_t* pf = w0 + size_t(kPrefetchRows) * a.w_row_bytes;
  const uint8_t* pf_end = std::min(w_end, pf + size_t(R) * a.w_row_bytes);
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    // R rows consume 32 * R bytes per step: prefetch as many ahead.
    for (int k = 0; k < R / 2; ++k, pf += 64)
      if (pf < pf_end) _mm_prefetch(reinterpret_cast<const char*>(pf), _MM_HINT_T0);
    const __m512 x = _mm512_load_ps(xf + i);
    for (int r = 0; r < R; ++r)
      acc[r] = _mm512_fmadd_ps(
          _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr[r] + i))), x, acc[r]);
  }
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1);
    const __m512 x = _mm512_load_ps(xf + i);
    for (int r = 0; r < R; ++r)
      acc[r] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, wr[r] + i)), x, acc[r]);
  }
  for (int r = 0; r < R; ++r) a.y[o + r] = hsum16(acc[r]);
}

// ---- Several tokens ----

// Sums tile accumulators acc[r][t] into y[t * ldy + r]: 4 rows x 4 tokens per reduce16,
// 2 rows x 4 tokens or 4 rows x 2 tokens per reduce8, the rest one by one.
template <int R, int NT>
inline void f16_tile_store(__m512 (&acc)[R][NT], float* y, int64_t ldy) {
  int r0 = 0;
  for (; r0 + 4 <= R; r0 += 4) {
    int t0 = 0;
    for (; t0 + 4 <= NT; t0 += 4) {
      __m512 a[16];  // a[4 * r + t]: lane 4 * t + r
      for (int r = 0; r < 4; ++r)
        for (int t = 0; t < 4; ++t) a[4 * r + t] = acc[r0 + r][t0 + t];
      const __m512 s = reduce16(a);
      _mm_storeu_ps(y + (t0 + 0) * ldy + r0, _mm512_castps512_ps128(s));
      _mm_storeu_ps(y + (t0 + 1) * ldy + r0, _mm512_extractf32x4_ps(s, 1));
      _mm_storeu_ps(y + (t0 + 2) * ldy + r0, _mm512_extractf32x4_ps(s, 2));
      _mm_storeu_ps(y + (t0 + 3) * ldy + r0, _mm512_extractf32x4_ps(s, 3));
    }
    if (NT - t0 == 2) {
      __m512 a[8];  // a[4 * t + r]: lane 4 * r + t
      for (int t = 0; t < 2; ++t)
        for (int r = 0; r < 4; ++r) a[4 * t + r] = acc[r0 + r][t0 + t];
      const __m512 s = _mm512_permutexvar_ps(
          _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0), reduce8(a));
      _mm_storeu_ps(y + (t0 + 0) * ldy + r0, _mm512_castps512_ps128(s));
      _mm_storeu_ps(y + (t0 + 1) * ldy + r0, _mm512_extractf32x4_ps(s, 1));
    } else {
      for (int r = 0; r < 4; ++r)
        for (int t = t0; t < NT; ++t) y[t * ldy + r0 + r] = hsum16(acc[r0 + r][t]);
    }
  }
  if (R - r0 == 2 && NT == 4) {
    __m512 a[8];  // a[4 * r + t]: lanes 4 * t + r and 4 * t + r + 2
    for (int r = 0; r < 2; ++r)
      for (int t = 0; t < 4; ++t) a[4 * r + t] = acc[r0 + r][t];
    const __m512 s = reduce8(a);
    _mm_storel_pi(reinterpret_cast<__m64*>(y + 0 * ldy + r0), _mm512_castps512_ps128(s));
    _mm_storel_pi(reinterpret_cast<__m64*>(y + 1 * ldy + r0), _mm512_extractf32x4_ps(s, 1));
    _mm_storel_pi(reinterpret_cast<__m64*>(y + 2 * ldy + r0), _mm512_extractf32x4_ps(s, 2));
    _mm_storel_pi(reinterpret_cast<__m64*>(y + 3 * ldy + r0), _mm512_extractf32x4_ps(s, 3));
    return;
  }
  for (int r = r0; r < R; ++r)
    for (int t = 0; t < NT; ++t) y[t * ldy + r] = hsum16(acc[r][t]);
}

// Prefetches [p, end) into L2 a few lines per call, spreading the next panels' weight
// reads over the current panel's compute.
struct Prefetcher {
  const char* p;
  const char* end;
  int lines;  // per step
  void step() {
    for (int k = 0; k < lines && p < end; ++k, p += 64) _mm_prefetch(p, _MM_HINT_T1);
  }
};

// The columns of one tile call: full 16-column steps [i0, i1), then, in the last chunk,
// a masked step at i1 for the n_in % 16 tail (zeros past n_in, as in the GEMV).
struct Cols {
  int64_t i0, i1;
  __mmask16 tail;
};

// Weight loads from a widened panel (zero-padded to n_pad) or, for few tokens, straight
// from the fp16 rows; the tail step's lanes past n_in are zeros either way.
inline __m512 load_w(const float* p) {
  return _mm512_load_ps(p);
}
inline __m512 load_w(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512 load_w_tail(const float* p, __mmask16) {
  return _mm512_load_ps(p);
}
inline __m512 load_w_tail(const uint16_t* p, __mmask16 m) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

// A tile of R weight rows (w: [R, ldw], f32 or fp16) x NT fp16 tokens (x: [NT, ldx]), the
// tokens widened as they are loaded (cheaper than a widened copy: half the cache
// traffic, and the conversions issue beside the FMAs). Long rows run in column chunks:
// the accumulators of a chunk that is not the first start from `part`, and those of one
// that is not the last go back there (exact f32 values, so the order of operations is
// unchanged).
template <int R, int NT, bool kFirst, bool kLast, bool kTail, class W>
void f16_tile(const W* wf, int64_t ldw, const uint16_t* x, int64_t ldx, Cols c, __m512* part, float* y,
              int64_t ldy) {
  __m512 acc[R][NT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = kFirst ? _mm512_setzero_ps() : part[r * NT + t];
  // (Written out twice, the tail under a template flag: a lambda or a run-time condition
  // makes GCC keep acc in memory.)
  for (int64_t i = c.i0; i < c.i1; i += 16) {
    __m512 w[R];
    for (int r = 0; r < R; ++r) w[r] = load_w(wf + r * ldw + i);
    for (int t = 0; t < NT; ++t) {
      const __m512 xv =
          _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + t * ldx + i)));
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(w[r], xv, acc[r][t]);
    }
  }
  if constexpr (kTail) {
    {
      __m512 w[R];
      for (int r = 0; r < R; ++r) w[r] = load_w_tail(wf + r * ldw + c.i1, c.tail);
      for (int t = 0; t < NT; ++t) {
        const __m512 xv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(c.tail, x + t * ldx + c.i1));
        for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(w[r], xv, acc[r][t]);
      }
    }
  }
  if constexpr (kLast) {
    f16_tile_store<R, NT>(acc, y, ldy);
  } else {
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < NT; ++t) part[r * NT + t] = acc[r][t];
  }
}

// Tiles of kR rows x kNT tokens: 24 accumulators + 6 weights + 1 activation of the 32
// zmm registers, 10 loads per 24 FMAs; 4 tokens make whole 4 x 4 reductions.
constexpr int kR = 6;
constexpr int kNT = 4;
// Up to this many tokens (twice as many for rows of several chunks), tiles read the fp16
// weight rows directly: widening a panel costs more than it saves when few tokens reuse it.
constexpr int64_t kDirectMaxTokens = 16;
// Columns per chunk: a chunk of a 6-row panel (18 KiB at 768) stays in L1 (48 KiB)
// while the tiles stream the tokens from L2.
constexpr int64_t kChunk = 768;

// The token tiles of one column chunk.
template <int R, bool kFirst, bool kLast, bool kTail, class W>
void f16_chunk(const W* wf, int64_t ldw, const uint16_t* x, int64_t ldx, int64_t nt, Cols c, float* y,
               int64_t ldy, __m512* part, Prefetcher& pf) {
  int64_t t = 0;
  for (; t + kNT <= nt; t += kNT) {
    pf.step();
    f16_tile<R, kNT, kFirst, kLast, kTail>(wf, ldw, x + t * ldx, ldx, c, part + t * R, y + t * ldy, ldy);
  }
  const uint16_t* xt = x + t * ldx;
  float* yt = y + t * ldy;
  __m512* pt = part + t * R;
  switch (nt - t) {
    case 3: f16_tile<R, 3, kFirst, kLast, kTail>(wf, ldw, xt, ldx, c, pt, yt, ldy); break;
    case 2: f16_tile<R, 2, kFirst, kLast, kTail>(wf, ldw, xt, ldx, c, pt, yt, ldy); break;
    case 1: f16_tile<R, 1, kFirst, kLast, kTail>(wf, ldw, xt, ldx, c, pt, yt, ldy); break;
    default: break;
  }
  pf.step();
}

// One panel of R rows (w: [R, ldw]) times nt tokens, chunk by chunk.
template <int R, class W>
void f16_panel(const W* wf, int64_t n_in, int64_t ldw, const uint16_t* x, int64_t ldx, int64_t nt, float* y,
               int64_t ldy, __m512* part, Prefetcher& pf) {
  const int64_t n_full = n_in / 16 * 16;
  const auto tail = __mmask16((1u << (n_in % 16)) - 1);
  auto last = [&](int64_t i0, auto first) {
    const Cols c{i0, n_full, tail};
    if (tail)
      f16_chunk<R, first(), true, true>(wf, ldw, x, ldx, nt, c, y, ldy, part, pf);
    else
      f16_chunk<R, first(), true, false>(wf, ldw, x, ldx, nt, c, y, ldy, part, pf);
  };
  if (n_full <= kChunk) {
    last(0, std::true_type{});
    return;
  }
  f16_chunk<R, true, false, false>(wf, ldw, x, ldx, nt, Cols{0, kChunk, 0}, y, ldy, part, pf);
  int64_t i0 = kChunk;
  for (; i0 + kChunk < n_full; i0 += kChunk)
    f16_chunk<R, false, false, false>(wf, ldw, x, ldx, nt, Cols{i0, i0 + kChunk, 0}, y, ldy, part, pf);
  last(i0, std::false_type{});
}

// Rows [o, o1) in panels of R while whole ones fit; returns the first row left. Weights
// are prefetched up to row o_end.
template <int R>
int64_t f16_panels(const MatmulArgs& a, int64_t o, int64_t o1, int64_t o_end, int64_t t0, int64_t nt,
                   int64_t n_pad, float* wf, __m512* part) {
  // Prefetch two panels ahead, spread over this panel's token tiles.
  constexpr int64_t kAhead = 2;
  const size_t panel_bytes = size_t(R) * a.w_row_bytes;
  const char* w_end = reinterpret_cast<const char*>(a.w + size_t(o_end) * a.w_row_bytes);
  const int64_t steps = (nt / kNT + 1) * ((n_pad + kChunk - 1) / kChunk);
  const int lines = int((int64_t(panel_bytes / 64) + steps) / steps) + 1;
  const int64_t ldx = int64_t(a.x_row_bytes / 2);
  const auto* x = reinterpret_cast<const uint16_t*>(a.x) + t0 * ldx;
  for (; o + R <= o1; o += R) {
    const uint8_t* w = a.w + size_t(o) * a.w_row_bytes;
    const char* next = reinterpret_cast<const char*>(w) + kAhead * panel_bytes;
    Prefetcher pf{next, std::min(w_end, next + panel_bytes), lines};
    float* y = a.y + t0 * a.ldy + o;
    if (nt <= (n_pad > kChunk ? 2 : 1) * kDirectMaxTokens) {
      f16_panel<R>(reinterpret_cast<const uint16_t*>(w), a.n_in, int64_t(a.w_row_bytes / 2), x, ldx, nt, y,
                   a.ldy, part, pf);
    } else {
      f16_widen(w, a.w_row_bytes, R, a.n_in, n_pad, wf);
      f16_panel<R>(static_cast<const float*>(wf), a.n_in, n_pad, x, ldx, nt, y, a.ldy, part, pf);
    }
  }
  return o;
}

}  // namespace

void matmul_f16_avx512(const MatmulArgs& a, int64_t o0, int64_t o1) {
  const int64_t n = a.n_in;
  const int64_t n_pad = (n + 15) / 16 * 16;
  thread_local std::vector<float> xbuf, wbuf, pbuf;
  if (a.n_tokens == 1) {
    float* xf = f16_scratch(xbuf, size_t(n_pad));
    f16_widen(a.x, a.x_row_bytes, 1, n, n_pad, xf);
    const uint8_t* w_end = a.w + size_t(o1) * a.w_row_bytes;
    int64_t o = o0;
    for (; o + 8 <= o1; o += 8) f16_gemv_rows<8>(a, xf, o, w_end);
    for (; o < o1; ++o) f16_gemv_rows<1>(a, xf, o, w_end);
    return;
  }
  // Each token block re-widens the weight rows (a small cost next to its FMAs) a panel at
  // a time into L1, while its fp16 activations (up to 384 KiB) stay in L2.
  const int64_t tok_block = std::clamp<int64_t>((384 << 10) / int64_t(a.x_row_bytes) / kNT * kNT, kNT, 512);
  const int64_t max_nt = std::min(a.n_tokens, tok_block);
  float* wf = f16_scratch(wbuf, size_t(kR * n_pad));
  // Partial accumulators of a panel's tiles between column chunks: [max_nt, kR] vectors.
  auto* part = reinterpret_cast<__m512*>(f16_scratch(pbuf, size_t(max_nt * kR * 16)));
  for (int64_t t0 = 0; t0 < a.n_tokens; t0 += tok_block) {
    const int64_t nt = std::min(tok_block, a.n_tokens - t0);
    // Rows 6k + 2 (the thread chunks are multiples of 16) as 6(k - 1) + 4 + 4: a 4-row tile
    // runs faster than a 2-row one.
    const int64_t rows = o1 - o0;
    const int64_t o6 = o0 + (rows % kR == 2 && rows > kR ? rows - 8 : rows) / kR * kR;
    int64_t o = f16_panels<kR>(a, o0, o6, o1, t0, nt, n_pad, wf, part);
    o = f16_panels<4>(a, o, o1, o1, t0, nt, n_pad, wf, part);
    o = f16_panels<2>(a, o, o1, o1, t0, nt, n_pad, wf, part);
    f16_panels<1>(a, o, o1, o1, t0, nt, n_pad, wf, part);
  }
}

}  // namespace kvserve::detail

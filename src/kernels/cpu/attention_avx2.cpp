// attention_paged with AVX2/FMA vector ops, and the F16C store of new K/V (this file is
// compiled with -mavx2 -mfma -mf16c).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/attention_impl.h"
#include "kernels/cpu/attention_prefetch.h"
#include "kernels/cpu/exp_avx2.h"
#include "kernels/cpu/isa_dispatch.h"

namespace kvserve {
namespace {
struct Avx2Ops {
  static float dot(const float* a, const float* b, int n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
      acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc0 = _mm256_add_ps(acc0, acc1);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc0), _mm256_extractf128_ps(acc0, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    float r = _mm_cvtss_f32(s);
    for (; i < n; ++i) r += a[i] * b[i];
    return r;
  }
  static void axpy(float* y, float a, const float* x, int n) {
    const __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; ++i) y[i] += a * x[i];
  }
  static void scale(float* y, float a, int n) {
    const __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(va, _mm256_loadu_ps(y + i)));
    for (; i < n; ++i) y[i] *= a;
  }
  static void to_f32(const void* src, KvDtype t, float* dst, int n) {
    if (t == KvDtype::F32) {
      std::memcpy(dst, src, sizeof(float) * size_t(n));
      return;
    }
    const auto* h = static_cast<const uint16_t*>(src);
    int i = 0;
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
    for (; i < n; ++i) dst[i] = _cvtsh_ss(h[i]);
  }
};

// 8 floats -> 8 halves, round to nearest even.
inline __m128i to_half8(const float* x) {
  return _mm256_cvtps_ph(_mm256_loadu_ps(x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

// ---- The AVX2 kernel for head_dim % 8 == 0, head_dim <= 256 ----
//
// Keys in lanes: K is stored transposed ([head_dim][block_size]), so a chunk of up to 16
// keys of one dim is two vectors, and a row's 16 scores are head_dim broadcast FMAs per
// vector (no horizontal sums); the chunk's K and V are widened once to f32 for all the
// rows of the call. Online softmax per chunk with a vector exp; the output row is
// rescaled and accumulated once per chunk. A row's operations depend only on its own
// position and the keys, not on the other rows, the row tile or the call (batch
// invariance).

constexpr int kChunkKeys = 16;
constexpr int kMaxHd = 256;
constexpr int kRows = 16;  // rows per tile: the chunk is widened once for all of them

inline float hmax8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

// 8 stored elements from p as f32, only the first n_live lanes read (the rest 0).
// Scaled types (int8, fp8) come out times `scale`, lane by lane: for fp8 the caller's
// scale is 256x the stored one, as its codes widen through F16 to value * 2^-8 (see
// core/fp8.h), so either way the lane is code value * stored scale, rounded once.
template <KvDtype T>
inline __m256 load8(const void* p, int n_live, __m256 scale) {
  if constexpr (T == KvDtype::F32) {
    if (n_live >= 8) return _mm256_loadu_ps(static_cast<const float*>(p));
    alignas(32) float tmp[8] = {};
    std::memcpy(tmp, p, sizeof(float) * size_t(n_live));
    return _mm256_load_ps(tmp);
  } else {
    const size_t es = kv_dtype_size(T);
    alignas(16) uint8_t raw[16] = {};
    const void* src = p;
    if (n_live < 8) {
      std::memcpy(raw, p, es * size_t(n_live));
      src = raw;
    }
    if constexpr (T == KvDtype::F16) {
      return _mm256_cvtph_ps(_mm_loadu_si128(static_cast<const __m128i*>(src)));
    } else if constexpr (T == KvDtype::BF16) {
      const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(static_cast<const __m128i*>(src)));
      return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
    } else if constexpr (T == KvDtype::Int8) {
      const __m128i b = _mm_loadl_epi64(static_cast<const __m128i*>(src));
      return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)), scale);
    } else {  // fp8 E4M3: sign to bit 15, exponent and mantissa to bits 7..14 of a half
      const __m128i c = _mm_cvtepu8_epi16(_mm_loadl_epi64(static_cast<const __m128i*>(src)));
      const __m128i h = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(c, _mm_set1_epi16(0x80)), 8),
                                     _mm_slli_epi16(_mm_and_si128(c, _mm_set1_epi16(0x7f)), 7));
      return _mm256_mul_ps(_mm256_cvtph_ps(h), scale);
    }
  }
}

// The scales of n (<= 8) slots from p (f32, unaligned), times mul; lanes past n are 0.
inline __m256 load_scales(const char* p, int n, float mul) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i live = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
  return _mm256_mul_ps(_mm256_maskload_ps(reinterpret_cast<const float*>(p), live), _mm256_set1_ps(mul));
}

// The state of one row: scaled query, running max and sum, output (the accumulator).
struct Row {
  const float* q;
  float* out;
  float m, l;
  int64_t first, last;  // first (window start) and last (causal limit) visible key positions
};

// N output vectors of a row (out, 8 floats each): rescaled by cv, then p[j] * value row j
// added for keys j0 .. nk - 1 in order. N independent accumulators keep the FMA pipes busy
// (one or two chains wait on each FMA's latency); each element's operations are the same
// whatever N is.
template <int N>
inline void accumulate_v(float* out, __m256 cv, const float* p, const float* vt, int j0, int nk) {
  __m256 o[N];
#pragma GCC unroll 8
  for (int n = 0; n < N; ++n) o[n] = _mm256_mul_ps(_mm256_loadu_ps(out + 8 * n), cv);
  for (int j = j0; j < nk; ++j) {  // never the keys before the window: they may be NaN
    const __m256 pj = _mm256_broadcast_ss(p + j);
#pragma GCC unroll 8
    for (int n = 0; n < N; ++n) o[n] = _mm256_fmadd_ps(pj, _mm256_load_ps(vt + j * kMaxHd + 8 * n), o[n]);
  }
#pragma GCC unroll 8
  for (int n = 0; n < N; ++n) _mm256_storeu_ps(out + 8 * n, o[n]);
}

// Scores of G rows (1 or 2) against a chunk's 16 keys (kt [hd][16]): per row, even and
// odd dims in separate chains summed at the end (a fixed order, whatever G). Two rows at
// once share the key loads and keep eight FMA chains in flight.
template <int G>
inline void chunk_scores(const Row* r, const float* kt, int hd, __m256 (*s)[2]) {
  __m256 e0[G], e1[G], o0[G], o1[G];
#pragma GCC unroll 2
  for (int g = 0; g < G; ++g) e0[g] = e1[g] = o0[g] = o1[g] = _mm256_setzero_ps();
  for (int d = 0; d < hd; d += 2) {
    const __m256 k0e = _mm256_load_ps(kt + d * kChunkKeys), k1e = _mm256_load_ps(kt + d * kChunkKeys + 8);
    const __m256 k0o = _mm256_load_ps(kt + (d + 1) * kChunkKeys),
                 k1o = _mm256_load_ps(kt + (d + 1) * kChunkKeys + 8);
#pragma GCC unroll 2
    for (int g = 0; g < G; ++g) {
      const __m256 qe = _mm256_broadcast_ss(r[g].q + d), qo = _mm256_broadcast_ss(r[g].q + d + 1);
      e0[g] = _mm256_fmadd_ps(qe, k0e, e0[g]);
      e1[g] = _mm256_fmadd_ps(qe, k1e, e1[g]);
      o0[g] = _mm256_fmadd_ps(qo, k0o, o0[g]);
      o1[g] = _mm256_fmadd_ps(qo, k1o, o1[g]);
    }
  }
#pragma GCC unroll 2
  for (int g = 0; g < G; ++g) {
    s[g][0] = _mm256_add_ps(e0[g], o0[g]);
    s[g][1] = _mm256_add_ps(e1[g], o1[g]);
  }
}

// One chunk of nc <= 16 keys at positions pos0.. for one row, given its scores s0, s1
// (chunk_scores) and the chunk's values vt [16][hd] widened (keys past nc are masked). The row sees keys [j0,
// nk) of it; a chunk it sees none of leaves it untouched, so its steps are the same in any call.
inline void row_chunk(Row& r, __m256 s0, __m256 s1, const float* vt, int nc, int64_t pos0, int hd) {
  const int64_t visible = r.last + 1 - pos0;
  const int nk = visible < nc ? int(visible) : nc;
  const int j0 = int(std::clamp<int64_t>(r.first - pos0, 0, nc));
  if (nk <= j0) return;
  // Keys the row cannot see (lanes outside [j0, nk)): -inf (probability 0).
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256 ninf = _mm256_set1_ps(-INFINITY);
  const __m256i hi = _mm256_set1_epi32(nk), lo = _mm256_set1_epi32(j0 - 1), eight = _mm256_set1_epi32(8);
  const __m256i lane1 = _mm256_add_epi32(lane, eight);
  const __m256i live0 = _mm256_and_si256(_mm256_cmpgt_epi32(hi, lane), _mm256_cmpgt_epi32(lane, lo));
  const __m256i live1 = _mm256_and_si256(_mm256_cmpgt_epi32(hi, lane1), _mm256_cmpgt_epi32(lane1, lo));
  s0 = _mm256_blendv_ps(ninf, s0, _mm256_castsi256_ps(live0));
  s1 = _mm256_blendv_ps(ninf, s1, _mm256_castsi256_ps(live1));
  const float m_new = std::max(r.m, hmax8(_mm256_max_ps(s0, s1)));
  const __m256 mv = _mm256_set1_ps(m_new);
  const float corr = _mm256_cvtss_f32(exp256(_mm256_set1_ps(r.m - m_new)));  // 0 at the first chunk
  const __m256 p0 = exp256(_mm256_sub_ps(s0, mv)), p1 = exp256(_mm256_sub_ps(s1, mv));
  r.l = r.l * corr + hsum8(_mm256_add_ps(p0, p1));
  r.m = m_new;
  alignas(32) float p[kChunkKeys];
  _mm256_store_ps(p, p0);
  _mm256_store_ps(p + 8, p1);
  const __m256 cv = _mm256_set1_ps(corr);
  for (int c = 0; c < hd; c += 64) {  // up to 8 output vectors at a time (hd % 8 == 0)
    const int nv = hd - c >= 64 ? 8 : (hd - c) / 8;
    switch (nv) {
      case 8: accumulate_v<8>(r.out + c, cv, p, vt + c, j0, nk); break;
      case 7: accumulate_v<7>(r.out + c, cv, p, vt + c, j0, nk); break;
      case 6: accumulate_v<6>(r.out + c, cv, p, vt + c, j0, nk); break;
      case 5: accumulate_v<5>(r.out + c, cv, p, vt + c, j0, nk); break;
      case 4: accumulate_v<4>(r.out + c, cv, p, vt + c, j0, nk); break;
      case 3: accumulate_v<3>(r.out + c, cv, p, vt + c, j0, nk); break;
      case 2: accumulate_v<2>(r.out + c, cv, p, vt + c, j0, nk); break;
      default: accumulate_v<1>(r.out + c, cv, p, vt + c, j0, nk); break;
    }
  }
}

template <KvDtype T>
void attention_fast_avx2(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                         const PagedKvHead& kv, int head_dim, float scale, int64_t key_begin, int64_t key_end,
                         float* out, int64_t out_stride, float* m_out, float* l_out) {
  const int bs = kv.block_size;
  const int n_flat = n_rows * n_group;
  constexpr size_t es = T == KvDtype::F32 ? 4 : T == KvDtype::F16 || T == KvDtype::BF16 ? 2 : 1;
  constexpr bool scaled = T == KvDtype::Int8 || T == KvDtype::Fp8;
  const int64_t scale_off = int64_t(bs) * head_dim;  // bytes from a block's K (V) to its scales
  constexpr float scale_mul = T == KvDtype::Fp8 ? 256.0f : 1.0f;
  alignas(32) float qs[kRows][kMaxHd];
  alignas(32) float kt[kMaxHd * kChunkKeys];  // [hd][16]
  alignas(32) float vt[kChunkKeys * kMaxHd];  // [16][kMaxHd]
  Row rows[kRows];
  for (int i0 = 0; i0 < n_flat; i0 += kRows) {
    const int nt = n_flat - i0 < kRows ? n_flat - i0 : kRows;
    for (int i = 0; i < nt; ++i) {
      const int r = (i0 + i) / n_group, g = (i0 + i) % n_group;
      const float* qr = q + r * q_stride + g * head_dim;
      for (int d = 0; d < head_dim; ++d) qs[i][d] = qr[d] * scale;
      float* o = out + r * out_stride + g * head_dim;
      for (int d = 0; d < head_dim; ++d) o[d] = 0.0f;
      rows[i] = Row{qs[i], o, -INFINITY, 0.0f, attention_first_key(n_past + r, kv.window), n_past + r};
    }
    const int64_t n_keys = std::min(key_end, rows[nt - 1].last + 1);  // within the range
    // The blocks ahead are fetched while a chunk is computed: four chunks' lines to start
    // with, then one chunk's per chunk (see attention_prefetch.h). Without it a decode
    // step waits on every block's misses (measured: half its attention time on AVX2).
    attention_detail::Prefetcher pf(kv, std::max(key_begin, rows[0].first), n_keys, head_dim, kChunkKeys);
    if (i0 + kRows < n_flat) pf.then = nullptr;  // the next row tile reads these blocks again
    pf.issue(4 * pf.lines_per_chunk);
    for (int64_t pos = key_begin; pos < n_keys;) {
      const int64_t b = pos / bs;
      const int c0 = int(pos - b * bs);
      const int64_t left = std::min<int64_t>((b + 1) * bs, n_keys) - pos;
      const int nc = left < kChunkKeys ? int(left) : kChunkKeys;
      if (pos + nc <= rows[0].first) {  // before every row's window (chunks are fixed by position)
        pos += nc;
        continue;
      }
      // One chunk's lines ahead per chunk, in quarters between its phases: a whole
      // chunk's prefetches at once overflow the core's miss buffers and are dropped.
      const int quarter = (pf.lines_per_chunk + 3) / 4;
      pf.issue(quarter);
      const int64_t phys = kv.block_table[b];
      const char* kblock = static_cast<const char*>(kv.k) + phys * kv.block_stride * int64_t(es);
      const char* vblock = static_cast<const char*>(kv.v) + phys * kv.block_stride * int64_t(es);
      const char* kb = kblock + int64_t(c0) * int64_t(es);
      const char* vb = vblock + int64_t(c0) * head_dim * int64_t(es);
      // Scaled types: the chunk's key scales (lane-wise for K) and value scales (per row).
      alignas(32) float vs[kChunkKeys];
      __m256 ks0 = _mm256_set1_ps(1.0f), ks1 = ks0;
      if constexpr (scaled) {
        const char* ksp = kblock + scale_off + 4 * int64_t(c0);
        const char* vsp = vblock + scale_off + 4 * int64_t(c0);
        ks0 = load_scales(ksp, std::min(nc, 8), scale_mul);
        ks1 = nc > 8 ? load_scales(ksp + 32, nc - 8, scale_mul) : ks0;
        _mm256_store_ps(vs, load_scales(vsp, std::min(nc, 8), scale_mul));
        _mm256_store_ps(vs + 8, nc > 8 ? load_scales(vsp + 32, nc - 8, scale_mul) : _mm256_setzero_ps());
      }
      for (int d = 0; d < head_dim; ++d) {
        const char* kd = kb + int64_t(d) * bs * int64_t(es);
        _mm256_store_ps(kt + d * kChunkKeys, load8<T>(kd, nc, ks0));
        _mm256_store_ps(kt + d * kChunkKeys + 8,
                        nc > 8 ? load8<T>(kd + 8 * es, nc - 8, ks1) : _mm256_setzero_ps());
      }
      pf.issue(quarter);
      for (int j = 0; j < nc; ++j) {
        const __m256 sv = _mm256_set1_ps(scaled ? vs[j] : 1.0f);
        for (int c = 0; c < head_dim; c += 8)
          _mm256_store_ps(vt + j * kMaxHd + c,
                          load8<T>(vb + (int64_t(j) * head_dim + c) * int64_t(es), 8, sv));
      }
      pf.issue(quarter);
      __m256 sc[2][2];
      int i = 0;
      for (; i + 2 <= nt; i += 2) {
        chunk_scores<2>(rows + i, kt, head_dim, sc);
        row_chunk(rows[i], sc[0][0], sc[0][1], vt, nc, pos, head_dim);
        row_chunk(rows[i + 1], sc[1][0], sc[1][1], vt, nc, pos, head_dim);
      }
      if (i < nt) {
        chunk_scores<1>(rows + i, kt, head_dim, sc);
        row_chunk(rows[i], sc[0][0], sc[0][1], vt, nc, pos, head_dim);
      }
      pf.issue(quarter);
      pos += nc;
    }
    for (int i = 0; i < nt; ++i) {
      m_out[i0 + i] = rows[i].m;
      l_out[i0 + i] = rows[i].l;
    }
  }
}

}  // namespace

static void attention_partial_avx2(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                                   const PagedKvHead& kv, int head_dim, float scale, int64_t key_begin,
                                   int64_t key_end, float* acc, int64_t acc_stride, float* m, float* l) {
  if (head_dim % 8 == 0 && head_dim <= kMaxHd) {
    // One instance per dtype: the widening in the inner loops is then straight-line code.
    decltype(&attention_fast_avx2<KvDtype::F32>) fn = nullptr;
    switch (kv.dtype) {
      case KvDtype::F32: fn = attention_fast_avx2<KvDtype::F32>; break;
      case KvDtype::F16: fn = attention_fast_avx2<KvDtype::F16>; break;
      case KvDtype::BF16: fn = attention_fast_avx2<KvDtype::BF16>; break;
      case KvDtype::Int8: fn = attention_fast_avx2<KvDtype::Int8>; break;
      case KvDtype::Fp8: fn = attention_fast_avx2<KvDtype::Fp8>; break;
    }
    fn(q, q_stride, n_rows, n_group, n_past, kv, head_dim, scale, key_begin, key_end, acc, acc_stride, m, l);
    return;
  }
  attention_detail::attention_partial_impl<Avx2Ops>(q, q_stride, n_rows, n_group, n_past, kv, head_dim, scale,
                                                    key_begin, key_end, acc, acc_stride, m, l);
}

static void kv_store_token_f16_avx2(void* k_head, void* v_head, int bs, int head_dim, int slot,
                                    const float* k, const float* v) {
  auto* kd = static_cast<uint16_t*>(k_head);
  auto* vd = static_cast<uint16_t*>(v_head) + int64_t(slot) * head_dim;
  int d = 0;
  for (; d + 8 <= head_dim; d += 8) {
    alignas(16) uint16_t kh[8];
    _mm_store_si128(reinterpret_cast<__m128i*>(kh), to_half8(k + d));
    for (int i = 0; i < 8; ++i) kd[int64_t(d + i) * bs + slot] = kh[i];  // K is [head_dim][bs]
    _mm_storeu_si128(reinterpret_cast<__m128i*>(vd + d), to_half8(v + d));
  }
  for (; d < head_dim; ++d) {
    kd[int64_t(d) * bs + slot] = _cvtss_sh(k[d], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    vd[d] = _cvtss_sh(v[d], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
}

constinit const detail::AttentionKernels detail::kAttentionAvx2{attention_partial_avx2,
                                                                kv_store_token_f16_avx2};

}  // namespace kvserve

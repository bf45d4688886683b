// The generic attention kernel body, written once over a small vector-ops policy (dot,
// axpy, scale over head_dim floats; to_f32 converting stored K/V elements) and
// instantiated per ISA in attention*.cpp: the scalar reference, the AVX2 kernel and the
// AVX-512 fallback for head_dim > 256.
#pragma once

#include <math.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/fp8.h"
#include "core/half.h"
#include "kernels/cpu/attention.h"

// Everything here has internal linkage: each ISA's file gets its own copy, so the linker
// can never pick an AVX-512 build of a helper for the scalar path.
namespace kvserve::attention_detail {
namespace {

inline int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}
inline float maxf(float a, float b) {
  return a > b ? a : b;
}

constexpr int kRowTile = 16;   // query rows sharing each K/V chunk while it is in L1
constexpr int kKeyChunk = 64;  // keys converted and scored at once (blocks larger are split)

// Element i of a block's stored K or V (types the Ops do not convert: bf16 and the
// scaled ones, before their scale).
inline float stored_elem(const char* base, KvDtype t, int64_t i) {
  switch (t) {
    case KvDtype::BF16: {
      uint16_t h;
      std::memcpy(&h, base + 2 * i, 2);
      return bf16_to_fp32(h);
    }
    case KvDtype::Int8: return float(int8_t(base[i]));
    case KvDtype::Fp8: return fp8_e4m3_to_fp32(uint8_t(base[i]));
    default: return 0.0f;  // f32 and f16 go through Ops::to_f32
  }
}

// Scale of slot j of a block's K or V region (scaled types; see kv_dtype.h).
inline float stored_scale(const char* region, int bs, int head_dim, int j) {
  float s;
  std::memcpy(&s, region + int64_t(bs) * head_dim + 4 * int64_t(j), 4);
  return s;
}

// Converts keys j0 .. j0 + nk of a block's K ([head_dim][bs], stored elements) into
// kt [nk][head_dim] floats, and their values ([bs][head_dim]) into vt [nk][head_dim];
// scaled types as code * scale (one rounding, as every ISA's kernel).
template <class Ops>
void load_chunk(const PagedKvHead& kv, int64_t phys, int j0, int nk, int head_dim, float* kt, float* vt,
                float* tmp) {
  const int bs = kv.block_size;
  const size_t es = kv_dtype_size(kv.dtype);
  const char* kb = static_cast<const char*>(kv.k) + phys * kv.block_stride * int64_t(es);
  const char* vb = static_cast<const char*>(kv.v) + phys * kv.block_stride * int64_t(es);
  if (kv.dtype != KvDtype::F32 && kv.dtype != KvDtype::F16) {
    const bool scaled = kv_dtype_scaled(kv.dtype);
    for (int j = 0; j < nk; ++j) {
      const float sk = scaled ? stored_scale(kb, bs, head_dim, j0 + j) : 1.0f;
      const float sv = scaled ? stored_scale(vb, bs, head_dim, j0 + j) : 1.0f;
      for (int d = 0; d < head_dim; ++d) {
        const float kx = stored_elem(kb, kv.dtype, int64_t(d) * bs + j0 + j);
        const float vx = stored_elem(vb, kv.dtype, int64_t(j0 + j) * head_dim + d);
        kt[int64_t(j) * head_dim + d] = scaled ? kx * sk : kx;
        vt[int64_t(j) * head_dim + d] = scaled ? vx * sv : vx;
      }
    }
    return;
  }
  for (int d = 0; d < head_dim; ++d) {
    Ops::to_f32(kb + (int64_t(d) * bs + j0) * int64_t(es), kv.dtype, tmp, nk);  // keys of dim d
    for (int j = 0; j < nk; ++j) kt[int64_t(j) * head_dim + d] = tmp[j];
  }
  Ops::to_f32(vb + int64_t(j0) * head_dim * int64_t(es), kv.dtype, vt, nk * head_dim);
}

// Rows are (token r, group head g) pairs, flattened as i = r * n_group + g, so the query
// heads that share a KV head are processed together and each K/V chunk is converted once
// for all of them. Each row's arithmetic does not depend on the tiling or the grouping.
// attention_paged_partial over keys [key_begin, key_end): chunks of at most kKeyChunk
// keys within a block, from key_begin.
template <class Ops>
void attention_partial_impl(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                            const PagedKvHead& kv, int head_dim, float scale, int64_t key_begin,
                            int64_t key_end, float* out, int64_t out_stride, float* m_out, float* l_out) {
  const int bs = kv.block_size;
  const int n_flat = n_rows * n_group;
  // Grown once per thread to the largest head_dim seen; no allocation per call after that.
  thread_local std::vector<float> buf;
  const size_t need = size_t(2 * kKeyChunk) * size_t(head_dim) + kKeyChunk;
  if (buf.size() < need) buf.resize(need);
  float* kt = buf.data();                           // [kKeyChunk][head_dim]
  float* vt = kt + int64_t(kKeyChunk) * head_dim;   // [kKeyChunk][head_dim]
  float* tmp = vt + int64_t(kKeyChunk) * head_dim;  // [kKeyChunk]
  for (int i0 = 0; i0 < n_flat; i0 += kRowTile) {
    const int i1 = int(min64(n_flat, i0 + kRowTile));
    float* m = m_out + i0;  // running max of scores per row
    float* l = l_out + i0;  // running sum of exp(score - m) per row
    for (int i = i0; i < i1; ++i) {
      m[i - i0] = -INFINITY;
      l[i - i0] = 0.0f;
      float* o = out + (i / n_group) * out_stride + (i % n_group) * head_dim;
      for (int d = 0; d < head_dim; ++d) o[d] = 0.0f;
    }
    // Keys the tile's last token sees, within the range.
    const int64_t n_keys = min64(key_end, n_past + (i1 - 1) / n_group + 1);
    // Chunks are fixed by position (block starts, then kKeyChunk keys), so skipping those
    // wholly before the first token's window start changes no row's steps.
    const int64_t first_key = attention_first_key(n_past + i0 / n_group, kv.window);
    for (int64_t pos = key_begin; pos < n_keys;) {
      const int64_t b = pos / bs;
      const int c0 = int(pos - b * bs);
      const int nc = int(min64(kKeyChunk, min64((b + 1) * bs, n_keys) - pos));
      if (pos + nc <= first_key) {
        pos += nc;
        continue;
      }
      load_chunk<Ops>(kv, kv.block_table[b], c0, nc, head_dim, kt, vt, tmp);
      for (int i = i0; i < i1; ++i) {
        const int r = i / n_group, g = i % n_group;
        // Token r sees positions [first key of its window, n_past + r]: keys [j0, nk) here.
        // A chunk it sees none of is skipped, so its first step is the same in any call.
        const int nk = int(min64(nc, n_past + r + 1 - pos));
        const int j0 = int(min64(nc, std::max<int64_t>(0, attention_first_key(n_past + r, kv.window) - pos)));
        if (nk <= j0) continue;
        const float* qr = q + r * q_stride + g * head_dim;
        float* acc = out + r * out_stride + g * head_dim;
        float s[kKeyChunk];
        float mx = -INFINITY;
        for (int j = j0; j < nk; ++j) {
          s[j] = Ops::dot(qr, kt + int64_t(j) * head_dim, head_dim) * scale;
          mx = maxf(mx, s[j]);
        }
        const float m_new = maxf(m[i - i0], mx);
        const float corr = expf(m[i - i0] - m_new);  // 0 on the first chunk (m = -inf)
        if (corr != 1.0f) Ops::scale(acc, corr, head_dim);
        float sum = 0.0f;
        for (int j = j0; j < nk; ++j) {
          const float p = expf(s[j] - m_new);
          sum += p;
          Ops::axpy(acc, p, vt + int64_t(j) * head_dim, head_dim);
        }
        l[i - i0] = l[i - i0] * corr + sum;
        m[i - i0] = m_new;
      }
      pos += nc;
    }
  }
}

}  // namespace
}  // namespace kvserve::attention_detail

// The attention kernel body, written once over a small vector-ops policy (dot, axpy,
// scale over head_dim floats) and instantiated per ISA in attention*.cpp.
#pragma once

#include <math.h>

#include <cstdint>

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

constexpr int kRowTile = 16;   // query rows sharing each K/V block while it is in L1
constexpr int kKeyChunk = 64;  // scores held at once per row (blocks larger are split)

// Rows are (token r, group head g) pairs, flattened as i = r * n_group + g, so the query
// heads that share a KV head are processed together and each K/V block is read once for
// all of them. Each row's arithmetic does not depend on the tiling or the grouping.
template <class Ops>
void attention_paged_impl(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                          const PagedKvHead& kv, int head_dim, float scale, float* out, int64_t out_stride) {
  const int bs = kv.block_size;
  const int n_flat = n_rows * n_group;
  for (int i0 = 0; i0 < n_flat; i0 += kRowTile) {
    const int i1 = int(min64(n_flat, i0 + kRowTile));
    float m[kRowTile];  // running max of scores per row
    float l[kRowTile];  // running sum of exp(score - m) per row
    for (int i = i0; i < i1; ++i) {
      m[i - i0] = -INFINITY;
      l[i - i0] = 0.0f;
      float* o = out + (i / n_group) * out_stride + (i % n_group) * head_dim;
      for (int d = 0; d < head_dim; ++d) o[d] = 0.0f;
    }
    const int64_t n_keys = n_past + (i1 - 1) / n_group + 1;  // keys the tile's last token sees
    const int64_t n_blocks = (n_keys + bs - 1) / bs;
    for (int64_t b = 0; b < n_blocks; ++b) {
      const int64_t phys = kv.block_table[b];
      const float* kb = kv.k + phys * kv.block_stride;  // [bs, head_dim]
      const float* vb = kv.v + phys * kv.block_stride;
      for (int i = i0; i < i1; ++i) {
        const int r = i / n_group, g = i % n_group;
        // Causal limit: token r sees positions < n_past + r + 1.
        const int64_t visible = min64(bs, n_past + r + 1 - b * bs);
        if (visible <= 0) continue;
        const float* qr = q + r * q_stride + g * head_dim;
        float* acc = out + r * out_stride + g * head_dim;
        for (int j0 = 0; j0 < visible; j0 += kKeyChunk) {
          const int j1 = int(min64(visible, j0 + kKeyChunk));
          float s[kKeyChunk];
          float mx = -INFINITY;
          for (int j = j0; j < j1; ++j) {
            s[j - j0] = Ops::dot(qr, kb + int64_t(j) * head_dim, head_dim) * scale;
            mx = maxf(mx, s[j - j0]);
          }
          const float m_new = maxf(m[i - i0], mx);
          const float corr = expf(m[i - i0] - m_new);  // 0 on the first chunk (m = -inf)
          if (corr != 1.0f) Ops::scale(acc, corr, head_dim);
          float sum = 0.0f;
          for (int j = j0; j < j1; ++j) {
            const float p = expf(s[j - j0] - m_new);
            sum += p;
            Ops::axpy(acc, p, vb + int64_t(j) * head_dim, head_dim);
          }
          l[i - i0] = l[i - i0] * corr + sum;
          m[i - i0] = m_new;
        }
      }
    }
    for (int i = i0; i < i1; ++i)
      Ops::scale(out + (i / n_group) * out_stride + (i % n_group) * head_dim, 1.0f / l[i - i0], head_dim);
  }
}

}  // namespace
}  // namespace kvserve::attention_detail

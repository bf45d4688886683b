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

template <class Ops>
void attention_paged_impl(const float* q, int64_t q_stride, int n_rows, int64_t n_past, const PagedKvHead& kv,
                          int head_dim, float scale, float* out, int64_t out_stride) {
  const int bs = kv.block_size;
  for (int r0 = 0; r0 < n_rows; r0 += kRowTile) {
    const int r1 = int(min64(n_rows, r0 + kRowTile));
    float m[kRowTile];  // running max of scores per row
    float l[kRowTile];  // running sum of exp(score - m) per row
    for (int r = r0; r < r1; ++r) {
      m[r - r0] = -INFINITY;
      l[r - r0] = 0.0f;
      for (int d = 0; d < head_dim; ++d) out[r * out_stride + d] = 0.0f;
    }
    const int64_t n_keys = n_past + r1;  // keys the last row of the tile sees
    const int64_t n_blocks = (n_keys + bs - 1) / bs;
    for (int64_t b = 0; b < n_blocks; ++b) {
      const int64_t phys = kv.block_table[b];
      const float* kb = kv.k + phys * kv.block_stride;  // [bs, head_dim]
      const float* vb = kv.v + phys * kv.block_stride;
      for (int r = r0; r < r1; ++r) {
        // Causal limit: row r sees positions < n_past + r + 1.
        const int64_t visible = min64(bs, n_past + r + 1 - b * bs);
        if (visible <= 0) continue;
        const float* qr = q + r * q_stride;
        float* acc = out + r * out_stride;
        for (int j0 = 0; j0 < visible; j0 += kKeyChunk) {
          const int j1 = int(min64(visible, j0 + kKeyChunk));
          float s[kKeyChunk];
          float mx = -INFINITY;
          for (int j = j0; j < j1; ++j) {
            s[j - j0] = Ops::dot(qr, kb + int64_t(j) * head_dim, head_dim) * scale;
            mx = maxf(mx, s[j - j0]);
          }
          const float m_new = maxf(m[r - r0], mx);
          const float corr = expf(m[r - r0] - m_new);  // 0 on the first chunk (m = -inf)
          if (corr != 1.0f) Ops::scale(acc, corr, head_dim);
          float sum = 0.0f;
          for (int j = j0; j < j1; ++j) {
            const float p = expf(s[j - j0] - m_new);
            sum += p;
            Ops::axpy(acc, p, vb + int64_t(j) * head_dim, head_dim);
          }
          l[r - r0] = l[r - r0] * corr + sum;
          m[r - r0] = m_new;
        }
      }
    }
    for (int r = r0; r < r1; ++r) Ops::scale(out + r * out_stride, 1.0f / l[r - r0], head_dim);
  }
}

}  // namespace
}  // namespace kvserve::attention_detail

// Batch invariance of paged attention: a query row's output is bit-identical whether it
// is decoded alone or computed inside a prefill chunk of any size (same KV cache), on
// every ISA's kernel, with f32 and f16 KV.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "core/cpu_features.h"
#include "core/half.h"
#include "kernels/cpu/attention.h"

namespace kvserve {

// Per-ISA entry points (attention.cpp dispatches between them).
void attention_paged_avx2(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                          const PagedKvHead& kv, int head_dim, float scale, float* out, int64_t out_stride);
void attention_paged_avx512(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                            const PagedKvHead& kv, int head_dim, float scale, float* out, int64_t out_stride);

namespace {

using AttentionFn = void (*)(const float*, int64_t, int, int, int64_t, const PagedKvHead&, int, float, float*,
                             int64_t);

struct Kernel {
  const char* name;
  Isa isa;
  AttentionFn fn;
};
const Kernel kKernels[] = {{"scalar", Isa::Scalar, attention_paged_scalar},
                           {"avx2", Isa::Avx2, attention_paged_avx2},
                           {"avx512", Isa::Avx512, attention_paged_avx512}};

TEST(AttentionInvariance, DecodeEqualsEveryPrefillChunkingBitExact) {
  constexpr int kTokens = 90;
  for (KvDtype dtype : {KvDtype::F32, KvDtype::F16})
    for (int kBlock : {16, 5, 64})
      for (int head_dim : {64, 48, 80, 128, 300})
        for (int n_group : {1, 3, 4}) {
          if (kBlock != 16 && (head_dim != 80 || n_group == 4)) continue;  // odd block sizes: a few cases
          std::mt19937 rng(uint32_t(head_dim * 10 + n_group));
          std::normal_distribution<float> nd(0.0f, 1.5f);
          const int n_blocks = (kTokens + kBlock - 1) / kBlock + 2;
          // Random contents: any element values in the cache's layout do for invariance.
          std::vector<float> k(size_t(n_blocks * kBlock * head_dim)), v(k.size());
          for (auto& f : k) f = nd(rng);
          for (auto& f : v) f = nd(rng);
          std::vector<uint16_t> kh(k.size()), vh(v.size());
          for (size_t i = 0; i < k.size(); ++i) {
            kh[i] = fp32_to_fp16(k[i]);
            vh[i] = fp32_to_fp16(v[i]);
          }
          std::vector<int32_t> table(static_cast<size_t>(n_blocks));
          std::iota(table.begin(), table.end(), 0);
          std::shuffle(table.begin(), table.end(), rng);  // logical -> scattered physical blocks
          const bool f16 = dtype == KvDtype::F16;
          const PagedKvHead kv{f16 ? static_cast<const void*>(kh.data()) : k.data(),
                               f16 ? static_cast<const void*>(vh.data()) : v.data(),
                               int64_t(kBlock) * head_dim,
                               table.data(),
                               kBlock,
                               dtype};
          const int64_t stride = int64_t(n_group) * head_dim;  // [token][group head][head_dim]
          std::vector<float> q(size_t(kTokens * stride));
          for (auto& f : q) f = nd(rng);
          const float scale = 1.0f / float(head_dim) * 4.0f;
          for (const Kernel& kern : kKernels) {
            if (int(kern.isa) > int(best_isa())) continue;
            std::vector<float> alone(q.size()), y(q.size());
            for (int t = 0; t < kTokens; ++t)
              kern.fn(q.data() + t * stride, stride, 1, n_group, t, kv, head_dim, scale,
                      alone.data() + t * stride, stride);
            for (int chunk : {2, 3, 4, 5, 7, 16, 17, 33, kTokens}) {
              std::fill(y.begin(), y.end(), -1.0f);
              for (int s = 0; s < kTokens; s += chunk) {
                const int n = std::min(chunk, kTokens - s);
                kern.fn(q.data() + s * stride, stride, n, n_group, s, kv, head_dim, scale,
                        y.data() + s * stride, stride);
              }
              for (int t = 0; t < kTokens; ++t)
                ASSERT_EQ(
                    0, std::memcmp(y.data() + t * stride, alone.data() + t * stride, stride * sizeof(float)))
                    << kern.name << " " << kv_dtype_name(dtype) << " block=" << kBlock
                    << " head_dim=" << head_dim << " n_group=" << n_group << " chunk=" << chunk << " token "
                    << t << ": " << y[size_t(t * stride)] << " vs decoded " << alone[size_t(t * stride)];
            }
          }
        }
}

}  // namespace
}  // namespace kvserve

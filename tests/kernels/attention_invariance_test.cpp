// Batch invariance of paged attention: a query row's output is bit-identical whether it
// is decoded alone or computed inside a prefill chunk of any size (same KV cache), on
// every ISA's kernel, with f32 and f16 KV.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <tuple>
#include <vector>

#include "core/cpu_features.h"
#include "core/half.h"
#include "kernels/cpu/attention.h"

namespace kvserve {

namespace {

struct Kernel {
  const char* name;
  Isa isa;
  AttentionPagedFn fn;
};
const Kernel kKernels[] = {{"scalar", Isa::Scalar, attention_paged_scalar},
                           {"avx2", Isa::Avx2, attention_paged_for(Isa::Avx2)},
                           {"avx512", Isa::Avx512, attention_paged_for(Isa::Avx512)}};

// Random K/V (any element values in the cache's layout do for invariance) in scattered
// blocks, and random queries: [token][group head][head_dim].
struct CacheAndQueries {
  std::vector<float> k, v, q;
  std::vector<uint16_t> kh, vh;
  std::vector<int32_t> table;
  PagedKvHead kv;
  int64_t stride;
  float scale;

  CacheAndQueries(KvDtype dtype, int block, int head_dim, int n_group, int tokens, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.5f);
    const int n_blocks = (tokens + block - 1) / block + 2;
    k.resize(size_t(n_blocks * block * head_dim));
    v.resize(k.size());
    for (auto& f : k) f = nd(rng);
    for (auto& f : v) f = nd(rng);
    kh.resize(k.size());
    vh.resize(v.size());
    for (size_t i = 0; i < k.size(); ++i) {
      kh[i] = fp32_to_fp16(k[i]);
      vh[i] = fp32_to_fp16(v[i]);
    }
    table.resize(static_cast<size_t>(n_blocks));
    std::iota(table.begin(), table.end(), 0);
    std::shuffle(table.begin(), table.end(), rng);  // logical -> scattered physical blocks
    const bool f16 = dtype == KvDtype::F16;
    kv = PagedKvHead{f16 ? static_cast<const void*>(kh.data()) : k.data(),
                     f16 ? static_cast<const void*>(vh.data()) : v.data(),
                     int64_t(block) * head_dim,
                     table.data(),
                     block,
                     dtype};
    stride = int64_t(n_group) * head_dim;
    q.resize(size_t(tokens * stride));
    for (auto& f : q) f = nd(rng);
    scale = 1.0f / float(head_dim) * 4.0f;
  }
};

// Every token decoded alone equals the same token in prefill chunks of every size, for
// each kernel.
void expect_chunkings_equal_decode(const CacheAndQueries& st, int tokens, int n_group, int head_dim,
                                   std::initializer_list<int> chunks, const char* what) {
  const int64_t stride = st.stride;
  for (const Kernel& kern : kKernels) {
    if (int(kern.isa) > int(best_isa())) continue;
    std::vector<float> alone(st.q.size()), y(st.q.size());
    for (int t = 0; t < tokens; ++t)
      kern.fn(st.q.data() + t * stride, stride, 1, n_group, t, st.kv, head_dim, st.scale,
              alone.data() + t * stride, stride);
    for (int chunk : chunks) {
      std::fill(y.begin(), y.end(), -1.0f);
      for (int s = 0; s < tokens; s += chunk) {
        const int n = std::min(chunk, tokens - s);
        kern.fn(st.q.data() + s * stride, stride, n, n_group, s, st.kv, head_dim, st.scale,
                y.data() + s * stride, stride);
      }
      for (int t = 0; t < tokens; ++t)
        ASSERT_EQ(0, std::memcmp(y.data() + t * stride, alone.data() + t * stride, stride * sizeof(float)))
            << kern.name << " " << what << " head_dim=" << head_dim << " n_group=" << n_group
            << " chunk=" << chunk << " token " << t << ": " << y[size_t(t * stride)] << " vs decoded "
            << alone[size_t(t * stride)];
    }
  }
}

TEST(AttentionInvariance, DecodeEqualsEveryPrefillChunkingBitExact) {
  constexpr int kTokens = 90;
  for (KvDtype dtype : {KvDtype::F32, KvDtype::F16})
    for (int kBlock : {16, 5, 64})
      for (int head_dim : {64, 48, 80, 128, 300})
        for (int n_group : {1, 3, 4}) {
          if (kBlock != 16 && (head_dim != 80 || n_group == 4)) continue;  // odd block sizes: a few cases
          const CacheAndQueries st(dtype, kBlock, head_dim, n_group, kTokens,
                                   uint32_t(head_dim * 10 + n_group));
          expect_chunkings_equal_decode(st, kTokens, n_group, head_dim, {2, 3, 4, 5, 7, 16, 17, 33, kTokens},
                                        kv_dtype_name(dtype));
        }
}

// Past one segment of keys (kAttentionSegmentKeys), rows fold their segments: still the
// same bits decoded alone or in any chunk, chunks crossing segment boundaries included.
TEST(AttentionInvariance, LongContextSegmentsBitExact) {
  constexpr int kTokens = int(2 * kAttentionSegmentKeys + 40);  // three segments
  for (KvDtype dtype : {KvDtype::F32, KvDtype::F16})
    for (const auto& [block, head_dim, n_group] : {std::tuple{16, 64, 3}, std::tuple{5, 80, 1}}) {
      const CacheAndQueries st(dtype, block, head_dim, n_group, kTokens, uint32_t(block * 7 + n_group));
      expect_chunkings_equal_decode(st, kTokens, n_group, head_dim, {7, 100, kTokens}, kv_dtype_name(dtype));
    }
}

// Split-K: a caller that computes a row tile's segments itself (here in reverse order, as
// other threads might finish them) and folds them in segment order with attention_merge
// gets attention_paged's bits.
TEST(AttentionInvariance, SplitKSegmentsFoldedByTheCallerEqualAttentionPaged) {
  constexpr int64_t S = kAttentionSegmentKeys;
  for (KvDtype dtype : {KvDtype::F32, KvDtype::F16})
    for (int n_group : {1, 3}) {
      constexpr int kHeadDim = 64;
      const int tokens = int(3 * S + 20);
      const CacheAndQueries st(dtype, 16, kHeadDim, n_group, tokens, uint32_t(n_group + 40));
      const int64_t stride = st.stride;
      // (rows, n_past): decode at and around segment boundaries, tiles that cross one.
      for (const auto& [rows, n_past] :
           {std::pair{1, int(S - 1)}, std::pair{1, int(S)}, std::pair{1, int(2 * S + 9)},
            std::pair{5, int(2 * S - 3)}, std::pair{32, int(S - 16)}, std::pair{20, int(3 * S)}}) {
        const float* q = st.q.data() + int64_t(n_past) * stride;
        std::vector<float> want(size_t(rows * stride)), got(want.size(), -1.0f);
        attention_paged(q, stride, rows, n_group, n_past, st.kv, kHeadDim, st.scale, want.data(), stride);

        const int64_t n_keys = n_past + rows;
        const int n_seg = int((n_keys + S - 1) / S);
        const int n_flat = rows * n_group;
        std::vector<std::vector<float>> acc(size_t(n_seg), std::vector<float>(want.size(), 0.0f));
        const std::vector<float> zeros(size_t(n_flat), 0.0f);
        std::vector<std::vector<float>> m(size_t(n_seg), zeros), l(size_t(n_seg), zeros);
        for (int s = n_seg - 1; s >= 0; --s) {
          const int r0 = int(std::max<int64_t>(0, s * S - n_past));
          attention_paged_partial(q + r0 * stride, stride, rows - r0, n_group, n_past + r0, st.kv, kHeadDim,
                                  st.scale, s * S, std::min(n_keys, (s + 1) * S),
                                  acc[size_t(s)].data() + r0 * stride, stride,
                                  m[size_t(s)].data() + r0 * n_group, l[size_t(s)].data() + r0 * n_group);
          for (int i = 0; i < r0 * n_group; ++i) l[size_t(s)][size_t(i)] = 0.0f;  // rows that see none
        }
        for (int i = 0; i < n_flat; ++i) {
          const int64_t off = (i / n_group) * stride + (i % n_group) * kHeadDim;
          std::copy_n(acc[0].data() + off, kHeadDim, got.data() + off);
          float mi = m[0][size_t(i)], li = l[0][size_t(i)];
          for (int s = 1; s < n_seg; ++s)
            if (l[size_t(s)][size_t(i)] > 0.0f)
              attention_merge(got.data() + off, &mi, &li, acc[size_t(s)].data() + off,
                              m[size_t(s)][size_t(i)], l[size_t(s)][size_t(i)], kHeadDim);
          attention_finish(got.data() + off, li, kHeadDim);
        }
        ASSERT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float)))
            << kv_dtype_name(dtype) << " n_group=" << n_group << " rows=" << rows << " n_past=" << n_past;
      }
    }
}

}  // namespace
}  // namespace kvserve

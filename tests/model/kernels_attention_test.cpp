// Paged FlashAttention-style kernel vs a naive full-softmax reference over contiguous
// K/V, with scattered block tables, GQA ratios, odd head dims, partial blocks and every KV
// dtype (the reference then uses the stored, rounded K/V: the kernels' error is their own).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "common/kv_stored_value.h"
#include "core/half.h"
#include "kernels/cpu/attention.h"

namespace kvserve {
namespace {

struct Case {
  int n_heads, n_kv_heads, head_dim, block_size, n_past, n_rows;
  KvDtype dtype = KvDtype::F32;
};

// Naive reference: out[r, h] = softmax(q·K^T * scale over positions <= n_past + r) V.
void naive_attention(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                     const Case& c, float scale, std::vector<double>& out) {
  const int group = c.n_heads / c.n_kv_heads;
  const int hd = c.head_dim;
  out.assign(size_t(c.n_rows) * c.n_heads * hd, 0.0);
  for (int r = 0; r < c.n_rows; ++r) {
    for (int h = 0; h < c.n_heads; ++h) {
      const int kvh = h / group;
      const int n_keys = c.n_past + r + 1;
      std::vector<double> s(static_cast<size_t>(n_keys));
      for (int p = 0; p < n_keys; ++p) {
        double d = 0;
        for (int i = 0; i < hd; ++i)
          d += double(q[(size_t(r) * c.n_heads + h) * hd + i]) * k[(size_t(p) * c.n_kv_heads + kvh) * hd + i];
        s[size_t(p)] = d * scale;
      }
      const double mx = *std::max_element(s.begin(), s.end());
      double sum = 0;
      for (double& x : s) sum += (x = std::exp(x - mx));
      for (int p = 0; p < n_keys; ++p)
        for (int i = 0; i < hd; ++i)
          out[(size_t(r) * c.n_heads + h) * hd + i] +=
              s[size_t(p)] / sum * v[(size_t(p) * c.n_kv_heads + kvh) * hd + i];
    }
  }
}

void run_case(const Case& c, uint32_t seed) {
  SCOPED_TRACE(::testing::Message() << "heads " << c.n_heads << "/" << c.n_kv_heads << " hd " << c.head_dim
                                    << " bs " << c.block_size << " n_past " << c.n_past << " rows "
                                    << c.n_rows << " " << kv_dtype_name(c.dtype));
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int hd = c.head_dim;
  const int n_pos = c.n_past + c.n_rows;
  // Contiguous K/V per position: [n_pos, n_kv_heads, hd]; queries [n_rows, n_heads, hd].
  std::vector<float> k(size_t(n_pos) * c.n_kv_heads * hd), v(k.size()), q(size_t(c.n_rows) * c.n_heads * hd);
  for (float& x : k) x = nd(rng);
  for (float& x : v) x = nd(rng);
  for (float& x : q) x = 2.0f * nd(rng);  // sharper softmax exercises the running max

  // Scatter logical blocks over a pool twice as large, in shuffled order, written in the
  // cache layout by the cache's own writer.
  const int n_logical = (n_pos + c.block_size - 1) / c.block_size;
  const int n_phys = 2 * n_logical + 1;
  std::vector<int32_t> ids(static_cast<size_t>(n_phys));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  std::vector<int32_t> table(ids.begin(), ids.begin() + n_logical);
  const int64_t head_elems = kv_head_elems(c.dtype, c.block_size, hd);  // scales included
  const int64_t block_stride = int64_t(c.n_kv_heads) * head_elems;      // elements
  const size_t es = kv_dtype_size(c.dtype);
  std::vector<char> kpool(size_t(n_phys * block_stride) * es), vpool(kpool.size());
  // Unused slots hold NaN (f32) or 0xffff (an f16 NaN): reading one would show.
  std::fill(kpool.begin(), kpool.end(), char(0xff));
  std::fill(vpool.begin(), vpool.end(), char(0xff));
  for (int p = 0; p < n_pos; ++p) {
    const int64_t base = table[size_t(p / c.block_size)] * block_stride;
    for (int h = 0; h < c.n_kv_heads; ++h) {
      const size_t at = size_t(base + int64_t(h) * head_elems) * es;
      const size_t src = (size_t(p) * c.n_kv_heads + h) * hd;
      kv_store_token(kpool.data() + at, vpool.data() + at, c.dtype, c.block_size, hd, p % c.block_size,
                     k.data() + src, v.data() + src);
      // The reference uses what the kernels can see: the stored values, decoded here.
      for (int d = 0; d < hd; ++d) {
        k[src + size_t(d)] =
            stored_kv_value(kpool.data() + at, c.dtype, c.block_size, hd, p % c.block_size, d, true);
        v[src + size_t(d)] =
            stored_kv_value(vpool.data() + at, c.dtype, c.block_size, hd, p % c.block_size, d, false);
      }
    }
  }

  const float scale = 1.0f / std::sqrt(float(hd));
  std::vector<double> ref;
  naive_attention(q, k, v, c, scale, ref);

  const int group = c.n_heads / c.n_kv_heads;
  const int64_t stride = int64_t(c.n_heads) * hd;
  auto head_kv = [&](int kvh) {
    PagedKvHead kv;
    kv.k = kpool.data() + size_t(int64_t(kvh) * head_elems) * es;
    kv.v = vpool.data() + size_t(int64_t(kvh) * head_elems) * es;
    kv.dtype = c.dtype;
    kv.block_stride = block_stride;
    kv.block_table = table.data();
    kv.block_size = c.block_size;
    return kv;
  };
  std::vector<float> first;
  // Variants: scalar and dispatched ISA, each one query head at a time and grouped by KV
  // head (GQA): the grouped call must give bit-identical rows.
  for (int variant = 0; variant < 4; ++variant) {
    auto fn = variant % 2 == 0 ? attention_paged_scalar : attention_paged;
    const bool grouped = variant >= 2;
    std::vector<float> out(q.size(), -1.0f);
    if (grouped) {
      for (int kvh = 0; kvh < c.n_kv_heads; ++kvh)
        fn(q.data() + kvh * group * hd, stride, c.n_rows, group, c.n_past, head_kv(kvh), hd, scale,
           out.data() + kvh * group * hd, stride);
    } else {
      for (int h = 0; h < c.n_heads; ++h)
        fn(q.data() + h * hd, stride, c.n_rows, 1, c.n_past, head_kv(h / group), hd, scale,
           out.data() + h * hd, stride);
    }
    for (size_t i = 0; i < out.size(); ++i)
      ASSERT_NEAR(out[i], ref[i], 2e-5 * (1.0 + std::abs(ref[i])))
          << (variant % 2 ? "dispatched" : "scalar") << (grouped ? " grouped" : "") << " at " << i;
    if (variant == 1) first = out;
    if (variant == 3) {
      ASSERT_EQ(out, first) << "grouping changed the dispatched kernel's results";
    }
  }
}

TEST(Attention, MatchesNaiveAcrossLayouts) {
  uint32_t seed = 1;
  for (const int hd : {64, 7, 33, 128})
    for (const int bs : {1, 5, 16})
      for (const auto& [nh, nkv] : {std::pair{4, 4}, std::pair{4, 2}, std::pair{8, 2}, std::pair{6, 1}})
        for (const auto& [n_past, n_rows] :
             {std::pair{0, 1}, std::pair{0, 37}, std::pair{13, 1}, std::pair{21, 9}})
          for (const KvDtype dt : kAllKvDtypes) run_case({nh, nkv, hd, bs, n_past, n_rows, dt}, seed++);
}

TEST(Attention, LargeBlocksAndLongPrefill) {
  // Blocks larger than the kernel's score chunk, a prefill spanning many row tiles, and
  // contexts of several key segments.
  for (const KvDtype dt : kAllKvDtypes) {
    run_case({4, 1, 64, 128, 70, 100, dt}, 7);
    run_case({2, 2, 16, 256, 0, 300, dt}, 8);
    run_case({3, 3, 80, 16, 500, 1, dt}, 9);
    run_case({12, 3, 128, 16, 40, 50, dt}, 10);  // GQA group 4, head_dim 128
    // Three key segments (kAttentionSegmentKeys), rows on both sides of a boundary.
    run_case({6, 2, 64, 16, int(2 * kAttentionSegmentKeys) - 20, 40, dt}, 11);
  }
}

}  // namespace
}  // namespace kvserve

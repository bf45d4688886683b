// Paged attention with every KV dtype in the cache layout (K transposed per block, int8 /
// fp8 scales after each head's elements): each ISA's kernel against the scalar
// reference, each dtype against f32 KV, for head_dim 64, 128 and 80, GQA groups 1, 3 and
// 4, decode rows and prefill chunks.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "common/kv_stored_value.h"
#include "core/cpu_features.h"
#include "kernels/cpu/attention.h"

namespace kvserve {

namespace {

// One KV head's cache: n_pos tokens written with kv_store_token into scattered blocks.
struct Cache {
  std::vector<char> k, v;
  std::vector<int32_t> table;
  PagedKvHead head;

  Cache(const std::vector<float>& keys, const std::vector<float>& vals, int n_pos, int hd, int bs, KvDtype dt,
        std::mt19937& rng) {
    const int n_logical = (n_pos + bs - 1) / bs;
    std::vector<int32_t> ids(size_t(2 * n_logical + 1));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    table.assign(ids.begin(), ids.begin() + n_logical);
    const size_t es = kv_dtype_size(dt), block_bytes = size_t(kv_head_elems(dt, bs, hd)) * es;
    k.assign(ids.size() * block_bytes, char(0xff));  // unused slots: NaN
    v.assign(k.size(), char(0xff));
    for (int p = 0; p < n_pos; ++p) {
      const size_t at = size_t(table[size_t(p / bs)]) * block_bytes;
      kv_store_token(k.data() + at, v.data() + at, dt, bs, hd, p % bs, keys.data() + size_t(p) * hd,
                     vals.data() + size_t(p) * hd);
    }
    head = PagedKvHead{k.data(), v.data(), kv_head_elems(dt, bs, hd), table.data(), bs, dt};
  }
};

struct Outputs {
  std::vector<float> prefill, decode;  // [n_rows][n_group][hd]
};

// A prefill chunk of n_rows after n_past cached tokens, and the same rows decoded one by one.
Outputs run(AttentionPagedFn fn, const PagedKvHead& kv, const std::vector<float>& q, int n_past, int n_rows,
            int group, int hd) {
  const int64_t stride = int64_t(group) * hd;
  const float scale = 1.0f / std::sqrt(float(hd));
  Outputs o;
  o.prefill.assign(q.size(), -1.0f);
  o.decode.assign(q.size(), -1.0f);
  fn(q.data(), stride, n_rows, group, n_past, kv, hd, scale, o.prefill.data(), stride);
  for (int r = 0; r < n_rows; ++r)
    fn(q.data() + r * stride, stride, 1, group, n_past + r, kv, hd, scale, o.decode.data() + r * stride,
       stride);
  return o;
}

void expect_near(const std::vector<float>& a, const std::vector<float>& b, double tol, const char* what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_NEAR(a[i], b[i], tol * (1.0 + std::abs(b[i]))) << what << " at " << i;
}

TEST(AttentionKvDtype, KernelsMatchScalarReferenceAndEachDtypeIsCloseToF32) {
  constexpr int kPast = 45, kRows = 21;
  const struct {
    const char* name;
    Isa isa;
    AttentionPagedFn fn;
  } kernels[] = {{"avx2", Isa::Avx2, attention_paged_for(Isa::Avx2)},
                 {"avx512", Isa::Avx512, attention_paged_for(Isa::Avx512)}};
  // Blocks of 32 keys hold two 16-key chunks: the second's slots and scales start mid-block.
  for (int kBlock : {16, 32})
    for (int hd : {64, 128, 80})
      for (int group : {1, 3, 4}) {
        SCOPED_TRACE(::testing::Message() << "block " << kBlock << " head_dim " << hd << " group " << group);
        std::mt19937 rng(uint32_t(hd * 7 + group));
        std::normal_distribution<float> nd(0.0f, 1.0f);
        const int n_pos = kPast + kRows;
        std::vector<float> keys(size_t(n_pos) * hd), vals(keys.size()), q(size_t(kRows) * group * hd);
        for (float& x : keys) x = nd(rng);
        for (float& x : vals) x = nd(rng);
        for (float& x : q) x = 1.5f * nd(rng);
        Outputs f32_ref;
        for (KvDtype dt : {KvDtype::F32, KvDtype::F16, KvDtype::BF16, KvDtype::Int8, KvDtype::Fp8}) {
          SCOPED_TRACE(kv_dtype_name(dt));
          Cache cache(keys, vals, n_pos, hd, kBlock, dt, rng);
          const Outputs r = run(attention_paged_scalar, cache.head, q, kPast, kRows, group, hd);
          expect_near(r.decode, r.prefill, 1e-5, "scalar decode vs prefill");
          for (const auto& k : kernels) {
            if (int(k.isa) > int(best_isa())) continue;
            const Outputs o = run(k.fn, cache.head, q, kPast, kRows, group, hd);
            expect_near(o.prefill, r.prefill, 2e-5, k.name);
            EXPECT_EQ(o.prefill, o.decode) << k.name << ": decode must equal prefill bit for bit";
          }
          if (dt == KvDtype::F32) {
            f32_ref = r;
            continue;
          }
          // How far rounding K and V moves the output (unit-normal K/V; measured worst: f16
          // 5e-4, bf16 5e-3, int8 1.3e-2, fp8 8e-2): f16 keeps 11 significant bits, bf16 8,
          // int8 a step of max|x| / 127 per token and head, fp8 E4M3 4 bits.
          const double tol = dt == KvDtype::F16    ? 2e-3
                             : dt == KvDtype::BF16 ? 1e-2
                             : dt == KvDtype::Int8 ? 3e-2
                                                   : 1.5e-1;
          expect_near(r.prefill, f32_ref.prefill, tol, "vs f32 KV");
        }
      }
}

}  // namespace
}  // namespace kvserve

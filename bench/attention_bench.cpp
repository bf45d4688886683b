// Paged attention kernel timings: decode (one token, a GQA group of query heads) and a
// prefill tile (32 tokens at the end of a long prompt), f16 and f32 KV, one thread.
//   attention_bench --benchmark_filter=Decode
#include <benchmark/benchmark.h>

#include <numeric>
#include <random>
#include <vector>

#include "core/half.h"
#include "kernels/cpu/attention.h"

namespace kvserve {
namespace {

constexpr int kBlock = 16;

struct Setup {
  std::vector<float> kf, vf, q, out;
  std::vector<uint16_t> kh, vh;
  std::vector<int32_t> table;
  PagedKvHead kv;

  Setup(int n_keys, int head_dim, int n_rows, int n_group, KvDtype dt) {
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const int n_blocks = (n_keys + kBlock - 1) / kBlock;
    kf.resize(size_t(n_blocks) * kBlock * head_dim);
    vf.resize(kf.size());
    for (auto& x : kf) x = nd(rng);
    for (auto& x : vf) x = nd(rng);
    for (float x : kf) kh.push_back(fp32_to_fp16(x));
    for (float x : vf) vh.push_back(fp32_to_fp16(x));
    table.resize(size_t(n_blocks));
    std::iota(table.begin(), table.end(), 0);
    q.resize(size_t(n_rows) * n_group * head_dim);
    for (auto& x : q) x = nd(rng);
    out.resize(q.size());
    const bool f16 = dt == KvDtype::F16;
    kv = PagedKvHead{f16 ? static_cast<const void*>(kh.data()) : kf.data(),
                     f16 ? static_cast<const void*>(vh.data()) : vf.data(),
                     int64_t(kBlock) * head_dim,
                     table.data(),
                     kBlock,
                     dt};
  }
};

// Args: keys in the cache, head_dim, rows, group, dtype (0 f16, 1 f32).
void BM_Attention(benchmark::State& st) {
  const int n_keys = int(st.range(0)), hd = int(st.range(1)), rows = int(st.range(2)),
            group = int(st.range(3));
  const KvDtype dt = st.range(4) == 0 ? KvDtype::F16 : KvDtype::F32;
  Setup s(n_keys, hd, rows, group, dt);
  const int64_t stride = int64_t(group) * hd;
  for (auto _ : st) {
    attention_paged(s.q.data(), stride, rows, group, n_keys - rows, s.kv, hd, 0.125f, s.out.data(), stride);
    benchmark::DoNotOptimize(s.out.data());
  }
  // Multiply-adds of q.k and p.v over the visible keys.
  int64_t macs = 0;
  for (int r = 0; r < rows; ++r) macs += int64_t(n_keys - rows + r + 1) * 2 * hd * group;
  st.counters["GMAC/s"] =
      benchmark::Counter(double(macs) * double(st.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

BENCHMARK(BM_Attention)
    ->Name("Decode")
    ->ArgNames({"keys", "hd", "rows", "group", "f32"})
    ->Args({192, 64, 1, 3, 0})
    ->Args({192, 64, 1, 3, 1})
    ->Args({640, 64, 1, 1, 0})
    ->Args({640, 64, 1, 1, 1})
    ->Args({1024, 128, 1, 4, 0});
BENCHMARK(BM_Attention)
    ->Name("Prefill")
    ->ArgNames({"keys", "hd", "rows", "group", "f32"})
    ->Args({512, 64, 32, 3, 0})
    ->Args({512, 64, 32, 3, 1})
    ->Args({512, 64, 32, 1, 0})
    ->Args({1024, 128, 32, 4, 0});

}  // namespace
}  // namespace kvserve

BENCHMARK_MAIN();

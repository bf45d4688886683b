// Gemma-3-270M (Q4_K_M) through the runner, against llama.cpp's logits
// (shared/golden/gemma-3-270m-q4_k_m.shared.jsonl), judged as shared/README.md says deep
// 4-bit models must be: mean |Δ logprob| over each step's top-4, the worst entry, and
// top-1 agreement wherever llama.cpp's top-2 margin exceeds 0.5. Then: batched decode of
// the golden prompts equals each alone, and a context past the 512-key sliding window
// decoded on two threads (split-K) equals one thread, bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include "common/test_paths.h"
#include "gemma3/gemma3_assets.h"
#include "kernels/cpu/activation.h"
#include "model/cpu_runner.h"
#include "model/model.h"
#include "model/model_test_util.h"

namespace kvserve {
namespace {

const Model* gemma3_model() {
  return test::gemma3_model_shared().get();
}

#define GEMMA3_MODEL_OR_SKIP(var)    \
  const Model* var = gemma3_model(); \
  if (!var) KVSERVE_MISSING_ASSET(test::gemma3_path() << " (run scripts/fetch_model.sh gemma3)")

TEST(Gemma3Model, Config) {
  GEMMA3_MODEL_OR_SKIP(model);
  const ModelConfig& c = model->config();
  EXPECT_EQ(c.arch_name, "gemma3");
  EXPECT_EQ(c.n_layers, 18);
  EXPECT_EQ(c.dim, 640);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.n_kv_heads, 1);
  EXPECT_EQ(c.sliding_window, 512);
  EXPECT_EQ(model->n_rope_tables(), 2);
  for (int l = 0; l < c.n_layers; ++l) {
    const bool global = l % 6 == 5;
    EXPECT_EQ(model->layer(l).window, global ? 0 : 512) << "layer " << l;
    EXPECT_EQ(model->layer(l).rope_table, global ? 0 : 1) << "layer " << l;
  }
}

// Each golden prompt as one prefill, then its greedy tokens one decode step at a time.
TEST(Gemma3Model, TeacherForcedDecodeMatchesLlamaCpp) {
  GEMMA3_MODEL_OR_SKIP(model);
  RunnerOptions opt;
  opt.max_batch_tokens = 64;
  opt.max_seqs = 1;
  CpuRunner runner(*model, opt);
  const int V = runner.n_vocab();
  double sum = 0, worst = 0;
  int n = 0, decisive = 0;
  const auto golden = test::load_golden("gemma-3-270m-q4_k_m");
  ASSERT_EQ(golden.size(), 5u);
  for (const auto& g : golden) {
    SCOPED_TRACE(g.prompt);
    const int n_total = int(g.prompt_tokens.size() + g.greedy_tokens.size());
    const int n_blocks = (n_total + 15) / 16;
    KvCacheStorage kv(runner.kv_config(2 * n_blocks + 1, 16));
    const auto table = test::scattered_table(n_blocks);
    int32_t n_past = 0;
    for (size_t i = 0; i < g.steps.size(); ++i) {
      SeqSlice s;
      s.n_past = n_past;
      s.tokens = i == 0 ? std::span<const int32_t>(g.prompt_tokens)
                        : std::span<const int32_t>(&g.greedy_tokens[i - 1], 1);
      s.block_table = table;
      const float* row = runner.forward(ForwardBatch{std::span<const SeqSlice>(&s, 1)}, kv);
      n_past += int32_t(s.tokens.size());
      const double lse = logsumexp(row, V);
      const auto& top = g.steps[i].top;
      for (int j = 0; j < 4; ++j) {
        const double d =
            std::abs((row[top[size_t(j)].first] - lse) - (top[size_t(j)].second - g.steps[i].logsumexp));
        sum += d;
        worst = std::max(worst, d);
        ++n;
      }
      if (top[0].second - top[1].second > 0.5) {
        ++decisive;
        EXPECT_EQ(test::argmax(row, V), top[0].first) << "step " << i;
      }
    }
  }
  const double mean = sum / n;
  std::printf(
      "gemma-3-270m q4_k_m vs llama.cpp: mean |dlogprob| %.4f over %d top-4 entries, worst %.3f; %d "
      "decisive steps\n",
      mean, n, worst, decisive);
  EXPECT_LT(mean, 0.15);
  EXPECT_LT(worst, 1.5);
  EXPECT_GT(decisive, 100);
}

// The golden prompts prefilled and decoded together on two threads: every logit equals
// the same sequence's alone on one thread.
TEST(Gemma3Model, BatchedDecodeEqualsAloneBitExact) {
  GEMMA3_MODEL_OR_SKIP(model);
  const auto golden = test::load_golden("gemma-3-270m-q4_k_m");
  const int n_seqs = int(golden.size()), kDecode = 6;
  RunnerOptions opt;
  opt.max_batch_tokens = 128;
  opt.max_seqs = n_seqs;
  opt.n_threads = 2;
  CpuRunner batched(*model, opt);
  opt.n_threads = 1;
  opt.max_seqs = 1;
  CpuRunner alone(*model, opt);
  const int V = batched.n_vocab(), n_blocks = 4;
  KvCacheStorage kv_batch(batched.kv_config(n_seqs * n_blocks, 16));
  std::vector<std::vector<int32_t>> tables(static_cast<size_t>(n_seqs)), tokens(static_cast<size_t>(n_seqs));
  for (int q = 0; q < n_seqs; ++q) {
    for (int b = 0; b < n_blocks; ++b) tables[size_t(q)].push_back(n_seqs * (n_blocks - 1 - b) + q);
    tokens[size_t(q)] = golden[size_t(q)].prompt_tokens;
    tokens[size_t(q)].insert(tokens[size_t(q)].end(), golden[size_t(q)].greedy_tokens.begin(),
                             golden[size_t(q)].greedy_tokens.begin() + kDecode);
  }
  auto slice = [&](int q, int32_t pos, size_t n) {
    SeqSlice s;
    s.n_past = pos;
    s.tokens = std::span<const int32_t>(tokens[size_t(q)].data() + pos, n);
    s.block_table = tables[size_t(q)];
    s.logits = LogitsMode::Last;
    return s;
  };
  // Batched: all prompts in one step, then one decode token each per step.
  std::vector<std::vector<float>> got(static_cast<size_t>(n_seqs));
  for (int step = 0; step <= kDecode; ++step) {
    std::vector<SeqSlice> batch;
    for (int q = 0; q < n_seqs; ++q) {
      const int32_t np = int32_t(golden[size_t(q)].prompt_tokens.size());
      batch.push_back(step == 0 ? slice(q, 0, size_t(np)) : slice(q, np + step - 1, 1));
    }
    const float* lg = batched.forward(ForwardBatch{batch}, kv_batch);
    for (int q = 0; q < n_seqs; ++q)
      got[size_t(q)].insert(got[size_t(q)].end(), lg + q * V, lg + (q + 1) * V);
  }
  for (int q = 0; q < n_seqs; ++q) {
    KvCacheStorage kv(alone.kv_config(n_seqs * n_blocks, 16));
    const int32_t np = int32_t(golden[size_t(q)].prompt_tokens.size());
    for (int step = 0; step <= kDecode; ++step) {
      const SeqSlice s = step == 0 ? slice(q, 0, size_t(np)) : slice(q, np + step - 1, 1);
      const float* lg = alone.forward(ForwardBatch{std::span<const SeqSlice>(&s, 1)}, kv);
      for (int v = 0; v < V; ++v)
        ASSERT_EQ(got[size_t(q)][size_t(step * V + v)], lg[v]) << "sequence " << q << " step " << step;
    }
  }
}

// 700 positions: the local layers' window (512 keys) slides, the global layers see all;
// decode steps on two threads split the keys by segment. Same bits as one thread.
TEST(Gemma3Model, PastTheSlidingWindowSplitEqualsOneThreadBitExact) {
  GEMMA3_MODEL_OR_SKIP(model);
  RunnerOptions opt;
  opt.max_batch_tokens = 256;
  opt.max_seqs = 1;
  opt.n_threads = 2;
  CpuRunner split(*model, opt);
  opt.n_threads = 1;
  CpuRunner single(*model, opt);
  const int V = split.n_vocab();
  std::mt19937 rng(3);
  std::vector<int32_t> tokens(704);
  tokens[0] = 2;  // <bos>
  for (size_t i = 1; i < tokens.size(); ++i) tokens[i] = 1000 + int32_t(rng() % 20000);
  const int n_blocks = int(tokens.size() + 15) / 16;
  KvCacheStorage kv_split(split.kv_config(2 * n_blocks + 1, 16)),
      kv_single(single.kv_config(2 * n_blocks + 1, 16));
  const auto table = test::scattered_table(n_blocks);
  int32_t pos = 0;
  const int64_t split_before = split.stats().split_tiles;
  while (pos < int32_t(tokens.size())) {
    const int32_t n = pos < 700 ? std::min<int32_t>(256, 700 - pos) : 1;
    SeqSlice s;
    s.n_past = pos;
    s.tokens = std::span<const int32_t>(tokens.data() + pos, size_t(n));
    s.block_table = table;
    const float* a = split.forward(ForwardBatch{std::span<const SeqSlice>(&s, 1)}, kv_split);
    const std::vector<float> got(a, a + V);
    const float* b = single.forward(ForwardBatch{std::span<const SeqSlice>(&s, 1)}, kv_single);
    for (int v = 0; v < V; ++v) ASSERT_EQ(got[size_t(v)], b[v]) << "step at " << pos << " logit " << v;
    pos += n;
  }
  EXPECT_EQ(split.stats().split_tiles - split_before, 4);  // each decode step split its keys
}

}  // namespace
}  // namespace kvserve

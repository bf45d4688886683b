// Gemma-3-270M through the engine with the hybrid KV cache (EngineConfig::hybrid_kv_cache):
// its 15 sliding-window layers (512 keys) keep only their window's blocks, its 3 global
// layers every position. Contexts well past the window, chunked prefill, prefix-cache
// hits, forks (n = 2) and speculative decoding give exactly the tokens the cache that
// keeps everything gives, in less memory.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <vector>

#include "common/test_paths.h"
#include "gemma3/gemma3_assets.h"
#include "kvserve/engine.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace kvserve {
namespace {

struct Gemma3 {
  std::shared_ptr<const Model> model;
  std::shared_ptr<const Tokenizer> tok;
};

const Gemma3* gemma3() {
  static const Gemma3 g{test::gemma3_model_shared(), test::gemma3_tokenizer_shared()};
  return g.model && g.tok ? &g : nullptr;
}

struct Outcome {
  std::vector<std::vector<int32_t>> tokens;  // every completion of every request, both rounds
  double peak_kv_usage = 0.0;                // most of the pool any step held
  double prefix_hit_rate = 0.0;              // of the second round
};

void track_usage(int64_t, int64_t, void* user) {
  auto* p = static_cast<std::pair<Engine*, double>*>(user);
  p->second = std::max(p->second, p->first->stats().kv_usage);
}

// Two rounds on one engine: three ~1,100-token prompts sharing a 1,000-token prefix (one
// sampled with n = 2), then three more with the same prefix (prefix-cache hits past the
// window).
Outcome run(const Gemma3& g, bool hybrid, bool sample = true, SpecMethod spec = SpecMethod::None) {
  EngineConfig c;
  c.hybrid_kv_cache = hybrid;
  c.block_size = 16;
  // The same bytes either way: 240 blocks of all 18 layers, or 1,440 of one group's 3.
  c.kv_cache_memory = int64_t(240) * 16 * 18 * 2 * 256 * 2;
  c.max_num_seqs = 8;
  c.max_num_batched_tokens = 128;  // prefill in chunks, across the window's edge
  c.n_threads = 2;
  if (spec != SpecMethod::None) {
    c.speculative.method = spec;
    c.speculative.num_tokens = 3;
  }
  auto e = Engine::create(c, g.model, g.tok);
  EXPECT_TRUE(e) << e.error().message;
  if (!e) return {};
  Engine& engine = **e;

  std::mt19937 rng(3);
  std::vector<int32_t> prefix = {2};  // BOS
  while (prefix.size() < 1000) prefix.push_back(int32_t(1000 + rng() % 20000));
  Outcome out;
  for (int round = 0; round < 2; ++round) {
    std::vector<GenerateInput> inputs(3);
    std::vector<SamplingParams> params(3);
    for (size_t i = 0; i < inputs.size(); ++i) {
      inputs[i].token_ids = prefix;
      for (int t = 0; t < 60 + 30 * int(i); ++t) inputs[i].token_ids.push_back(int32_t(1000 + rng() % 20000));
      params[i].max_tokens = 24;
      params[i].ignore_eos = true;
      params[i].temperature = 0.0f;
    }
    if (sample) {
      params[1].temperature = 0.9f;  // sampled, two completions: the fork shares the prompt's blocks
      params[1].n = 2;
      params[1].seed = 11;
    }
    std::pair<Engine*, double> usage{&engine, 0.0};
    GenerateStats stats;
    auto outs = generate(engine, inputs, SamplingParams{}, &stats, params, track_usage, &usage);
    for (const auto& o : outs) {
      EXPECT_TRUE(o.error.empty()) << o.error;
      for (const auto& cpl : o.completions) out.tokens.push_back(cpl.token_ids);
    }
    out.peak_kv_usage = std::max(out.peak_kv_usage, usage.second);
    if (round == 1) out.prefix_hit_rate = stats.prefix_cache_hit_rate;
    EXPECT_EQ(engine.stats().blocks_used, 0);  // every block released
  }
  return out;
}

TEST(Gemma3Engine, HybridKvCacheGivesTheSameTokensInLessMemory) {
  const Gemma3* g = gemma3();
  if (!g) KVSERVE_MISSING_ASSET(test::gemma3_path() << " (run scripts/fetch_model.sh gemma3)");
  const Outcome full = run(*g, false), hybrid = run(*g, true);
  ASSERT_EQ(full.tokens.size(), 8u);
  ASSERT_EQ(hybrid.tokens.size(), full.tokens.size());
  for (size_t i = 0; i < full.tokens.size(); ++i) {
    EXPECT_EQ(full.tokens[i].size(), 24u);
    EXPECT_EQ(hybrid.tokens[i], full.tokens[i]) << "completion " << i;
  }
  // The second round found its 1,000-token prefix cached, as much of it in both layouts
  // (the local layers' blocks before the window are not needed for a hit).
  EXPECT_GT(full.prefix_hit_rate, 0.7);
  EXPECT_EQ(hybrid.prefix_hit_rate, full.prefix_hit_rate);
  // 1,100 tokens: the local layers (5/6 of the bytes) hold about 512 + a chunk of them.
  std::printf("peak KV usage: full %.3f, hybrid %.3f\n", full.peak_kv_usage, hybrid.peak_kv_usage);
  EXPECT_LT(hybrid.peak_kv_usage, 0.75 * full.peak_kv_usage);
}

// Speculative verification writes draft tokens past the verified ones and rolls back:
// the windows release only what the verified tokens no longer need.
TEST(Gemma3Engine, HybridKvCacheWithSpeculativeDecodingGivesTheSameTokens) {
  const Gemma3* g = gemma3();
  if (!g) KVSERVE_MISSING_ASSET(test::gemma3_path() << " (run scripts/fetch_model.sh gemma3)");
  // Greedy: a sampled token depends on the draws speculation makes.
  const Outcome full = run(*g, false, false), spec = run(*g, true, false, SpecMethod::LayerSkip);
  ASSERT_EQ(full.tokens.size(), 6u);
  ASSERT_EQ(spec.tokens.size(), full.tokens.size());
  for (size_t i = 0; i < full.tokens.size(); ++i)
    EXPECT_EQ(spec.tokens[i], full.tokens[i]) << "completion " << i;
}

// --num-kv-blocks counts blocks of every layer (what a caller sizing for tokens means):
// with the hybrid cache the pool holds the same bytes as that many blocks of one group's
// layers per group, and a request sized that way fits.
TEST(Gemma3Engine, NumKvBlocksCountsBlocksOfEveryLayer) {
  const Gemma3* g = gemma3();
  if (!g) KVSERVE_MISSING_ASSET(test::gemma3_path() << " (run scripts/fetch_model.sh gemma3)");
  EngineConfig c;
  c.num_kv_blocks = 13;  // 192 tokens of context, one block to spare
  c.max_model_len = 192;
  c.max_num_seqs = 1;
  c.n_threads = 2;
  auto e = Engine::create(c, g->model, g->tok);
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_EQ((*e)->config().num_kv_blocks, 13 * 6);  // 6 KV groups of 3 layers
  GenerateInput in;
  for (int i = 0; i < 128; ++i) in.token_ids.push_back(1000 + i);
  SamplingParams p;
  p.max_tokens = 64;
  p.ignore_eos = true;
  p.temperature = 0.0f;
  auto outs = generate(**e, std::span(&in, 1), p);
  ASSERT_EQ(outs.size(), 1u);
  EXPECT_TRUE(outs[0].error.empty()) << outs[0].error;
  EXPECT_EQ(outs[0].completions.at(0).token_ids.size(), 64u);
}

}  // namespace
}  // namespace kvserve

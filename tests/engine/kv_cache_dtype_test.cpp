// The KV-cache dtype at engine level: f16 (the default) fits twice the blocks in a memory
// budget, and both dtypes keep greedy outputs independent of batching, chunking and
// preemption (every reader sees the values rounded once, when written).
#include <gtest/gtest.h>

#include <random>

#include "common/test_paths.h"
#include "kvserve/engine.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace kvserve {
namespace {

struct Loaded {
  std::shared_ptr<const Model> model;
  std::shared_ptr<const Tokenizer> tok;
};

const Loaded& stories() {
  static const Loaded l = [] {
    auto m = Model::load(test::shared_path("models/stories260K.gguf"));
    EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error().message);
    auto t = Tokenizer::from_gguf((*m)->gguf());
    EXPECT_TRUE(t.ok());
    return Loaded{std::shared_ptr<const Model>(std::move(*m)),
                  std::shared_ptr<const Tokenizer>(std::move(*t))};
  }();
  return l;
}

EngineConfig config(KvDtype dt) {
  EngineConfig c;
  c.num_kv_blocks = 256;
  c.max_num_seqs = 16;
  c.max_num_batched_tokens = 256;
  c.n_threads = 1;
  c.kv_cache_dtype = dt;
  return c;
}

std::unique_ptr<Engine> make(const EngineConfig& c) {
  auto e = Engine::create(c, stories().model, stories().tok);
  EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error().message);
  return std::move(*e);
}

TEST(KvCacheDtype, DefaultIsF16AndABudgetHoldsTwiceTheBlocks) {
  EXPECT_EQ(EngineConfig{}.kv_cache_dtype, KvDtype::F16);
  int blocks[2];
  for (KvDtype dt : {KvDtype::F16, KvDtype::F32}) {
    EngineConfig c = config(dt);
    c.num_kv_blocks = 0;
    c.kv_cache_memory = 8 << 20;
    auto e = make(c);
    blocks[dt == KvDtype::F32] = e->config().num_kv_blocks;
    EXPECT_LE(e->config().kv_cache_memory, int64_t(8 << 20));
  }
  EXPECT_GT(blocks[1], 0);
  EXPECT_GE(blocks[0], 2 * blocks[1]);  // floor(budget / block bytes) of half-size blocks
  EXPECT_LE(blocks[0], 2 * blocks[1] + 1);
}

struct Work {
  std::vector<GenerateInput> inputs;
  std::vector<SamplingParams> params;
};

Work workload() {
  std::mt19937_64 rng(7);
  Work w;
  for (int i = 0; i < 12; ++i) {
    GenerateInput in;
    in.token_ids.push_back(1);
    const int len = 1 + int(rng() % 90);
    while (int(in.token_ids.size()) < len) in.token_ids.push_back(3 + int32_t(rng() % 500));
    SamplingParams p;
    p.temperature = 0.0f;
    p.max_tokens = 1 + int(rng() % 40);
    p.ignore_eos = true;
    w.inputs.push_back(std::move(in));
    w.params.push_back(p);
  }
  return w;
}

std::vector<std::vector<int32_t>> together(const EngineConfig& c, const Work& w) {
  auto e = make(c);
  std::vector<std::vector<int32_t>> r;
  for (const auto& o : generate(*e, w.inputs, SamplingParams{}, nullptr, w.params))
    r.push_back(o.completions.at(0).token_ids);
  return r;
}

TEST(KvCacheDtype, BatchedChunkedAndPreemptedEqualAloneForBothDtypes) {
  const Work w = workload();
  std::vector<std::vector<int32_t>> per_dtype[2];
  for (KvDtype dt : {KvDtype::F16, KvDtype::F32}) {
    SCOPED_TRACE(kv_dtype_name(dt));
    std::vector<std::vector<int32_t>> alone;
    {
      auto e = make(config(dt));
      for (size_t i = 0; i < w.inputs.size(); ++i)
        alone.push_back(
            generate(*e, std::span(&w.inputs[i], 1), w.params[i]).at(0).completions.at(0).token_ids);
    }
    EXPECT_EQ(together(config(dt), w), alone) << "batched";
    EngineConfig chunked = config(dt);
    chunked.max_chunk_tokens = 7;
    chunked.max_num_batched_tokens = 48;
    EXPECT_EQ(together(chunked, w), alone) << "chunked";
    EngineConfig tiny = config(dt);
    tiny.num_kv_blocks = 8;  // 128 tokens: sequences are preempted and recomputed
    EXPECT_EQ(together(tiny, w), alone) << "preempted";
    per_dtype[dt == KvDtype::F32] = alone;
  }
  // f16 rounding of K/V rarely changes a greedy choice of this tiny model: most tokens agree.
  size_t same = 0, total = 0;
  for (size_t i = 0; i < w.inputs.size(); ++i)
    for (size_t t = 0; t < per_dtype[0][i].size(); ++t, ++total)
      same += per_dtype[0][i][t] == per_dtype[1][i][t];
  EXPECT_GT(double(same), 0.9 * double(total));
}

}  // namespace
}  // namespace kvserve

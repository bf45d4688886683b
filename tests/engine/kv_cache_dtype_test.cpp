// The KV-cache dtype at engine level: the pool is sized from each dtype's block bytes (f16,
// the default, fits twice f32's blocks; int8 / fp8 more again), and every dtype keeps
// greedy outputs independent of batching, chunking and preemption (every reader sees the
// values rounded once, when written).
#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include "common/kv_stored_value.h"
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

TEST(KvCacheDtype, DefaultIsF16AndTheBudgetSizesThePoolFromEachDtypesBlockBytes) {
  EXPECT_EQ(EngineConfig{}.kv_cache_dtype, KvDtype::F16);
  const ModelConfig& mc = stories().model->config();
  constexpr int64_t kBudget = 8 << 20;
  int blocks[5] = {};
  for (KvDtype dt : kAllKvDtypes) {
    SCOPED_TRACE(kv_dtype_name(dt));
    EngineConfig c = config(dt);
    c.num_kv_blocks = 0;
    c.kv_cache_memory = kBudget;
    auto e = make(c);
    blocks[int(dt)] = e->config().num_kv_blocks;
    EXPECT_LE(e->config().kv_cache_memory, kBudget);
    // K and V of every layer and KV head: elements, plus a 4-byte scale per slot for int8 / fp8.
    const int64_t bytes = 2 * int64_t(mc.n_layers) * mc.n_kv_heads *
                          kv_head_elems(dt, c.block_size, mc.head_dim) * int64_t(kv_dtype_size(dt));
    EXPECT_EQ(blocks[int(dt)], kBudget / bytes);
  }
  EXPECT_GT(blocks[int(KvDtype::F32)], 0);
  EXPECT_GE(blocks[int(KvDtype::F16)], 2 * blocks[int(KvDtype::F32)]);  // half-size blocks
  EXPECT_EQ(blocks[int(KvDtype::BF16)], blocks[int(KvDtype::F16)]);
  EXPECT_GT(blocks[int(KvDtype::Int8)], blocks[int(KvDtype::F16)]);  // (this model's head_dim is 8: 1.33x)
  EXPECT_EQ(blocks[int(KvDtype::Fp8)], blocks[int(KvDtype::Int8)]);
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

TEST(KvCacheDtype, BatchedChunkedAndPreemptedEqualAloneForEveryDtype) {
  const Work w = workload();
  std::vector<std::vector<int32_t>> per_dtype[5];
  for (KvDtype dt : kAllKvDtypes) {
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
    per_dtype[int(dt)] = alone;
  }
  // Greedy tokens as with f32 KV: after a sequence's first difference the rest may diverge,
  // so the shares are low for the coarse types on this tiny model (head_dim 8: one scale
  // per 8 values); measured f16 100 %, bf16 93 %, int8 77 %, fp8 39 %. A broken reader
  // gives ~0 (512 tokens). Quality on real models: `kvserve eval kv-cache`.
  for (KvDtype dt : kAllKvDtypes) {
    size_t same = 0, total = 0;
    for (size_t i = 0; i < w.inputs.size(); ++i)
      for (size_t t = 0; t < per_dtype[int(dt)][i].size(); ++t, ++total)
        same += per_dtype[int(dt)][i][t] == per_dtype[int(KvDtype::F32)][i][t];
    std::printf("%s: %zu of %zu greedy tokens as with f32 KV\n", kv_dtype_name(dt), same, total);
    const double floor = dt == KvDtype::Fp8 ? 0.25 : dt == KvDtype::Int8 ? 0.6 : 0.85;
    EXPECT_GT(double(same), floor * double(total)) << kv_dtype_name(dt);
  }
}

}  // namespace
}  // namespace kvserve

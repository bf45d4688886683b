// Running several sequences together in one batch — prefill chunks mixed with decode
// tokens, interleaved block tables — gives bit-identical logits to running each alone,
// both the same steps one sequence at a time and one whole-sequence prefill: every
// matmul and attention kernel rounds a row the same way wherever it sits in a batch of
// any size (batch invariance, tests/kernels/*_invariance_test.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "model_test_util.h"

namespace kvserve {
namespace {

struct Part {
  int seq;
  int n_new;
  LogitsMode mode;
};

constexpr int kBlockSize = 4;

// Compares against the same steps run one sequence at a time and against one
// whole-sequence prefill, for exact equality.
void check_equivalence(const std::string& model_name) {
  auto model = Model::load(test::shared_path("models/" + model_name + ".gguf"));
  ASSERT_TRUE(model) << model.error().message;
  const auto golden = test::load_golden(model_name);
  ASSERT_GE(golden.size(), 4u);
  RunnerOptions opt;
  opt.max_batch_tokens = 96;
  opt.max_seqs = 4;
  CpuRunner runner(**model, opt);
  const int V = runner.n_vocab();

  // Four sequences (prompt + greedy continuation) and their logits when run alone.
  std::vector<std::vector<int32_t>> seqs;
  std::vector<std::vector<float>> alone;
  for (const int g : {3, 1, 2, 0}) {  // prompts of 37, 17, 13 and 5 tokens
    auto t = golden[size_t(g)].prompt_tokens;
    t.insert(t.end(), golden[size_t(g)].greedy_tokens.begin(), golden[size_t(g)].greedy_tokens.begin() + 8);
    // Same block size as the batched run: block boundaries are where the online softmax
    // rescales, so other sizes round differently.
    alone.push_back(test::run_prefill(runner, t, LogitsMode::All, kBlockSize));
    seqs.push_back(std::move(t));
  }

  // Reference for the same steps run one sequence per forward, each with its own pool.
  std::vector<std::unique_ptr<KvCacheStorage>> kv_alone;
  for (int s = 0; s < 4; ++s)
    kv_alone.push_back(std::make_unique<KvCacheStorage>(runner.kv_config(4 * 16, kBlockSize)));

  // One pool; sequence s owns blocks s, s + 4, s + 8, ... in reversed order, so the
  // tables interleave and run backwards through memory.
  const int max_blocks = 16;
  KvCacheStorage kv(runner.kv_config(4 * max_blocks, kBlockSize));
  std::vector<std::vector<int32_t>> tables(4);
  for (int s = 0; s < 4; ++s)
    for (int b = 0; b < max_blocks; ++b) tables[size_t(s)].push_back(4 * (max_blocks - 1 - b) + s);

  const std::vector<std::vector<Part>> schedule = {
      {{0, 10, LogitsMode::All}, {1, 9, LogitsMode::All}, {2, 5, LogitsMode::None}},
      {{0, 6, LogitsMode::Last}, {1, 1, LogitsMode::All}, {2, 8, LogitsMode::All}, {3, 5, LogitsMode::All}},
      {{3, 3, LogitsMode::All}, {2, 1, LogitsMode::Last}, {1, 7, LogitsMode::Last}, {0, 1, LogitsMode::Last}},
      {{0, 1, LogitsMode::Last}, {1, 1, LogitsMode::All}, {2, 1, LogitsMode::Last}, {3, 1, LogitsMode::All}},
  };
  std::vector<int32_t> n_past(4, 0);
  double worst = 0, worst_same = 0;
  int checked = 0;
  for (size_t step = 0; step < schedule.size(); ++step) {
    std::vector<SeqSlice> slices;
    for (const Part& p : schedule[step]) {
      const auto& toks = seqs[size_t(p.seq)];
      ASSERT_LE(size_t(n_past[size_t(p.seq)] + p.n_new), toks.size());
      SeqSlice s;
      s.n_past = n_past[size_t(p.seq)];
      s.tokens = std::span<const int32_t>(toks.data() + s.n_past, size_t(p.n_new));
      s.block_table = tables[size_t(p.seq)];
      s.logits = p.mode;
      slices.push_back(s);
    }
    // Each slice alone first (the runner's logits buffer is reused, so keep copies).
    std::vector<std::vector<float>> step_alone;
    for (size_t i = 0; i < slices.size(); ++i) {
      const float* lg = runner.forward(ForwardBatch{std::span<const SeqSlice>(&slices[i], 1)},
                                       *kv_alone[size_t(schedule[step][i].seq)]);
      step_alone.emplace_back(lg, lg + logits_rows(slices[i]) * V);
    }
    const float* logits = runner.forward(ForwardBatch{slices}, kv);
    int64_t row = 0;
    for (size_t i = 0; i < slices.size(); ++i) {
      const SeqSlice& s = slices[i];
      const int seq = schedule[step][i].seq;
      const int64_t rows = logits_rows(s);
      const int64_t first_pos = s.n_past + int64_t(s.tokens.size()) - rows;
      for (int64_t r = 0; r < rows; ++r, ++row) {
        const float* ours = logits + row * V;
        const float* same_steps = step_alone[i].data() + r * V;
        const float* whole = alone[size_t(seq)].data() + (first_pos + r) * V;
        for (int v = 0; v < V; ++v) {
          worst_same = std::max(worst_same, double(std::abs(ours[v] - same_steps[v])));
          ASSERT_EQ(ours[v], same_steps[v]) << "step " << step << " seq " << seq << " pos " << first_pos + r;
          worst = std::max(worst, double(std::abs(ours[v] - whole[v])));
          ASSERT_EQ(ours[v], whole[v]) << "step " << step << " seq " << seq << " pos " << first_pos + r;
        }
        ++checked;
      }
      n_past[size_t(seq)] += int32_t(s.tokens.size());
    }
  }
  EXPECT_EQ(checked, 10 + 9 + 1 + 1 + 8 + 5 + 3 + 1 + 1 + 1 + 1 + 1 + 1 + 1);
  std::printf("%s: %d rows, worst |logit diff| vs same steps alone %.3g, vs whole prefill %.3g\n",
              model_name.c_str(), checked, worst_same, worst);
}

TEST(BatchEquivalence, Stories260K) {
  check_equivalence("stories260K");
}
TEST(BatchEquivalence, Synth3mF16) {
  check_equivalence("synth-3m-f16");
}
TEST(BatchEquivalence, Synth3mQ8_0) {
  check_equivalence("synth-3m-q8_0");
}
TEST(BatchEquivalence, Synth3mQ4_0) {
  check_equivalence("synth-3m-q4_0");
}
TEST(BatchEquivalence, Synth3mQ4KM) {
  check_equivalence("synth-3m-q4_k_m");
}
TEST(BatchEquivalence, Synth3mQ6K) {
  check_equivalence("synth-3m-q6_k");
}

}  // namespace
}  // namespace kvserve

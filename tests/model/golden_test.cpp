// Teacher-forced comparison with llama.cpp's logits (../shared/golden), and free-running
// greedy decoding of stories260K through the paged cache.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/cpu/activation.h"
#include "model_test_util.h"

namespace kvserve {
namespace {

struct GoldenCase {
  const char* model;
  // Absolute tolerance on log-probabilities (and on the top-2 margin below which the
  // top-1 token may legitimately differ), per weight type: llama.cpp itself moves by
  // ~0.01 between batched and one-by-one evaluation in f32, and quantized files compute
  // with quantized activations there (shared/README.md).
  double tol;
};

class Golden : public ::testing::TestWithParam<GoldenCase> {};

// Compares logits rows with llama.cpp's steps; rows(i) gives our row for step i.
template <class RowFn>
void compare_steps(const test::GoldenPrompt& g, int V, double tol, RowFn rows, double& worst) {
  for (size_t i = 0; i < g.steps.size(); ++i) {
    const float* row = rows(i);
    const double lse = logsumexp(row, V);
    const auto& top = g.steps[i].top;
    if (top[0].second - top[1].second > tol) {
      EXPECT_EQ(test::argmax(row, V), top[0].first) << "step " << i;
    }
    for (const auto& [tok, logit] : top) {
      const double ours = row[tok] - lse, theirs = logit - g.steps[i].logsumexp;
      worst = std::max(worst, std::abs(ours - theirs));
      EXPECT_NEAR(ours, theirs, tol) << "step " << i << " token " << tok;
    }
  }
}

// The prompt and its greedy continuation as one prefill with logits for every row.
TEST_P(Golden, TeacherForcedMatchesLlamaCpp) {
  const GoldenCase& gc = GetParam();
  auto model = Model::load(test::shared_path(std::string("models/") + gc.model + ".gguf"));
  ASSERT_TRUE(model) << model.error().message;
  const auto golden = test::load_golden(gc.model);
  ASSERT_FALSE(golden.empty());
  RunnerOptions opt;
  opt.max_batch_tokens = 128;
  opt.max_seqs = 1;
  CpuRunner runner(**model, opt);
  const int V = runner.n_vocab();
  double worst = 0;
  for (const auto& g : golden) {
    SCOPED_TRACE(g.prompt);
    std::vector<int32_t> tokens = g.prompt_tokens;
    tokens.insert(tokens.end(), g.greedy_tokens.begin(), g.greedy_tokens.end());
    ASSERT_LE(tokens.size(), size_t(opt.max_batch_tokens));
    const auto logits = test::run_prefill(runner, tokens, LogitsMode::All);
    compare_steps(
        g, V, gc.tol, [&](size_t i) { return logits.data() + (g.prompt_tokens.size() - 1 + i) * size_t(V); },
        worst);
  }
  std::printf("%s prefill: worst |logprob diff| %.4g (tolerance %.3g)\n", gc.model, worst, gc.tol);
}

// The prompt as one prefill, then each greedy token as a decode step through the paged
// cache (the decode attention kernel and single-token matmuls).
TEST_P(Golden, TeacherForcedDecodeStepsMatchLlamaCpp) {
  const GoldenCase& gc = GetParam();
  auto model = Model::load(test::shared_path(std::string("models/") + gc.model + ".gguf"));
  ASSERT_TRUE(model) << model.error().message;
  RunnerOptions opt;
  opt.max_batch_tokens = 64;
  opt.max_seqs = 1;
  CpuRunner runner(**model, opt);
  const int V = runner.n_vocab();
  const int block_size = 8;
  double worst = 0;
  for (const auto& g : test::load_golden(gc.model)) {
    SCOPED_TRACE(g.prompt);
    const int n_total = int(g.prompt_tokens.size() + g.greedy_tokens.size());
    const int n_blocks = (n_total + block_size - 1) / block_size;
    KvCacheStorage kv(runner.kv_config(2 * n_blocks + 1, block_size));
    const auto table = test::scattered_table(n_blocks);
    std::vector<float> rows;  // [steps, V]
    int32_t n_past = 0;
    for (size_t i = 0; i < g.steps.size(); ++i) {
      SeqSlice s;
      s.n_past = n_past;
      s.tokens = i == 0 ? std::span<const int32_t>(g.prompt_tokens)
                        : std::span<const int32_t>(&g.greedy_tokens[i - 1], 1);
      s.block_table = table;
      const float* lg = runner.forward(ForwardBatch{std::span<const SeqSlice>(&s, 1)}, kv);
      rows.insert(rows.end(), lg, lg + V);
      n_past += int32_t(s.tokens.size());
    }
    compare_steps(
        g, V, gc.tol, [&](size_t i) { return rows.data() + i * size_t(V); }, worst);
  }
  std::printf("%s decode: worst |logprob diff| %.4g (tolerance %.3g)\n", gc.model, worst, gc.tol);
}

INSTANTIATE_TEST_SUITE_P(
    Models, Golden,
    ::testing::Values(GoldenCase{"stories260K", 2e-2}, GoldenCase{"llama-2-tiny-random", 4e-2},
                      GoldenCase{"synth-3m-f32", 2e-2}, GoldenCase{"synth-3m-f16", 4e-2},
                      GoldenCase{"synth-3m-bf16", 4e-2}, GoldenCase{"synth-3m-q8_0", 0.1},
                      GoldenCase{"synth-3m-q4_0", 0.25}, GoldenCase{"synth-3m-q4_1", 0.25},
                      GoldenCase{"synth-3m-q4_k_m", 0.25}, GoldenCase{"synth-3m-q5_k_m", 0.25},
                      GoldenCase{"synth-3m-q6_k", 0.25}),
    [](const auto& info) {
      std::string n = info.param.model;
      for (char& ch : n)
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return n;
    });

// Greedy decoding token by token (prefill, then one decode step per token through the
// paged cache) reproduces llama.cpp's greedy continuation exactly.
TEST(GoldenGreedy, Stories260KFreeRunning) {
  auto model = Model::load(test::shared_path("models/stories260K.gguf"));
  ASSERT_TRUE(model) << model.error().message;
  const int eos = int((*model)->gguf().get_int("tokenizer.ggml.eos_token_id").value_or(2));
  RunnerOptions opt;
  opt.max_batch_tokens = 64;
  opt.max_seqs = 1;
  CpuRunner runner(**model, opt);
  const int V = runner.n_vocab();
  const int block_size = 4;  // small blocks: decode crosses many block boundaries
  for (const auto& g : test::load_golden("stories260K")) {
    SCOPED_TRACE(g.prompt);
    const int n_total = int(g.prompt_tokens.size() + g.greedy_tokens.size());
    const int n_blocks = (n_total + block_size - 1) / block_size;
    KvCacheStorage kv(runner.kv_config(2 * n_blocks + 1, block_size));
    const auto table = test::scattered_table(n_blocks);
    std::vector<int32_t> generated;
    std::vector<int32_t> step_tokens = g.prompt_tokens;
    int32_t n_past = 0;
    while (generated.size() < g.greedy_tokens.size()) {
      SeqSlice s;
      s.n_past = n_past;
      s.tokens = step_tokens;
      s.block_table = table;
      s.logits = LogitsMode::Last;
      const float* logits = runner.forward(ForwardBatch{std::span<const SeqSlice>(&s, 1)}, kv);
      n_past += int32_t(step_tokens.size());
      const int32_t next = test::argmax(logits, V);
      generated.push_back(next);
      if (next == eos) break;
      step_tokens = {next};
    }
    EXPECT_EQ(generated, g.greedy_tokens);
  }
}

}  // namespace
}  // namespace kvserve

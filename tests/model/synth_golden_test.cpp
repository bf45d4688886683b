// The architectures without a real model here (Phi-3, Mixtral, Qwen3-MoE) against
// llama.cpp itself: small random models (synth_arch_models.h) whose reference logits
// llama.cpp computed (scripts/make_synth_golden.sh -> tests/model/golden/*.jsonl, f32
// weights and K/V). Teacher-forced over the prompt and llama.cpp's greedy tokens, every
// one of llama.cpp's 8 best tokens at every step must have the same log-probability here
// within 1e-3, and the best token must agree wherever llama.cpp's margin is clear.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "model_test_util.h"
#include "synth_arch_models.h"

namespace kvserve {
namespace test {
void PrintTo(const SynthArch& s, std::ostream* os) {
  *os << s.name;
}
}  // namespace test
namespace {

namespace fs = std::filesystem;

std::string golden_path(const std::string& name) {
  return (fs::path(__FILE__).parent_path() / "golden" / (name + ".jsonl")).string();
}

class SynthGolden : public ::testing::TestWithParam<test::SynthArch> {};

TEST_P(SynthGolden, TeacherForcedLogprobsMatchLlamaCpp) {
  const test::SynthArch& s = GetParam();
  const std::vector<uint8_t> bytes = test::synth_arch_gguf(s);
  const fs::path file = fs::temp_directory_path() / (s.name + "-" + std::to_string(::getpid()) + ".gguf");
  std::ofstream(file, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  auto model = Model::load(file.string());
  fs::remove(file);
  ASSERT_TRUE(model) << model.error().message;
  RunnerOptions opt;
  opt.max_batch_tokens = 64;
  opt.max_seqs = 1;
  opt.n_threads = 1;
  CpuRunner runner(**model, opt);
  const int V = runner.n_vocab();
  ASSERT_EQ(V, s.vocab);

  std::ifstream in(golden_path(s.name));
  ASSERT_TRUE(in) << golden_path(s.name) << " (scripts/make_synth_golden.sh writes it)";
  const auto prompts = test::synth_golden_prompts(s.vocab);
  std::string line;
  size_t n_prompts = 0;
  double worst = 0.0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    const auto prompt = j.at("prompt_tokens").get<std::vector<int32_t>>();
    const auto greedy = j.at("greedy_tokens").get<std::vector<int32_t>>();
    ASSERT_LT(n_prompts, prompts.size());
    EXPECT_EQ(prompt, prompts[n_prompts]) << "the golden file was made from other prompts";
    ++n_prompts;
    // One forward over the prompt and the greedy tokens but the last: row
    // prompt.size() - 1 + i is the distribution of step i.
    std::vector<int32_t> tokens = prompt;
    tokens.insert(tokens.end(), greedy.begin(), greedy.end() - 1);
    KvCacheStorage kv(runner.kv_config(9, 16, KvDtype::F32));  // scattered_table(4) uses ids up to 8
    const std::vector<int32_t> table = test::scattered_table(4);
    SeqSlice sl;
    sl.tokens = tokens;
    sl.block_table = table;
    sl.logits = LogitsMode::All;
    const float* rows = runner.forward(ForwardBatch{std::span<const SeqSlice>(&sl, 1)}, kv);
    const auto& steps = j.at("steps");
    ASSERT_EQ(steps.size(), greedy.size());
    for (size_t i = 0; i < steps.size(); ++i) {
      const float* row = rows + (int64_t(prompt.size()) - 1 + int64_t(i)) * V;
      double mx = row[0], sum = 0.0;
      for (int v = 0; v < V; ++v) mx = std::max(mx, double(row[v]));
      for (int v = 0; v < V; ++v) sum += std::exp(double(row[v]) - mx);
      const double lse = mx + std::log(sum), their_lse = steps[i].at("logsumexp").get<double>();
      const auto& top = steps[i].at("top");
      for (const auto& e : top) {
        const int id = e.at(0).get<int>();
        const double theirs = e.at(1).get<double>() - their_lse, ours = double(row[id]) - lse;
        worst = std::max(worst, std::abs(theirs - ours));
        ASSERT_NEAR(ours, theirs, 1e-3)
            << s.name << ": prompt " << n_prompts - 1 << ", step " << i << ", token " << id;
      }
      const double margin = top[0].at(1).get<double>() - top[1].at(1).get<double>();
      if (margin > 1e-2) {
        const int best = int(std::max_element(row, row + V) - row);
        EXPECT_EQ(best, top[0].at(0).get<int>()) << s.name << ": step " << i;
      }
    }
  }
  EXPECT_EQ(n_prompts, prompts.size());
  RecordProperty("worst_abs_logprob_diff", std::to_string(worst));
}

INSTANTIATE_TEST_SUITE_P(Archs, SynthGolden, ::testing::ValuesIn(test::synth_archs()), [](const auto& info) {
  std::string n = info.param.name;
  for (char& c : n)
    if (c == '-') c = '_';
  return n;
});

}  // namespace
}  // namespace kvserve

// Helpers shared by the model tests: golden-file parsing and single-sequence runs.
#pragma once

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "cache/kv_cache.h"
#include "common/test_paths.h"
#include "model/cpu_runner.h"
#include "model/forward_batch.h"
#include "model/model.h"

namespace kvserve::test {

struct GoldenStep {
  std::vector<std::pair<int32_t, float>> top;  // llama.cpp's 8 best [token, logit]
  float logsumexp = 0;
};

struct GoldenPrompt {
  std::string prompt;
  std::vector<int32_t> prompt_tokens;  // with BOS
  std::vector<int32_t> greedy_tokens;
  std::vector<GoldenStep> steps;  // steps[i]: after prompt + greedy[:i]
};

inline std::vector<GoldenPrompt> load_golden(const std::string& model_name) {
  std::ifstream in(shared_path("golden/" + model_name + ".shared.jsonl"));
  std::vector<GoldenPrompt> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    GoldenPrompt g;
    g.prompt = j.at("prompt").get<std::string>();
    g.prompt_tokens = j.at("prompt_tokens").get<std::vector<int32_t>>();
    g.greedy_tokens = j.at("greedy_tokens").get<std::vector<int32_t>>();
    for (const auto& s : j.at("steps")) {
      GoldenStep st;
      for (const auto& t : s.at("top")) st.top.emplace_back(t.at(0).get<int32_t>(), t.at(1).get<float>());
      st.logsumexp = s.at("logsumexp").get<float>();
      g.steps.push_back(std::move(st));
    }
    out.push_back(std::move(g));
  }
  return out;
}

// A block table of n blocks whose ids are scattered (descending, every other id) over a
// pool of 2n + 1 blocks, so that no test passes by accident of contiguous storage.
inline std::vector<int32_t> scattered_table(int n_blocks) {
  std::vector<int32_t> t;
  for (int i = 0; i < n_blocks; ++i) t.push_back(2 * (n_blocks - i));
  return t;
}

// Runs tokens as one prefill of one sequence, returning the requested logits rows.
inline std::vector<float> run_prefill(CpuRunner& runner, const std::vector<int32_t>& tokens, LogitsMode mode,
                                      int block_size = 16, KvDtype kv_dtype = KvDtype::F16) {
  const int n_blocks = int(tokens.size() + size_t(block_size) - 1) / block_size;
  KvCacheStorage kv(runner.kv_config(2 * n_blocks + 1, block_size, kv_dtype));
  const auto table = scattered_table(n_blocks);
  SeqSlice s;
  s.n_past = 0;
  s.tokens = tokens;
  s.block_table = table;
  s.logits = mode;
  const float* logits = runner.forward(ForwardBatch{std::span<const SeqSlice>(&s, 1)}, kv);
  return std::vector<float>(logits, logits + logits_rows(s) * runner.n_vocab());
}

inline int32_t argmax(const float* x, int n) {
  return int32_t(std::max_element(x, x + n) - x);
}

}  // namespace kvserve::test

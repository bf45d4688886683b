// Reference logits from llama.cpp for the golden tests of synthetic models: for each
// prompt (token ids), the 8 highest logits and the log-sum-exp after the prompt and after
// each of its greedy tokens, as ../shared/golden/*.jsonl store them. Built and run by
// scripts/make_synth_golden.sh against the llama.cpp that scripts/build_llamacpp.sh
// builds; a reference tool only, never part of kvserve.
//   llamacpp_golden MODEL.gguf PROMPTS STEPS > out.jsonl   (PROMPTS: one prompt of ids per line)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "llama.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: llamacpp_golden MODEL.gguf PROMPTS STEPS\n");
    return 2;
  }
  const int steps = std::atoi(argv[3]);
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  llama_model* model = llama_model_load_from_file(argv[1], mp);
  if (!model) return 1;
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  std::ifstream in(argv[2]);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<llama_token> prompt;
    std::istringstream ss(line);
    for (int t; ss >> t;) prompt.push_back(t);
    if (prompt.empty()) continue;
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 512;
    cp.n_batch = 512;
    cp.n_threads = 1;
    cp.n_threads_batch = 1;
    cp.type_k = GGML_TYPE_F32;  // exact K/V: the tests compare with an f32 cache
    cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    llama_context* ctx = llama_init_from_model(model, cp);
    if (!ctx) return 1;
    std::vector<llama_token> greedy;
    std::string out_steps;
    llama_token next = 0;
    for (int s = 0; s <= steps; ++s) {
      llama_batch b =
          s == 0 ? llama_batch_get_one(prompt.data(), int32_t(prompt.size())) : llama_batch_get_one(&next, 1);
      if (llama_decode(ctx, b) != 0) return 1;
      if (s == steps) break;  // the last greedy token's own logits are not needed
      const float* logits = llama_get_logits_ith(ctx, -1);
      std::vector<int> idx(static_cast<size_t>(n_vocab));
      std::iota(idx.begin(), idx.end(), 0);
      std::partial_sort(idx.begin(), idx.begin() + 8, idx.end(), [&](int a, int b) {
        return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
      });
      double mx = logits[idx[0]], sum = 0.0;
      for (int v = 0; v < n_vocab; ++v) sum += std::exp(double(logits[v]) - mx);
      char buf[64];
      out_steps += s ? ",{\"top\":[" : "{\"top\":[";
      for (int k = 0; k < 8; ++k) {
        std::snprintf(buf, sizeof buf, "%s[%d,%.6f]", k ? "," : "", idx[size_t(k)],
                      double(logits[idx[size_t(k)]]));
        out_steps += buf;
      }
      std::snprintf(buf, sizeof buf, "],\"logsumexp\":%.6f}", mx + std::log(sum));
      out_steps += buf;
      next = idx[0];
      greedy.push_back(next);
    }
    std::printf("{\"prompt_tokens\":[");
    for (size_t i = 0; i < prompt.size(); ++i) std::printf("%s%d", i ? "," : "", prompt[i]);
    std::printf("],\"greedy_tokens\":[");
    for (size_t i = 0; i < greedy.size(); ++i) std::printf("%s%d", i ? "," : "", greedy[i]);
    std::printf("],\"steps\":[%s]}\n", out_steps.c_str());
    llama_free(ctx);
  }
  llama_model_free(model);
  return 0;
}

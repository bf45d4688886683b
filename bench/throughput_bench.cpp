// Offline-throughput benchmark: N random prompts of a given input length, each
// generating a fixed number of tokens (EOS ignored), run through the continuous-batching
// engine at once. Reports requests/s, output tokens/s and total tokens/s, plus the
// scheduler's preemptions and the prefix-cache hit rate.
//
//   throughput_bench --model m.gguf --num-prompts 64 --input-len 128 --output-len 128 [--json out.json]
#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "core/paths.h"
#include "kvserve/engine.h"
#include "tokenizer/tokenizer.h"

using namespace kvserve;

namespace {

struct Args {
  std::string model;
  int num_prompts = 64;
  int input_len = 128;
  int output_len = 128;
  int max_num_seqs = 64;
  int max_batched_tokens = 512;
  int block_size = 16;
  int64_t kv_cache_memory = 0;
  int threads = 0;
  bool prefix_caching = true;
  uint64_t seed = 0;
  std::string json;  // path, or "-" for stdout
  bool quiet = false;
};

void usage() {
  std::fprintf(
      stderr,
      "usage: throughput_bench [--model PATH] [--num-prompts N] [--input-len N] [--output-len N]\n"
      "  [--max-num-seqs N] [--max-batched-tokens N] [--block-size N] [--kv-cache-memory BYTES]\n"
      "  [--threads N] [--no-prefix-caching] [--seed N] [--json PATH|-] [--quiet]\n"
      "Default model: the downloaded SmolLM2 if present, else ../shared/models/synth-3m-q8_0.gguf\n");
}

bool parse(int argc, char** argv, Args& a) {
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto val = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    auto num = [&](auto& out) {
      const char* v = val();
      if (!v) return false;
      out = decltype(out + 0)(std::strtoll(v, nullptr, 10));
      return true;
    };
    bool ok = true;
    if (k == "--model") {
      const char* v = val();
      ok = v;
      if (v) a.model = v;
    } else if (k == "--num-prompts")
      ok = num(a.num_prompts);
    else if (k == "--input-len")
      ok = num(a.input_len);
    else if (k == "--output-len")
      ok = num(a.output_len);
    else if (k == "--max-num-seqs")
      ok = num(a.max_num_seqs);
    else if (k == "--max-batched-tokens")
      ok = num(a.max_batched_tokens);
    else if (k == "--block-size")
      ok = num(a.block_size);
    else if (k == "--kv-cache-memory")
      ok = num(a.kv_cache_memory);
    else if (k == "--threads")
      ok = num(a.threads);
    else if (k == "--seed")
      ok = num(a.seed);
    else if (k == "--no-prefix-caching")
      a.prefix_caching = false;
    else if (k == "--json") {
      const char* v = val();
      ok = v;
      if (v) a.json = v;
    } else if (k == "--quiet")
      a.quiet = true;
    else
      ok = false;
    if (!ok) return false;
  }
  return a.num_prompts > 0 && a.input_len > 0 && a.output_len > 0;
}

void progress(int64_t done, int64_t total, void* user) {
  static int64_t shown = -1;
  const bool quiet = *static_cast<bool*>(user);
  if (quiet || done == shown) return;  // once per change, not once per step
  shown = done;
  std::fprintf(stderr, "\r  %lld / %lld requests done", (long long)done, (long long)total);
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!parse(argc, argv, a)) {
    usage();
    return 2;
  }
  if (a.model.empty()) {
    a.model = default_model_path();
    if (!std::ifstream(a.model).good()) a.model = shared_dir() + "/models/synth-3m-q8_0.gguf";
  }
  EngineConfig c;
  c.model_path = a.model;
  c.max_num_seqs = a.max_num_seqs;
  c.max_num_batched_tokens = a.max_batched_tokens;
  c.block_size = a.block_size;
  c.kv_cache_memory = a.kv_cache_memory;
  c.n_threads = a.threads;
  c.enable_prefix_caching = a.prefix_caching;
  c.max_model_len = a.input_len + a.output_len;
  auto engine = Engine::create(c);
  if (!engine) {
    std::fprintf(stderr, "error: %s\n", engine.error().message.c_str());
    return 1;
  }
  Engine& e = **engine;

  // Random token prompts (BOS first when the model has one): no shared prefixes beyond
  // chance, so the numbers measure compute, not the prefix cache.
  std::mt19937_64 rng(a.seed);
  const int32_t vocab = e.n_vocab();
  const int32_t bos = e.tokenizer().bos_id();
  std::vector<GenerateInput> inputs(size_t(a.num_prompts));
  for (auto& in : inputs) {
    if (bos >= 0) in.token_ids.push_back(bos);
    while (int(in.token_ids.size()) < a.input_len) in.token_ids.push_back(int32_t(rng() % uint64_t(vocab)));
  }
  SamplingParams p;
  p.temperature = 0.0f;
  p.max_tokens = a.output_len;
  p.ignore_eos = true;

  if (!a.quiet)
    std::fprintf(stderr, "model %s: %d prompts x (%d in, %d out), %d KV blocks of %d\n", a.model.c_str(),
                 a.num_prompts, a.input_len, a.output_len, e.config().num_kv_blocks, e.config().block_size);
  GenerateStats st;
  auto outs = generate(e, inputs, p, &st, {}, progress, &a.quiet);
  if (!a.quiet) std::fprintf(stderr, "\n");
  for (const auto& o : outs)
    if (!o.error.empty()) {
      std::fprintf(stderr, "error: %s\n", o.error.c_str());
      return 1;
    }

  nlohmann::json j = {
      {"model", a.model},
      {"num_prompts", a.num_prompts},
      {"input_len", a.input_len},
      {"output_len", a.output_len},
      {"max_num_seqs", a.max_num_seqs},
      {"max_num_batched_tokens", a.max_batched_tokens},
      {"kv_blocks", e.config().num_kv_blocks},
      {"block_size", e.config().block_size},
      {"elapsed_s", st.elapsed_s},
      {"requests_per_s", st.requests_per_s},
      {"output_tokens_per_s", st.output_tokens_per_s},
      {"total_tokens_per_s", st.total_tokens_per_s},
      {"prompt_tokens", st.prompt_tokens},
      {"output_tokens", st.output_tokens},
      {"steps", st.steps},
      {"preemptions", st.preemptions},
      {"prefix_cache_hit_rate", st.prefix_cache_hit_rate},
  };
  std::printf(
      "Throughput: %.2f requests/s, %.1f output tokens/s, %.1f total tokens/s (%.2f s, %lld steps, "
      "%lld preemptions)\n",
      st.requests_per_s, st.output_tokens_per_s, st.total_tokens_per_s, st.elapsed_s, (long long)st.steps,
      (long long)st.preemptions);
  if (a.json == "-") {
    std::printf("%s\n", j.dump(2).c_str());
  } else if (!a.json.empty()) {
    std::ofstream(a.json) << j.dump(2) << "\n";
  }
  return 0;
}

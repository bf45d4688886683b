// Prefix-caching benchmark: N requests sharing one long system prompt (random token ids)
// followed by a distinct short user suffix each, run with prefix caching on and then off
// in fresh engines. Reports time to first token (mean, p50, p99), total time and the
// prefix-cache hit rate of each run, and the TTFT speed-up caching gives.
//
// Methodology: one warm-up request with the shared prefix runs to completion first (what a
// server holds after its first user), then all N requests are submitted at once and the
// engine is stepped until they finish. TTFT of a request = time from that submission to
// the step that produced its first token.
//
//   prefix_cache_bench --model m.gguf [--num-requests 32] [--prefix-len 512] [--suffix-len 16]
//                      [--output-len 16] [--json out.json|-] [engine flags: --help]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "cli/engine_options.h"
#include "core/paths.h"
#include "kvserve/engine.h"
#include "tokenizer/tokenizer.h"

using namespace kvserve;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  std::string model;
  int num_requests = 32;
  int prefix_len = 512;
  int suffix_len = 16;
  int output_len = 16;
  // The engine flags every command shares (cli/engine_options.h); prefix caching and
  // max_model_len are set per run.
  EngineConfig engine;
  uint64_t seed = 0;
  std::string json;  // path, or "-" for stdout
  bool quiet = false;
};

double percentile(std::vector<double> v, double q) {
  // Nearest-rank on the sorted sample: p99 of 32 values is the largest one.
  std::sort(v.begin(), v.end());
  const size_t k = size_t(std::clamp(int(q * double(v.size()) + 0.999999) - 1, 0, int(v.size()) - 1));
  return v[k];
}

struct RunResult {
  bool ok = false;
  std::vector<double> ttft_s;  // per request, submission order
  double total_s = 0.0;        // submission to the last request finishing
  double warmup_s = 0.0;
  int64_t steps = 0;
  int64_t cached_tokens = 0;  // prompt tokens the N requests got from the prefix cache
  int64_t prompt_tokens = 0;
  double engine_hit_rate = 0.0;  // the engine's own counter (warm-up included)
};

RunResult run(const Args& a, bool caching, const std::vector<int32_t>& prefix,
              const std::vector<std::vector<int32_t>>& prompts) {
  RunResult res;
  EngineConfig c = a.engine;
  c.model_path = a.model;
  c.enable_prefix_caching = caching;
  c.max_model_len = a.prefix_len + a.suffix_len + a.output_len;
  auto engine = Engine::create(c);
  if (!engine) {
    std::fprintf(stderr, "error: %s\n", engine.error().message.c_str());
    return res;
  }
  Engine& e = **engine;
  SamplingParams p;
  p.temperature = 0.0f;
  p.max_tokens = a.output_len;
  p.ignore_eos = true;

  // Warm-up: the shared prefix alone (plus one token so it is a prompt of its own).
  std::vector<int32_t> warm = prefix;
  warm.push_back(prompts[0].back());
  auto t0 = Clock::now();
  if (auto s = e.add_request("warmup", std::move(warm), p); !s) {
    std::fprintf(stderr, "error: %s\n", s.error().message.c_str());
    return res;
  }
  while (e.has_unfinished()) e.step();
  res.warmup_s = std::chrono::duration<double>(Clock::now() - t0).count();

  const int64_t steps0 = e.stats().steps;
  std::unordered_map<std::string, size_t> index;
  res.ttft_s.assign(prompts.size(), -1.0);
  t0 = Clock::now();
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::string id = "r" + std::to_string(i);
    index[id] = i;
    if (auto s = e.add_request(id, prompts[i], p); !s) {
      std::fprintf(stderr, "error: %s\n", s.error().message.c_str());
      return res;
    }
    res.prompt_tokens += int64_t(prompts[i].size());
  }
  size_t first_done = 0, shown = size_t(-1);
  while (e.has_unfinished()) {
    const auto& outs = e.step();
    const double now = std::chrono::duration<double>(Clock::now() - t0).count();
    for (const RequestOutput& o : outs) {
      auto it = index.find(o.request_id);
      if (it == index.end() || o.token_ids.empty() || res.ttft_s[it->second] >= 0.0) continue;
      res.ttft_s[it->second] = now;
      res.cached_tokens += o.num_cached_tokens;
      ++first_done;
    }
    if (!a.quiet && first_done != shown)  // once per change, not once per step
      std::fprintf(stderr, "\r  prefix caching %s: %zu / %zu first tokens", caching ? "on " : "off",
                   first_done, prompts.size());
    shown = first_done;
  }
  res.total_s = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!a.quiet) std::fprintf(stderr, "  (%.2f s)\n", res.total_s);
  const EngineStats st = e.stats();
  res.steps = st.steps - steps0;
  res.engine_hit_rate = st.prefix_cache_hit_rate;
  res.ok = first_done == prompts.size();
  if (!res.ok)
    std::fprintf(stderr, "error: %zu requests never produced a token\n", prompts.size() - first_done);
  return res;
}

nlohmann::json summary(const RunResult& r) {
  double mean = 0.0;
  for (double t : r.ttft_s) mean += t;
  mean /= double(r.ttft_s.size());
  return {
      {"ttft_mean_s", mean},
      {"ttft_p50_s", percentile(r.ttft_s, 0.50)},
      {"ttft_p99_s", percentile(r.ttft_s, 0.99)},
      {"total_s", r.total_s},
      {"warmup_s", r.warmup_s},
      {"steps", r.steps},
      {"cached_prompt_tokens", r.cached_tokens},
      {"prompt_tokens", r.prompt_tokens},
      {"prefix_cache_hit_rate", r.prompt_tokens ? double(r.cached_tokens) / double(r.prompt_tokens) : 0.0},
      {"engine_prefix_cache_hit_rate", r.engine_hit_rate},
  };
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  a.engine.max_num_seqs = 64;
  a.engine.max_num_batched_tokens = 512;
  CLI::App app{"Time to first token with prefix caching on vs off (a shared system prompt)"};
  app.add_option(
      "-m,--model", a.model,
      "GGUF model (default: the downloaded SmolLM2 if present, else ../shared/models/synth-3m-q8_0.gguf)");
  app.add_option("--num-requests", a.num_requests, "Requests sharing the prefix")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--prefix-len", a.prefix_len, "Shared prompt tokens")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--suffix-len", a.suffix_len, "Own prompt tokens per request")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--output-len", a.output_len, "Tokens generated per request")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--seed", a.seed, "Seed of the random prompts")->capture_default_str();
  app.add_option("--json", a.json, "Write the result as JSON to this file ('-' = stdout)");
  app.add_flag("-q,--quiet", a.quiet, "No progress on stderr");
  cli::add_engine_options(app, a.engine,
                          {.kv_cache_memory_default = "a share of free memory",
                           .max_model_len_default = "--prefix-len + --suffix-len + --output-len"});
  CLI11_PARSE(app, argc, argv);
  if (a.engine.enable_prefix_caching == false || a.engine.speculative.enabled() ||
      a.engine.max_model_len > 0) {
    std::fprintf(
        stderr, "error: prefix caching (both runs), --max-model-len and speculation are set by this bench\n");
    return 2;
  }
  if (a.model.empty()) {
    a.model = default_model_path();
    if (!std::ifstream(a.model).good()) a.model = shared_dir() + "/models/synth-3m-q8_0.gguf";
  }

  // Both runs must see identical prompts, so take the vocabulary from a small throwaway
  // engine before either starts.
  int32_t vocab = 0, bos = -1;
  {
    EngineConfig c;
    c.model_path = a.model;
    c.num_kv_blocks = 4;
    c.max_model_len = a.engine.block_size * 4;
    auto e = Engine::create(c);
    if (!e) {
      std::fprintf(stderr, "error: %s\n", e.error().message.c_str());
      return 1;
    }
    vocab = (*e)->n_vocab();
    bos = (*e)->tokenizer().bos_id();
  }
  std::mt19937_64 rng(a.seed);
  std::vector<int32_t> prefix;
  if (bos >= 0) prefix.push_back(bos);
  while (int(prefix.size()) < a.prefix_len) prefix.push_back(int32_t(rng() % uint64_t(vocab)));
  std::vector<std::vector<int32_t>> prompts(size_t(a.num_requests), prefix);
  for (auto& pr : prompts)
    for (int i = 0; i < a.suffix_len; ++i) pr.push_back(int32_t(rng() % uint64_t(vocab)));

  if (!a.quiet)
    std::fprintf(stderr, "model %s: %d requests x (%d shared + %d own prompt tokens, %d out)\n",
                 a.model.c_str(), a.num_requests, a.prefix_len, a.suffix_len, a.output_len);
  const RunResult on = run(a, true, prefix, prompts);
  if (!on.ok) return 1;
  const RunResult off = run(a, false, prefix, prompts);
  if (!off.ok) return 1;

  nlohmann::json jon = summary(on), joff = summary(off);
  const double ratio_mean = joff["ttft_mean_s"].get<double>() / jon["ttft_mean_s"].get<double>();
  const double ratio_p50 = joff["ttft_p50_s"].get<double>() / jon["ttft_p50_s"].get<double>();
  nlohmann::json j = {
      {"model", a.model},
      {"num_requests", a.num_requests},
      {"prefix_len", a.prefix_len},
      {"suffix_len", a.suffix_len},
      {"output_len", a.output_len},
      {"max_num_seqs", a.engine.max_num_seqs},
      {"max_num_batched_tokens", a.engine.max_num_batched_tokens},
      {"block_size", a.engine.block_size},
      {"caching_on", jon},
      {"caching_off", joff},
      {"ttft_mean_speedup", ratio_mean},
      {"ttft_p50_speedup", ratio_p50},
      {"total_speedup", off.total_s / on.total_s},
  };
  std::printf(
      "TTFT mean %.1f ms (on) vs %.1f ms (off): %.1fx; p50 %.1f vs %.1f ms; p99 %.1f vs %.1f ms; total %.2f "
      "vs %.2f "
      "s; hit rate %.3f vs %.3f\n",
      1e3 * jon["ttft_mean_s"].get<double>(), 1e3 * joff["ttft_mean_s"].get<double>(), ratio_mean,
      1e3 * jon["ttft_p50_s"].get<double>(), 1e3 * joff["ttft_p50_s"].get<double>(),
      1e3 * jon["ttft_p99_s"].get<double>(), 1e3 * joff["ttft_p99_s"].get<double>(), on.total_s, off.total_s,
      jon["prefix_cache_hit_rate"].get<double>(), joff["prefix_cache_hit_rate"].get<double>());
  if (a.json == "-") {
    std::printf("%s\n", j.dump(2).c_str());
  } else if (!a.json.empty()) {
    std::ofstream(a.json) << j.dump(2) << "\n";
  }
  return 0;
}

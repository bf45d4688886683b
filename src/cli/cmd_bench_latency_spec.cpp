// `kvserve bench latency --speculative-method M`: what speculation does for one stream.
// The runner-level benchmark (cmd_bench_latency.cpp) cannot speculate, so this runs one
// greedy request through two engines, one without speculation and one with, on the same
// prompt, alternating runs so that both see the same machine state.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include "cli/cmd_bench.h"
#include "kvserve/engine.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace kvserve::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Run {
  double decode_s = 0.0;  // first token to last
  int64_t steps = 0;      // steps after the first token
  std::vector<int32_t> tokens;
};

Result<Run> run_one(Engine& e, const std::vector<int32_t>& prompt, int gen_tokens) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.max_tokens = gen_tokens;
  p.ignore_eos = true;
  if (auto st = e.add_request("bench", prompt, p); !st) return st.error();
  Run r;
  Clock::time_point first{};
  bool done = false;
  while (!done && e.has_unfinished()) {
    for (const RequestOutput& o : e.step()) {
      if (r.tokens.empty() && !o.token_ids.empty()) {
        first = Clock::now();
      } else if (!r.tokens.empty()) {
        ++r.steps;
      }
      r.tokens.insert(r.tokens.end(), o.token_ids.begin(), o.token_ids.end());
      done = o.finished;
    }
  }
  r.decode_s = std::chrono::duration<double>(Clock::now() - first).count();
  return r;
}

}  // namespace

nlohmann::json SpecLatencyResult::to_json() const {
  auto st = [](const Stat& s) { return nlohmann::json{{"mean", s.mean}, {"stdev", s.stdev}}; };
  return {{"gen_tokens_per_s", st(gen_tps)},
          {"gen_tokens_per_s_without", st(gen_tps_plain)},
          {"speedup", gen_tps_plain.mean > 0 ? gen_tps.mean / gen_tps_plain.mean : 0.0},
          {"tpot_ms", st(tpot_ms)},
          {"tpot_ms_without", st(tpot_ms_plain)},
          {"acceptance_rate", acceptance},
          {"mean_accepted_length", mean_accepted_length},
          {"decode_steps", steps},
          {"decode_steps_without", steps_plain}};
}

Result<SpecLatencyResult> run_spec_latency(const LatencyOptions& o) {
  if (o.gen_tokens < 2) return Error{"--gen-tokens must be at least 2 to time decoding"};
  auto model = Model::load(o.model);
  if (!model) return model.error();
  auto tok = Tokenizer::from_gguf((*model)->gguf());
  if (!tok) return tok.error();
  std::shared_ptr<const Model> m(std::move(*model));
  std::shared_ptr<const Tokenizer> t(std::move(*tok));

  std::vector<int32_t> prompt;
  if (!o.prompt_file.empty()) {
    std::ifstream in(o.prompt_file);
    if (!in) return Error{"cannot read --prompt-file " + o.prompt_file};
    std::stringstream ss;
    ss << in.rdbuf();
    prompt = t->encode(ss.str(), true, true);
  } else {
    std::mt19937_64 rng(o.seed);
    for (int i = 0; i < o.prompt_tokens; ++i)
      prompt.push_back(int32_t(rng() % uint64_t(m->config().n_vocab)));
  }

  EngineConfig c;
  c.n_threads = o.threads;
  c.max_num_seqs = 1;
  c.kv_cache_dtype = *parse_kv_dtype(o.kv_cache_dtype);
  c.max_model_len = int(prompt.size()) + o.gen_tokens + SpeculativeConfig::kMaxTokens + 1;
  c.max_num_batched_tokens = std::max(512, 1 + o.speculative.max_draft_nodes());
  c.block_size = 16;
  c.num_kv_blocks = 2 * ((c.max_model_len + 15) / 16) + 8;  // room for a tree's lanes too
  EngineConfig plain_cfg = c;
  c.speculative = o.speculative;
  auto plain = Engine::create(plain_cfg, m, t);
  if (!plain) return plain.error();
  auto spec = Engine::create(c, m, t);
  if (!spec) return spec.error();

  std::vector<double> tg, tg_plain, tpot, tpot_plain;
  SpecLatencyResult res;
  for (int r = -1; r < o.repeats; ++r) {  // r = -1: warm-up
    auto a = run_one(**plain, prompt, o.gen_tokens);
    if (!a) return a.error();
    auto b = run_one(**spec, prompt, o.gen_tokens);
    if (!b) return b.error();
    if (a->tokens != b->tokens) return Error{"speculation changed the greedy output: a bug"};
    const double n = double(a->tokens.size() - 1);  // decoded after the first token
    if (!o.quiet)
      std::fprintf(stderr, "  %s: tg %.1f tok/s without, %.1f with speculation\n",
                   r < 0 ? "warm-up" : ("run " + std::to_string(r + 1)).c_str(), n / a->decode_s,
                   n / b->decode_s);
    if (r < 0) continue;
    tg_plain.push_back(n / a->decode_s);
    tg.push_back(n / b->decode_s);
    tpot_plain.push_back(a->decode_s * 1e3 / n);
    tpot.push_back(b->decode_s * 1e3 / n);
    res.steps_plain = a->steps;
    res.steps = b->steps;
  }
  res.gen_tps = mean_stdev(tg);
  res.gen_tps_plain = mean_stdev(tg_plain);
  res.tpot_ms = mean_stdev(tpot);
  res.tpot_ms_plain = mean_stdev(tpot_plain);
  const EngineStats st = (*spec)->stats();
  res.acceptance = st.spec_acceptance_rate();
  res.mean_accepted_length = st.spec_mean_accepted_length();
  return res;
}

}  // namespace kvserve::bench

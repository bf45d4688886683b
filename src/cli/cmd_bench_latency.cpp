// `kvserve bench latency`: one request straight through the model runner, measured like
// llama-bench: pp<N> is a prompt of N random token ids prefilled into an empty cache,
// tg<N> is N decode steps (greedy, one token each) from an empty cache, so both figures
// compare with llama-bench's; --tg-after-prompt decodes after the prompt instead.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include "cache/kv_cache.h"
#include "cli/cmd_bench.h"
#include "cli/engine_options.h"
#include "model/cpu_runner.h"
#include "model/model.h"

namespace kvserve::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kBlockSize = 16;
constexpr int kMaxChunk = 512;  // prompt tokens per forward, as llama-bench's default ubatch

double secs(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

int32_t argmax(const float* logits, int32_t n) {
  return int32_t(std::max_element(logits, logits + n) - logits);
}

struct Bench {
  CpuRunner& runner;
  KvCacheStorage& kv;
  std::vector<int32_t> table;  // identity block table over the whole pool
  int32_t n_vocab;

  // Prefills `ids` starting at position n_past; returns the last row's logits.
  const float* prefill(const std::vector<int32_t>& ids, int32_t n_past) {
    const float* logits = nullptr;
    const int32_t n_prompt = int32_t(ids.size());
    for (int32_t start = 0; start < n_prompt; start += kMaxChunk) {
      const int32_t n = std::min(kMaxChunk, n_prompt - start);
      SeqSlice s;
      s.n_past = n_past + start;
      s.tokens = std::span<const int32_t>(ids.data() + start, size_t(n));
      s.block_table = table;
      s.logits = start + n == n_prompt ? LogitsMode::Last : LogitsMode::None;
      logits = runner.forward(ForwardBatch{std::span<const SeqSlice>(&s, 1)}, kv);
    }
    return logits;
  }

  // n decode steps from position n_past, feeding back the greedy choice.
  void decode(int32_t first, int32_t n_past, int n) {
    int32_t tok = first;
    for (int i = 0; i < n; ++i) {
      SeqSlice s;
      s.n_past = n_past + i;
      s.tokens = std::span<const int32_t>(&tok, 1);
      s.block_table = table;
      s.logits = LogitsMode::Last;
      tok = argmax(runner.forward(ForwardBatch{std::span<const SeqSlice>(&s, 1)}, kv), n_vocab);
    }
  }
};

}  // namespace

nlohmann::json LatencyResult::to_json(const LatencyOptions& o) const {
  auto st = [](const Stat& s) { return nlohmann::json{{"mean", s.mean}, {"stdev", s.stdev}}; };
  return {{"mode", "latency"},
          {"model", o.model},
          {"prompt_tokens", o.prompt_tokens},
          {"gen_tokens", o.gen_tokens},
          {"threads", o.threads},
          {"repeats", o.repeats},
          {"tg_after_prompt", o.tg_after_prompt},
          {"kv_cache_dtype", o.kv_cache_dtype},
          {"prompt_tokens_per_s", st(prompt_tps)},
          {"gen_tokens_per_s", st(gen_tps)},
          {"ttft_ms", st(ttft_ms)},
          {"tpot_ms", st(tpot_ms)},
          {"samples",
           {{"prompt_tokens_per_s", prompt_tps_samples},
            {"gen_tokens_per_s", gen_tps_samples},
            {"ttft_ms", ttft_ms_samples},
            {"tpot_ms", tpot_ms_samples}}}};
}

Result<LatencyResult> run_latency(const LatencyOptions& o, const std::function<void(int)>& before_run) {
  if (o.prompt_tokens < 1 || o.gen_tokens < 1 || o.repeats < 1)
    return Error{"--prompt-tokens, --gen-tokens and --repeats must be at least 1"};
  auto model = Model::load(o.model);
  if (!model) return model.error();
  const ModelConfig& cfg = (*model)->config();
  RunnerOptions ropt;
  ropt.max_batch_tokens = std::min(o.prompt_tokens, kMaxChunk);
  ropt.max_seqs = 1;
  ropt.n_threads = o.threads;
  CpuRunner runner(**model, ropt);
  const int64_t n_total = int64_t(o.prompt_tokens) + o.gen_tokens;
  const int n_blocks = int((n_total + kBlockSize - 1) / kBlockSize);
  KvCacheStorage kv(runner.kv_config(n_blocks, kBlockSize, *parse_kv_dtype(o.kv_cache_dtype)));
  Bench b{runner, kv, std::vector<int32_t>(size_t(n_blocks)), cfg.n_vocab};
  for (int i = 0; i < n_blocks; ++i) b.table[size_t(i)] = i;

  std::mt19937_64 rng(o.seed);
  std::vector<int32_t> prompt(static_cast<size_t>(o.prompt_tokens));
  for (auto& t : prompt) t = int32_t(rng() % uint64_t(cfg.n_vocab));
  const int32_t tg_past = o.tg_after_prompt ? o.prompt_tokens : 0;

  if (!o.quiet)
    std::fprintf(stderr, "latency: %s, pp%d + tg%d, %d threads, %d repeats (+1 warm-up)\n", o.model.c_str(),
                 o.prompt_tokens, o.gen_tokens, o.threads, o.repeats);
  std::vector<double> pp, tg, ttft, tpot;
  for (int r = -1; r < o.repeats; ++r) {  // r = -1: warm-up (pages the weights in, warms caches)
    if (r >= 0 && before_run) before_run(r);
    const auto t0 = Clock::now();
    const float* logits = b.prefill(prompt, 0);
    const int32_t first = argmax(logits, cfg.n_vocab);
    const auto t1 = Clock::now();
    b.decode(first, tg_past, o.gen_tokens);
    const auto t2 = Clock::now();
    if (r >= 0) {
      pp.push_back(o.prompt_tokens / secs(t0, t1));
      ttft.push_back(secs(t0, t1) * 1e3);
      tg.push_back(o.gen_tokens / secs(t1, t2));
      tpot.push_back(secs(t1, t2) * 1e3 / o.gen_tokens);
    }
    if (!o.quiet)
      std::fprintf(stderr, "  %s: pp %.1f tok/s, tg %.1f tok/s\n",
                   r < 0 ? "warm-up" : ("run " + std::to_string(r + 1)).c_str(),
                   o.prompt_tokens / secs(t0, t1), o.gen_tokens / secs(t1, t2));
  }
  LatencyResult res;
  res.prompt_tps = mean_stdev(pp);
  res.gen_tps = mean_stdev(tg);
  res.ttft_ms = mean_stdev(ttft);
  res.tpot_ms = mean_stdev(tpot);
  res.prompt_tps_samples = std::move(pp);
  res.gen_tps_samples = std::move(tg);
  res.ttft_ms_samples = std::move(ttft);
  res.tpot_ms_samples = std::move(tpot);
  return res;
}

RunFn setup_latency(CLI::App& app) {
  struct Opts {
    LatencyOptions l;
    std::string json;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("-m,--model", o->l.model, "GGUF model file")->required();
  app.add_option("-p,--prompt-tokens", o->l.prompt_tokens, "Prompt length (random token ids)")
      ->capture_default_str();
  app.add_option("-n,--gen-tokens", o->l.gen_tokens, "Tokens to decode")->capture_default_str();
  app.add_option("-t,--threads", o->l.threads, "Threads (0 = all hardware threads)")->capture_default_str();
  app.add_option("-r,--repeats", o->l.repeats, "Measured runs after the warm-up")->capture_default_str();
  app.add_option("--kv-cache-dtype", o->l.kv_cache_dtype,
                 "KV-cache element type: f32, f16, bf16, int8 or fp8 (E4M3); int8 / fp8 with a scale per "
                 "token and KV head")
      ->check(cli::kv_dtype_validator())
      ->capture_default_str();
  app.add_flag("--tg-after-prompt", o->l.tg_after_prompt,
               "Decode after the prompt (default: from an empty cache, as llama-bench tg)");
  app.add_option("--seed", o->l.seed, "Seed of the random prompt")->capture_default_str();
  app.add_option("--json", o->json, "Write the result as JSON to this file ('-' = stdout)");
  app.add_flag("-q,--quiet", o->l.quiet, "No progress on stderr");
  cli::add_speculative_options(app, o->l.speculative);
  app.add_option("--prompt-file", o->l.prompt_file,
                 "With --speculative-method: the prompt's text (default: --prompt-tokens random ids)");
  return [o]() -> int {
    if (std::string e = o->l.speculative.validate(); !e.empty()) return fail("latency", e);
    if (!o->l.prompt_file.empty() && !o->l.speculative.enabled())
      return fail("latency", "--prompt-file is only used with --speculative-method");
    auto r = run_latency(o->l);
    if (!r) return fail("latency", r.error().message);
    std::printf("pp%-4d %9.1f ± %.1f tokens/s   TTFT %8.2f ms\n", o->l.prompt_tokens, r->prompt_tps.mean,
                r->prompt_tps.stdev, r->ttft_ms.mean);
    std::printf("tg%-4d %9.1f ± %.1f tokens/s   TPOT %8.3f ms\n", o->l.gen_tokens, r->gen_tps.mean,
                r->gen_tps.stdev, r->tpot_ms.mean);
    nlohmann::json j = r->to_json(o->l);
    if (o->l.speculative.enabled()) {
      if (!o->l.quiet) std::fprintf(stderr, "latency: one request, without and with speculation\n");
      auto sr = run_spec_latency(o->l);
      if (!sr) return fail("latency", sr.error().message);
      std::printf(
          "speculative %s: tg %.1f vs %.1f tokens/s without (%.2fx), TPOT %.3f vs %.3f ms, acceptance "
          "%.1f%%, "
          "mean accepted length %.2f, %lld vs %lld decode steps\n",
          spec_method_name(o->l.speculative.method), sr->gen_tps.mean, sr->gen_tps_plain.mean,
          sr->gen_tps_plain.mean > 0 ? sr->gen_tps.mean / sr->gen_tps_plain.mean : 0.0, sr->tpot_ms.mean,
          sr->tpot_ms_plain.mean, 100.0 * sr->acceptance, sr->mean_accepted_length, (long long)sr->steps,
          (long long)sr->steps_plain);
      j["speculative"] = sr->to_json();
      j["speculative"]["method"] = spec_method_name(o->l.speculative.method);
    }
    return write_json(o->json, j) ? 0 : 1;
  };
}

}  // namespace kvserve::bench

// `kvserve generate`: runs one prompt through the model (prefill, then decode steps
// through a paged KV cache sized for prompt + max_tokens) and streams the text, or prints
// one JSON object with tokens, text, logprobs and throughput.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cache/kv_cache.h"
#include "cli/command.h"
#include "engine/logprobs.h"
#include "engine/sampler.h"
#include "engine/sampler_state.h"
#include "engine/stop_matcher.h"
#include "kvserve/sampling_params.h"
#include "model/model.h"
#include "model/model_runner.h"
#include "tokenizer/tokenizer.h"

namespace {

using namespace kvserve;
using Clock = std::chrono::steady_clock;

constexpr int kBlockSize = 16;
constexpr int kMaxChunk = 512;  // prompt tokens per forward

struct Opts {
  std::string model;
  std::string prompt;
  std::string prompt_file;
  std::string prompt_tokens;
  int max_tokens = 128;
  float temperature = 0.0f;
  int top_k = -1;
  float top_p = 1.0f;
  float min_p = 0.0f;
  int64_t seed = -1;
  std::vector<std::string> stop;
  int logprobs = -1;
  int prompt_logprobs = -1;
  bool json = false;
  int threads = 0;
};

int fail(const std::string& msg) {
  std::fprintf(stderr, "kvserve generate: %s\n", msg.c_str());
  return 1;
}

nlohmann::json top_json(const std::vector<TokenLogprob>& top) {
  auto a = nlohmann::json::array();
  for (const auto& t : top) a.push_back({t.token, t.logprob});
  return a;
}

nlohmann::json entry_json(const LogprobsEntry& e) {
  return {{"token", e.token}, {"logprob", e.logprob}, {"rank", e.rank}, {"top", top_json(e.top)}};
}

Result<std::vector<int32_t>> prompt_ids(const Opts& o, const Tokenizer& tok) {
  const int n_set = int(!o.prompt.empty()) + int(!o.prompt_file.empty()) + int(!o.prompt_tokens.empty());
  if (n_set != 1) return Error{"give exactly one of --prompt, --prompt-file, --prompt-tokens"};
  std::vector<int32_t> ids;
  if (!o.prompt_tokens.empty()) {
    std::istringstream in(o.prompt_tokens);
    std::string word;
    while (in >> word) {
      size_t used = 0;
      long long v = -1;
      try {
        v = std::stoll(word, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != word.size() || v < 0 || v >= tok.n_vocab())
        return Error{"--prompt-tokens: '" + word + "' is not a token id in [0, " +
                     std::to_string(tok.n_vocab()) + ")"};
      ids.push_back(int32_t(v));
    }
  } else {
    std::string text = o.prompt;
    if (!o.prompt_file.empty()) {
      std::ifstream in(o.prompt_file, std::ios::binary);
      if (!in) return Error{"cannot read --prompt-file " + o.prompt_file};
      std::ostringstream ss;
      ss << in.rdbuf();
      text = ss.str();
    }
    // Special tokens written in the prompt (e.g. ChatML's <|im_start|>) are parsed.
    ids = tok.encode(text, /*add_special=*/true, /*parse_special=*/true);
  }
  if (ids.empty()) return Error{"the prompt is empty"};
  return ids;
}

int run_generate(const Opts& o) {
  auto model = Model::load(o.model);
  if (!model) return fail(model.error().message);
  auto tok = Tokenizer::from_gguf((*model)->gguf());
  if (!tok) return fail(tok.error().message);
  auto prompt = prompt_ids(o, **tok);
  if (!prompt) return fail(prompt.error().message);
  const std::vector<int32_t>& ids = *prompt;
  const int32_t n_prompt = int32_t(ids.size());

  SamplingParams params;
  params.temperature = o.temperature;
  params.top_k = o.top_k;
  params.top_p = o.top_p;
  params.min_p = o.min_p;
  if (o.seed >= 0) params.seed = uint64_t(o.seed);
  params.stop = o.stop;
  params.max_tokens = o.max_tokens;
  params.logprobs = o.logprobs;
  params.prompt_logprobs = o.prompt_logprobs;
  const int32_t n_vocab = (*model)->config().n_vocab;
  if (auto st = params.validate(n_vocab); !st) return fail(st.error().message);
  if (o.max_tokens < 1) return fail("--max-tokens must be at least 1");

  if (int64_t(n_prompt) + o.max_tokens > (*model)->config().n_ctx_train)
    std::fprintf(
        stderr,
        "kvserve generate: warning: %d prompt + %d new tokens exceed the model's training context %d\n",
        n_prompt, o.max_tokens, (*model)->config().n_ctx_train);
  RunnerOptions ropt;
  ropt.max_batch_tokens = std::min(n_prompt, kMaxChunk);
  ropt.max_seqs = 1;
  ropt.n_threads = o.threads;
  ModelRunner runner(**model, ropt);
  const int64_t n_total = int64_t(n_prompt) + o.max_tokens;
  const int n_blocks = int((n_total + kBlockSize - 1) / kBlockSize);
  KvCacheStorage kv(runner.kv_config(n_blocks, kBlockSize));
  std::vector<int32_t> table(static_cast<size_t>(n_blocks));
  for (int b = 0; b < n_blocks; ++b) table[size_t(b)] = b;

  const std::vector<int32_t> eog = (*tok)->vocab().eog_ids;
  Sampler sampler(n_vocab, eog);
  SequenceSamplerState state;
  state.init(params, ids);
  StopMatcher stop(params, eog);
  StreamingDetokenizer detok(**tok, /*skip_special=*/true, /*sequence_start=*/false);

  // Prefill in chunks; the last chunk's last row gives the first token's logits.
  nlohmann::json prompt_lp = nullptr;
  if (o.prompt_logprobs >= 0) prompt_lp = nlohmann::json::array({nullptr});  // no logprob for token 0
  const auto t0 = Clock::now();
  const float* logits = nullptr;
  for (int32_t start = 0; start < n_prompt; start += kMaxChunk) {
    const int32_t n = std::min(kMaxChunk, n_prompt - start);
    const bool last = start + n == n_prompt;
    SeqSlice s;
    s.n_past = start;
    s.tokens = std::span<const int32_t>(ids.data() + start, size_t(n));
    s.block_table = table;
    s.logits = o.prompt_logprobs >= 0 ? LogitsMode::All : last ? LogitsMode::Last : LogitsMode::None;
    logits = runner.forward(ForwardBatch{std::span<const SeqSlice>(&s, 1)}, kv);
    if (o.prompt_logprobs >= 0) {
      // Row r predicts prompt token start + r + 1.
      LogprobsEntry e;
      for (int32_t r = 0; r < n && start + r + 1 < n_prompt; ++r) {
        compute_logprobs(logits + int64_t(r) * n_vocab, n_vocab, ids[size_t(start + r + 1)],
                         o.prompt_logprobs, e);
        prompt_lp.push_back(entry_json(e));
      }
      if (last) logits += int64_t(n - 1) * n_vocab;
    }
  }
  const auto t1 = Clock::now();

  std::vector<int32_t> out_tokens;
  std::string text;
  nlohmann::json gen_lp = o.logprobs >= 0 ? nlohmann::json::array() : nlohmann::json(nullptr);
  FinishReason finish = FinishReason::None;
  LogprobsEntry lp;
  for (;;) {
    const int32_t next = sampler.sample(logits, params, state, o.logprobs >= 0 ? &lp : nullptr);
    state.accept(next);
    out_tokens.push_back(next);
    if (o.logprobs >= 0) gen_lp.push_back(entry_json(lp));
    auto r = stop.push_token(next, detok.push(next));
    if (r.finish == FinishReason::Length) r.text += detok.flush();  // a cut-off UTF-8 tail
    text += r.text;
    if (!o.json && !r.text.empty()) {
      std::fwrite(r.text.data(), 1, r.text.size(), stdout);
      std::fflush(stdout);
    }
    if (r.finish != FinishReason::None) {
      finish = r.finish;
      break;
    }
    SeqSlice s;
    s.n_past = n_prompt + int32_t(out_tokens.size()) - 1;
    s.tokens = std::span<const int32_t>(&out_tokens.back(), 1);
    s.block_table = table;
    s.logits = LogitsMode::Last;
    logits = runner.forward(ForwardBatch{std::span<const SeqSlice>(&s, 1)}, kv);
  }
  const auto t2 = Clock::now();

  const double prompt_s = std::chrono::duration<double>(t1 - t0).count();
  const double gen_s = std::chrono::duration<double>(t2 - t1).count();
  const double prompt_tps = prompt_s > 0 ? n_prompt / prompt_s : 0.0;
  const double gen_tps = gen_s > 0 ? double(out_tokens.size()) / gen_s : 0.0;
  if (o.json) {
    nlohmann::json j;
    j["prompt_tokens"] = ids;
    j["tokens"] = out_tokens;
    j["text"] = text;
    j["finish_reason"] = finish_reason_name(finish);
    j["logprobs"] = gen_lp;
    j["prompt_logprobs"] = prompt_lp;
    j["prompt_tokens_per_second"] = prompt_tps;
    j["generated_tokens_per_second"] = gen_tps;
    const std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::printf("%s\n", s.c_str());
  } else {
    std::printf("\n");
    std::fprintf(stderr, "prompt: %d tokens, %.1f tokens/s; generated: %zu tokens, %.1f tokens/s (%s)\n",
                 n_prompt, prompt_tps, out_tokens.size(), gen_tps, finish_reason_name(finish));
  }
  return 0;
}

const kvserve::cli::Registrar reg{
    "generate", "Generate text from a prompt with a GGUF model", [](CLI::App& app) {
      auto o = std::make_shared<Opts>();
      app.add_option("-m,--model", o->model, "GGUF model file")->required();
      app.add_option("-p,--prompt", o->prompt, "Prompt text (special tokens like <|im_start|> are parsed)");
      app.add_option("--prompt-file", o->prompt_file, "Read the prompt text from a file");
      app.add_option("--prompt-tokens", o->prompt_tokens, "Prompt as token ids, e.g. \"1 403 407\"");
      app.add_option("-n,--max-tokens", o->max_tokens, "Most tokens to generate")->capture_default_str();
      app.add_option("--temperature", o->temperature, "Sampling temperature; 0 = greedy")
          ->capture_default_str();
      app.add_option("--top-k", o->top_k, "Keep the k most likely tokens; <= 0 = off")->capture_default_str();
      app.add_option("--top-p", o->top_p, "Nucleus sampling mass; 1 = off")->capture_default_str();
      app.add_option("--min-p", o->min_p, "Drop tokens below min_p * max prob; 0 = off")
          ->capture_default_str();
      app.add_option("--seed", o->seed, "RNG seed (-1 = random)")->capture_default_str();
      app.add_option("--stop", o->stop, "Stop string (repeatable)");
      app.add_option("--logprobs", o->logprobs, "Top-K logprobs per generated token");
      app.add_option("--prompt-logprobs", o->prompt_logprobs, "Top-K logprobs per prompt position");
      app.add_flag("--json", o->json, "Print one JSON object instead of streaming text");
      app.add_option("-t,--threads", o->threads, "Threads (0 = all hardware threads)")->capture_default_str();
      return [o] { return run_generate(*o); };
    }};

}  // namespace

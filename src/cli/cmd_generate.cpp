// `kvserve generate`: runs prompts through the continuous-batching engine. One prompt
// streams its text (or prints one JSON object); --batch-file runs every line of a file
// at once and prints the results in input order with the total throughput.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/engine_options.h"
#include "kvserve/engine.h"
#include "kvserve/sampling_params.h"
#include "model/model.h"
#include "sample/logprobs.h"
#include "tokenizer/tokenizer.h"

namespace {

using namespace kvserve;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Opts {
  std::string model;
  std::string prompt;
  std::string prompt_file;
  std::string prompt_tokens;
  std::string batch_file;
  int max_tokens = 128;
  bool ignore_eos = false;
  float temperature = 0.0f;
  int top_k = -1;
  float top_p = 1.0f;
  float min_p = 0.0f;
  int64_t seed = -1;
  std::vector<std::string> stop;
  int logprobs = -1;
  int prompt_logprobs = -1;
  bool json = false;
  EngineConfig engine;  // filled by add_engine_options()
};

int fail(const std::string& msg) {
  std::fprintf(stderr, "kvserve generate: %s\n", msg.c_str());
  return 1;
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

json entry_json(const LogprobsEntry& e) {
  json top = json::array();
  for (const auto& t : e.top) top.push_back({t.token, t.logprob});
  return {{"token", e.token}, {"logprob", e.logprob}, {"rank", e.rank}, {"top", top}};
}

json logprobs_json(const std::vector<LogprobsEntry>& entries, bool leading_null) {
  json a = json::array();
  if (leading_null) a.push_back(nullptr);  // the first prompt token has no logprob
  for (const auto& e : entries) a.push_back(entry_json(e));
  return a;
}

Result<std::vector<int32_t>> parse_token_ids(const std::string& s, int32_t n_vocab) {
  std::vector<int32_t> ids;
  std::istringstream in(s);
  std::string word;
  while (in >> word) {
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != word.size() || v < 0 || v >= n_vocab)
      return Error{"--prompt-tokens: '" + word + "' is not a token id in [0, " + std::to_string(n_vocab) +
                   ")"};
    ids.push_back(int32_t(v));
  }
  if (ids.empty()) return Error{"--prompt-tokens is empty"};
  return ids;
}

Result<std::string> read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{std::string("cannot read ") + what + " " + path};
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// One prompt per line; "\n" and "\\" are escapes (as in ../shared/golden/prompts-*.txt),
// so a prompt can span lines. Blank lines are skipped.
std::vector<std::string> batch_prompts(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    std::string p;
    for (size_t i = 0; i < line.size(); ++i) {
      if (line[i] == '\\' && i + 1 < line.size() && (line[i + 1] == 'n' || line[i + 1] == '\\')) {
        p += line[i + 1] == 'n' ? '\n' : '\\';
        ++i;
      } else {
        p += line[i];
      }
    }
    out.push_back(std::move(p));
  }
  return out;
}

SamplingParams sampling_params(const Opts& o) {
  SamplingParams p;
  p.temperature = o.temperature;
  p.top_k = o.top_k;
  p.top_p = o.top_p;
  p.min_p = o.min_p;
  if (o.seed >= 0) p.seed = uint64_t(o.seed);
  p.stop = o.stop;
  p.max_tokens = o.max_tokens;
  p.ignore_eos = o.ignore_eos;
  p.logprobs = o.logprobs;
  p.prompt_logprobs = o.prompt_logprobs;
  return p;
}

EngineConfig engine_config(const Opts& o) {
  EngineConfig c = o.engine;
  c.model_path = o.model;
  return c;
}

// Progress on stderr whenever another request finishes.
void print_progress(int64_t finished, int64_t total, void* user) {
  int64_t& last = *static_cast<int64_t*>(user);
  if (finished == last) return;
  last = finished;
  std::fprintf(stderr, "\rkvserve generate: %lld/%lld requests done", (long long)finished, (long long)total);
  if (finished == total) std::fprintf(stderr, "\n");
}

int run_batch(const Opts& o, const std::shared_ptr<const Model>& model,
              const std::shared_ptr<const Tokenizer>& tok, const SamplingParams& params) {
  auto text = read_file(o.batch_file, "--batch-file");
  if (!text) return fail(text.error().message);
  const std::vector<std::string> prompts = batch_prompts(*text);
  if (prompts.empty()) return fail("--batch-file " + o.batch_file + " holds no prompts");
  EngineConfig cfg = engine_config(o);
  if (cfg.kv_cache_memory == 0 && cfg.num_kv_blocks == 0) cfg.kv_cache_fraction = 0.1;
  auto engine = Engine::create(cfg, model, tok);
  if (!engine) return fail(engine.error().message);
  std::vector<GenerateInput> inputs(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) inputs[i].prompt = prompts[i];
  GenerateStats stats;
  int64_t last_finished = -1;
  const auto outputs = generate(**engine, inputs, params, &stats, {}, print_progress, &last_finished);
  int n_errors = 0;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const GenerateOutput& out = outputs[i];
    if (!out.error.empty()) ++n_errors;
    if (o.json) {
      json j;
      j["index"] = i;
      j["prompt"] = prompts[i];
      j["prompt_tokens"] = out.prompt_token_ids;
      if (!out.error.empty()) {
        j["error"] = out.error;
      } else {
        const auto& c = out.completions.at(0);
        j["tokens"] = c.token_ids;
        j["text"] = c.text;
        j["finish_reason"] = c.finish_reason_name();
        if (o.logprobs >= 0) j["logprobs"] = logprobs_json(c.logprobs, false);
        if (o.prompt_logprobs >= 0) j["prompt_logprobs"] = logprobs_json(out.prompt_logprobs, true);
      }
      std::printf("%s\n", dump(j).c_str());
    } else if (!out.error.empty()) {
      std::printf("[%zu] error: %s\n", i, out.error.c_str());
    } else {
      std::printf("[%zu] %s%s\n", i, prompts[i].c_str(), out.completions.at(0).text.c_str());
    }
  }
  json summary = {{"summary", true},
                  {"num_requests", stats.num_requests},
                  {"prompt_tokens", stats.prompt_tokens},
                  {"output_tokens", stats.output_tokens},
                  {"elapsed_s", stats.elapsed_s},
                  {"requests_per_s", stats.requests_per_s},
                  {"output_tokens_per_s", stats.output_tokens_per_s},
                  {"total_tokens_per_s", stats.total_tokens_per_s},
                  {"preemptions", stats.preemptions},
                  {"prefix_cache_hit_rate", stats.prefix_cache_hit_rate},
                  {"steps", stats.steps},
                  {"errors", n_errors}};
  if (cfg.speculative.enabled())
    summary["speculative"] = {{"method", spec_method_name(cfg.speculative.method)},
                              {"drafts", stats.spec_drafts},
                              {"draft_tokens", stats.spec_draft_tokens},
                              {"accepted_tokens", stats.spec_accepted_tokens},
                              {"acceptance_rate", stats.spec_acceptance_rate},
                              {"mean_accepted_length", stats.spec_mean_accepted_length}};
  if (o.json) {
    std::printf("%s\n", dump(summary).c_str());
  } else {
    std::fprintf(stderr,
                 "%lld requests in %.2f s: %.2f requests/s, %.1f output tokens/s, %.1f total tokens/s; "
                 "%lld preemptions, prefix-cache hit rate %.1f%%\n",
                 (long long)stats.num_requests, stats.elapsed_s, stats.requests_per_s,
                 stats.output_tokens_per_s, stats.total_tokens_per_s, (long long)stats.preemptions,
                 100.0 * stats.prefix_cache_hit_rate);
    if (cfg.speculative.enabled())
      std::fprintf(stderr, "speculative (%s): %lld drafts, acceptance %.1f%%, mean accepted length %.2f\n",
                   spec_method_name(cfg.speculative.method), (long long)stats.spec_drafts,
                   100.0 * stats.spec_acceptance_rate, stats.spec_mean_accepted_length);
  }
  return n_errors == 0 ? 0 : 1;
}

int run_single(const Opts& o, const std::shared_ptr<const Model>& model,
               const std::shared_ptr<const Tokenizer>& tok, const SamplingParams& params) {
  const int n_set = int(!o.prompt.empty()) + int(!o.prompt_file.empty()) + int(!o.prompt_tokens.empty());
  if (n_set != 1) return fail("give exactly one of --prompt, --prompt-file, --prompt-tokens, --batch-file");
  std::vector<int32_t> ids;
  if (!o.prompt_tokens.empty()) {
    auto r = parse_token_ids(o.prompt_tokens, tok->n_vocab());
    if (!r) return fail(r.error().message);
    ids = std::move(*r);
  } else {
    std::string text = o.prompt;
    if (!o.prompt_file.empty()) {
      auto r = read_file(o.prompt_file, "--prompt-file");
      if (!r) return fail(r.error().message);
      text = std::move(*r);
    }
    // Special tokens written in the prompt (e.g. ChatML's <|im_start|>) are parsed.
    ids = tok->encode(text, /*add_special=*/true, /*parse_special=*/true);
    if (ids.empty()) return fail("the prompt is empty");
  }
  const int n_prompt = int(ids.size());
  if (int64_t(n_prompt) + o.max_tokens > model->config().n_ctx_train)
    std::fprintf(
        stderr,
        "kvserve generate: warning: %d prompt + %d new tokens exceed the model's training context %d\n",
        n_prompt, o.max_tokens, model->config().n_ctx_train);

  EngineConfig cfg = engine_config(o);
  // One sequence: a cache exactly big enough unless the user sized it.
  if (cfg.kv_cache_memory == 0 && cfg.num_kv_blocks == 0)
    cfg.num_kv_blocks = (n_prompt + o.max_tokens + cfg.block_size - 1) / cfg.block_size + 1;
  if (cfg.max_model_len == 0)
    cfg.max_model_len = std::max(model->config().n_ctx_train, n_prompt + o.max_tokens);
  auto engine = Engine::create(cfg, model, tok);
  if (!engine) return fail(engine.error().message);
  if (auto st = (*engine)->add_request("0", ids, params); !st) return fail(st.error().message);

  std::vector<int32_t> out_tokens;
  std::string text;
  std::vector<LogprobsEntry> gen_lp, prompt_lp;
  const char* finish = "abort";
  const auto t0 = Clock::now();
  auto t_first = t0;
  while ((*engine)->has_unfinished()) {
    for (const RequestOutput& d : (*engine)->step()) {
      if (out_tokens.empty() && !d.token_ids.empty()) t_first = Clock::now();
      out_tokens.insert(out_tokens.end(), d.token_ids.begin(), d.token_ids.end());
      gen_lp.insert(gen_lp.end(), d.logprobs.begin(), d.logprobs.end());
      if (!d.prompt_logprobs.empty()) prompt_lp = d.prompt_logprobs;
      text += d.text;
      if (!o.json && !d.text.empty()) {
        std::fwrite(d.text.data(), 1, d.text.size(), stdout);
        std::fflush(stdout);
      }
      if (d.finished) finish = d.finish_reason_name();
    }
  }
  const auto t_end = Clock::now();
  const double prefill_s = std::chrono::duration<double>(t_first - t0).count();
  const double decode_s = std::chrono::duration<double>(t_end - t_first).count();
  const double prompt_tps = prefill_s > 0 ? n_prompt / prefill_s : 0.0;
  // The first token comes with the prefill; the rest are one decode step each.
  const double gen_tps =
      decode_s > 0 && out_tokens.size() > 1 ? double(out_tokens.size() - 1) / decode_s : 0.0;
  if (o.json) {
    json j;
    j["prompt_tokens"] = ids;
    j["tokens"] = out_tokens;
    j["text"] = text;
    j["finish_reason"] = finish;
    j["logprobs"] = o.logprobs >= 0 ? logprobs_json(gen_lp, false) : json(nullptr);
    j["prompt_logprobs"] = o.prompt_logprobs >= 0 ? logprobs_json(prompt_lp, true) : json(nullptr);
    j["time_to_first_token_s"] = prefill_s;
    j["prompt_tokens_per_second"] = prompt_tps;
    j["generated_tokens_per_second"] = gen_tps;
    if (cfg.speculative.enabled()) {
      const EngineStats es = (*engine)->stats();
      j["speculative"] = {{"method", spec_method_name(cfg.speculative.method)},
                          {"drafts", es.spec_drafts},
                          {"draft_model_forwards", es.spec_draft_forwards},
                          {"steps_without_drafting", es.spec_steps_skipped},
                          {"draft_tokens", es.spec_draft_tokens},
                          {"accepted_tokens", es.spec_accepted_tokens},
                          {"acceptance_rate", es.spec_acceptance_rate()},
                          {"mean_accepted_length", es.spec_mean_accepted_length()}};
    }
    std::printf("%s\n", dump(j).c_str());
  } else {
    std::printf("\n");
    std::fprintf(stderr, "prompt: %d tokens, %.1f tokens/s; generated: %zu tokens, %.1f tokens/s (%s)\n",
                 n_prompt, prompt_tps, out_tokens.size(), gen_tps, finish);
    if (cfg.speculative.enabled()) {
      const EngineStats es = (*engine)->stats();
      std::fprintf(stderr, "speculative (%s): %lld drafts, acceptance %.1f%%, mean accepted length %.2f\n",
                   spec_method_name(cfg.speculative.method), (long long)es.spec_drafts,
                   100.0 * es.spec_acceptance_rate(), es.spec_mean_accepted_length());
    }
  }
  return 0;
}

int run_generate(const Opts& o) {
  auto model = Model::load(o.model);
  if (!model) return fail(model.error().message);
  auto tok = Tokenizer::from_gguf((*model)->gguf());
  if (!tok) return fail(tok.error().message);
  if (o.max_tokens < 1) return fail("--max-tokens must be at least 1");
  const SamplingParams params = sampling_params(o);
  if (auto st = params.validate((*model)->config().n_vocab); !st) return fail(st.error().message);
  std::shared_ptr<const Model> m(std::move(*model));
  std::shared_ptr<const Tokenizer> t(std::move(*tok));
  if (!o.batch_file.empty()) {
    if (!o.prompt.empty() || !o.prompt_file.empty() || !o.prompt_tokens.empty())
      return fail("--batch-file cannot be combined with --prompt, --prompt-file or --prompt-tokens");
    return run_batch(o, m, t, params);
  }
  return run_single(o, m, t, params);
}

const kvserve::cli::Registrar reg{
    "generate", "Generate text from a prompt (or a file of prompts) with a GGUF model", [](CLI::App& app) {
      auto o = std::make_shared<Opts>();
      app.add_option("-m,--model", o->model, "GGUF model file")->required();
      app.add_option("-p,--prompt", o->prompt, "Prompt text (special tokens like <|im_start|> are parsed)");
      app.add_option("--prompt-file", o->prompt_file, "Read the prompt text from a file");
      app.add_option("--prompt-tokens", o->prompt_tokens, "Prompt as token ids, e.g. \"1 403 407\"");
      app.add_option("--batch-file", o->batch_file,
                     "One prompt per line (\\n escapes a newline), all run at once through the engine");
      app.add_option("-n,--max-tokens", o->max_tokens, "Most tokens to generate")->capture_default_str();
      app.add_flag("--ignore-eos", o->ignore_eos, "Keep generating past end-of-generation tokens");
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
      app.add_flag("--json", o->json, "Print JSON (one object per prompt, then a summary with --batch-file)");
      kvserve::cli::add_engine_options(
          app, o->engine,
          {.kv_cache_memory_default = "sized for the work",
           .max_model_len_default = "the model's, or longer to fit the prompt and --max-tokens"});
      return [o] { return run_generate(*o); };
    }};

}  // namespace

// `kvserve bench throughput`: offline run of the continuous-batching engine. N prompts of
// random token ids, each generating exactly --output-len tokens (EOS ignored), all queued
// at once. With --num-prompts = --concurrency it is the workload of
// `llama-batched-bench -npp <input-len> -ntg <output-len> -npl <concurrency>`, whose
// "S t/s" is our total tokens/s ((prompt + output) / elapsed).
//
// --prompts-file runs given texts instead (input-grounded tasks: code edits, copying,
// answers from a document), each up to --output-len tokens, stopping at EOS. With
// --speculative-method the same workload first runs without speculation, and the
// speedup is printed; greedy outputs must be identical or the bench fails.
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <vector>

#include "cli/cmd_bench.h"
#include "cli/engine_options.h"
#include "kvserve/engine.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace kvserve::bench {
namespace {

struct Opts {
  std::string model;
  std::string prompts_file;  // texts separated by lines "---"; empty = random ids
  int num_prompts = 0;       // 0 = --concurrency
  int input_len = 128;
  int output_len = 64;
  // Filled by add_engine_options(); this bench's own defaults are set in setup_throughput().
  EngineConfig engine;
  bool warmup = true;
  uint64_t seed = 0;
  std::string json;
  bool quiet = false;
};

struct Progress {
  bool quiet;
  int64_t shown = -1;
};

void progress(int64_t done, int64_t total, void* user) {
  auto* p = static_cast<Progress*>(user);
  if (p->quiet || done == p->shown) return;  // once per change, not once per step
  p->shown = done;
  std::fprintf(stderr, "\r  %lld / %lld requests done", (long long)done, (long long)total);
}

std::vector<GenerateInput> random_prompts(int n, int len, int32_t vocab, int32_t bos, std::mt19937_64& rng) {
  std::vector<GenerateInput> inputs(static_cast<size_t>(n));
  for (auto& in : inputs) {
    if (bos >= 0) in.token_ids.push_back(bos);
    while (int(in.token_ids.size()) < len) in.token_ids.push_back(int32_t(rng() % uint64_t(vocab)));
  }
  return inputs;
}

// Texts separated by lines holding only "---"; a trailing newline of each is dropped.
std::vector<std::string> read_prompts(const std::string& path) {
  std::ifstream f(path);
  std::vector<std::string> out;
  if (!f) return out;
  std::string line, cur;
  auto flush = [&] {
    while (!cur.empty() && cur.back() == '\n') cur.pop_back();
    if (!cur.empty()) out.push_back(cur);
    cur.clear();
  };
  while (std::getline(f, line)) {
    if (line == "---") {
      flush();
    } else {
      cur += line + "\n";
    }
  }
  flush();
  return out;
}

struct RunResult {
  int kv_blocks = 0;
  GenerateStats st;
  std::vector<std::vector<int32_t>> tokens;
};

struct Loaded {
  std::shared_ptr<const Model> model;
  std::shared_ptr<const Tokenizer> tok;
};

Result<RunResult> run_once(const EngineConfig& c, const Loaded& l, const Opts& o,
                           const std::vector<GenerateInput>& inputs, const SamplingParams& p, bool grounded) {
  auto engine = Engine::create(c, l.model, l.tok);
  if (!engine) return engine.error();
  Engine& e = **engine;
  if (o.warmup) {  // pages the weights in and sizes the runner's buffers
    SamplingParams wp = p;
    wp.max_tokens = 4;
    generate(e, std::span(inputs).first(std::min<size_t>(inputs.size(), 4)), wp);
  }
  Progress prog{o.quiet};
  RunResult r;
  r.kv_blocks = e.config().num_kv_blocks;
  auto outs = generate(e, inputs, p, &r.st, {}, progress, &prog);
  if (!o.quiet) std::fprintf(stderr, "\n");
  for (const auto& out : outs) {
    if (!out.error.empty()) return Error{out.error};
    if (out.completions.empty() || (!grounded && int(out.completions[0].token_ids.size()) != o.output_len))
      return Error{"a request did not generate --output-len tokens"};
    r.tokens.push_back(out.completions[0].token_ids);
  }
  return r;
}

int run(Opts& o) {
  const int concurrency = o.engine.max_num_seqs;
  if (o.num_prompts <= 0) o.num_prompts = concurrency;
  if (o.input_len < 1 || o.output_len < 1 || concurrency < 1)
    return fail("throughput", "--input-len, --output-len and --concurrency must be at least 1");
  EngineConfig c = o.engine;
  c.model_path = o.model;
  const bool grounded = !o.prompts_file.empty();
  std::vector<std::string> texts;
  if (grounded) {
    texts = read_prompts(o.prompts_file);
    if (texts.empty()) return fail("throughput", "--prompts-file " + o.prompts_file + " holds no prompts");
  }
  if (c.max_model_len == 0) c.max_model_len = o.input_len + o.output_len;
  // Enough KV for every sequence at once unless told otherwise, so preemption does not
  // enter the figure (llama-batched-bench sizes its context for all of them too).
  if (c.kv_cache_memory == 0 && c.num_kv_blocks == 0)
    c.num_kv_blocks = concurrency * ((c.max_model_len + c.block_size - 1) / c.block_size) + 1;

  auto model = Model::load(o.model);
  if (!model) return fail("throughput", model.error().message);
  auto tok = Tokenizer::from_gguf((*model)->gguf());
  if (!tok) return fail("throughput", tok.error().message);
  const Loaded l{std::shared_ptr<const Model>(std::move(*model)),
                 std::shared_ptr<const Tokenizer>(std::move(*tok))};
  std::mt19937_64 rng(o.seed);
  std::vector<GenerateInput> inputs;
  if (grounded) {
    for (int i = 0; i < o.num_prompts; ++i)
      inputs.emplace_back().token_ids = l.tok->encode(texts[size_t(i) % texts.size()], true, true);
  } else {
    inputs = random_prompts(o.num_prompts, o.input_len, l.model->config().n_vocab, l.tok->bos_id(), rng);
  }
  SamplingParams p;
  p.temperature = 0.0f;
  p.ignore_eos = !grounded;
  p.max_tokens = o.output_len;
  if (!o.quiet)
    std::fprintf(
        stderr, "throughput: %s, %d prompts x (%s, %d out), %d at once, %d threads, %d KV blocks\n",
        o.model.c_str(), o.num_prompts,
        grounded ? ("texts of " + o.prompts_file).c_str() : (std::to_string(o.input_len) + " in").c_str(),
        o.output_len, concurrency, c.n_threads, c.num_kv_blocks);

  const bool spec = c.speculative.enabled();
  std::optional<RunResult> base;
  if (spec) {  // the same workload without speculation first
    EngineConfig bc = c;
    bc.speculative.method = SpecMethod::None;
    if (!o.quiet) std::fprintf(stderr, "throughput: without speculation\n");
    auto r = run_once(bc, l, o, inputs, p, grounded);
    if (!r) return fail("throughput", r.error().message);
    base = std::move(*r);
    if (!o.quiet)
      std::fprintf(stderr, "throughput: with speculation (%s)\n", spec_method_name(c.speculative.method));
  }
  auto r = run_once(c, l, o, inputs, p, grounded);
  if (!r) return fail("throughput", r.error().message);
  const GenerateStats& st = r->st;
  if (base && base->tokens != r->tokens)
    return fail("throughput", "speculation changed a greedy output: a bug (outputs must be identical)");
  std::printf(
      "%d x (%d in, %d out), %d at once: %.2f requests/s, %.1f output tokens/s, %.1f total tokens/s "
      "(%.2f s, %lld steps, %lld preemptions)\n",
      o.num_prompts, int(st.prompt_tokens / std::max<int64_t>(1, st.num_requests)), o.output_len, concurrency,
      st.requests_per_s, st.output_tokens_per_s, st.total_tokens_per_s, st.elapsed_s, (long long)st.steps,
      (long long)st.preemptions);
  if (base)
    std::printf(
        "speculative %s: %.2fx output tokens/s (%.1f without), acceptance %.1f%%, mean accepted length %.2f, "
        "%lld vs %lld steps\n",
        spec_method_name(c.speculative.method), st.output_tokens_per_s / base->st.output_tokens_per_s,
        base->st.output_tokens_per_s, 100.0 * st.spec_acceptance_rate, st.spec_mean_accepted_length,
        (long long)st.steps, (long long)base->st.steps);
  nlohmann::json j = {{"mode", "throughput"},
                      {"model", o.model},
                      {"num_prompts", o.num_prompts},
                      {"input_len", o.input_len},
                      {"output_len", o.output_len},
                      {"concurrency", concurrency},
                      {"max_num_batched_tokens", c.max_num_batched_tokens},
                      {"kv_cache_dtype", kv_dtype_name(c.kv_cache_dtype)},
                      {"threads", c.n_threads},
                      {"kv_blocks", r->kv_blocks},
                      {"workload", grounded ? o.prompts_file : "random"},
                      {"elapsed_s", st.elapsed_s},
                      {"requests_per_s", st.requests_per_s},
                      {"output_tokens_per_s", st.output_tokens_per_s},
                      {"total_tokens_per_s", st.total_tokens_per_s},
                      {"prompt_tokens", st.prompt_tokens},
                      {"output_tokens", st.output_tokens},
                      {"steps", st.steps},
                      {"preemptions", st.preemptions}};
  if (base)
    j["speculative"] = {{"method", spec_method_name(c.speculative.method)},
                        {"num_speculative_tokens", c.speculative.num_tokens},
                        {"speedup", st.output_tokens_per_s / base->st.output_tokens_per_s},
                        {"output_tokens_per_s_without", base->st.output_tokens_per_s},
                        {"steps_without", base->st.steps},
                        {"acceptance_rate", st.spec_acceptance_rate},
                        {"mean_accepted_length", st.spec_mean_accepted_length}};
  return write_json(o.json, j) ? 0 : 1;
}

}  // namespace

RunFn setup_throughput(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  app.add_option("-m,--model", o->model, "GGUF model file")->required();
  app.add_option("--num-prompts", o->num_prompts, "Requests (0 = --concurrency)")->capture_default_str();
  app.add_option("--prompts-file", o->prompts_file,
                 "Texts to run instead of random ids, separated by lines '---' (cycled over --num-prompts; "
                 "each stops at EOS or --output-len)");
  app.add_option("--input-len", o->input_len, "Prompt tokens per request (random ids)")
      ->capture_default_str();
  app.add_option("--output-len", o->output_len, "Generated tokens per request (EOS ignored)")
      ->capture_default_str();
  // This bench's defaults: 32 sequences, 2 threads, and no prefix cache (random prompts
  // share nothing; keep hashing out of the figure).
  o->engine.max_num_seqs = 32;
  o->engine.n_threads = 2;
  o->engine.enable_prefix_caching = false;
  cli::add_engine_options(app, o->engine,
                          {.max_num_seqs_names = "-c,--concurrency,--max-num-seqs",
                           .kv_cache_memory_default = "room for all sequences",
                           .max_model_len_default = "--input-len + --output-len"});
  app.add_flag("!--no-warmup", o->warmup, "Skip the warm-up run");
  app.add_option("--seed", o->seed, "Seed of the random prompts")->capture_default_str();
  app.add_option("--json", o->json, "Write the result as JSON to this file ('-' = stdout)");
  app.add_flag("-q,--quiet", o->quiet, "No progress on stderr");
  return [o] { return run(*o); };
}

}  // namespace kvserve::bench

// `kvserve bench throughput`: offline run of the continuous-batching engine. N prompts of
// random token ids, each generating exactly --output-len tokens (EOS ignored), all queued
// at once. With --num-prompts = --concurrency it is the workload of
// `llama-batched-bench -npp <input-len> -ntg <output-len> -npl <concurrency>`, whose
// "S t/s" is our total tokens/s ((prompt + output) / elapsed).
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include "cli/cmd_bench.h"
#include "cli/engine_options.h"
#include "kvserve/engine.h"
#include "tokenizer/tokenizer.h"

namespace kvserve::bench {
namespace {

struct Opts {
  std::string model;
  int num_prompts = 0;  // 0 = --concurrency
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

int run(Opts& o) {
  const int concurrency = o.engine.max_num_seqs;
  if (o.num_prompts <= 0) o.num_prompts = concurrency;
  if (o.input_len < 1 || o.output_len < 1 || concurrency < 1)
    return fail("throughput", "--input-len, --output-len and --concurrency must be at least 1");
  EngineConfig c = o.engine;
  c.model_path = o.model;
  if (c.max_model_len == 0) c.max_model_len = o.input_len + o.output_len;
  // Enough KV for every sequence at once unless told otherwise, so preemption does not
  // enter the figure (llama-batched-bench sizes its context for all of them too).
  if (c.kv_cache_memory == 0 && c.num_kv_blocks == 0)
    c.num_kv_blocks = concurrency * ((o.input_len + o.output_len + c.block_size - 1) / c.block_size) + 1;
  auto engine = Engine::create(c);
  if (!engine) return fail("throughput", engine.error().message);
  Engine& e = **engine;

  std::mt19937_64 rng(o.seed);
  const int32_t vocab = e.n_vocab();
  const int32_t bos = e.tokenizer().bos_id();
  SamplingParams p;
  p.temperature = 0.0f;
  p.ignore_eos = true;
  Progress prog{o.quiet};
  if (o.warmup) {  // pages the weights in and sizes the runner's buffers
    if (!o.quiet) std::fprintf(stderr, "throughput: warm-up\n");
    p.max_tokens = 4;
    auto w = random_prompts(std::min(o.num_prompts, 4), o.input_len, vocab, bos, rng);
    generate(e, w, p);
  }
  p.max_tokens = o.output_len;
  auto inputs = random_prompts(o.num_prompts, o.input_len, vocab, bos, rng);
  if (!o.quiet)
    std::fprintf(stderr,
                 "throughput: %s, %d prompts x (%d in, %d out), %d at once, %d threads, %d KV blocks\n",
                 o.model.c_str(), o.num_prompts, o.input_len, o.output_len, concurrency, c.n_threads,
                 e.config().num_kv_blocks);
  GenerateStats st;
  auto outs = generate(e, inputs, p, &st, {}, progress, &prog);
  if (!o.quiet) std::fprintf(stderr, "\n");
  for (const auto& out : outs) {
    if (!out.error.empty()) return fail("throughput", out.error);
    if (out.completions.empty() || int(out.completions[0].token_ids.size()) != o.output_len)
      return fail("throughput", "a request did not generate --output-len tokens");
  }
  std::printf(
      "%d x (%d in, %d out), %d at once: %.2f requests/s, %.1f output tokens/s, %.1f total tokens/s "
      "(%.2f s, %lld steps, %lld preemptions)\n",
      o.num_prompts, o.input_len, o.output_len, concurrency, st.requests_per_s, st.output_tokens_per_s,
      st.total_tokens_per_s, st.elapsed_s, (long long)st.steps, (long long)st.preemptions);
  nlohmann::json j = {{"mode", "throughput"},
                      {"model", o.model},
                      {"num_prompts", o.num_prompts},
                      {"input_len", o.input_len},
                      {"output_len", o.output_len},
                      {"concurrency", concurrency},
                      {"max_num_batched_tokens", c.max_num_batched_tokens},
                      {"kv_cache_dtype", kv_dtype_name(c.kv_cache_dtype)},
                      {"threads", c.n_threads},
                      {"kv_blocks", e.config().num_kv_blocks},
                      {"elapsed_s", st.elapsed_s},
                      {"requests_per_s", st.requests_per_s},
                      {"output_tokens_per_s", st.output_tokens_per_s},
                      {"total_tokens_per_s", st.total_tokens_per_s},
                      {"prompt_tokens", st.prompt_tokens},
                      {"output_tokens", st.output_tokens},
                      {"steps", st.steps},
                      {"preemptions", st.preemptions}};
  return write_json(o.json, j) ? 0 : 1;
}

}  // namespace

RunFn setup_throughput(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  app.add_option("-m,--model", o->model, "GGUF model file")->required();
  app.add_option("--num-prompts", o->num_prompts, "Requests (0 = --concurrency)")->capture_default_str();
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

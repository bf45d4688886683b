// The continuous-batching engine: requests in, per-step deltas out.
//
//   auto engine = Engine::create(config);            // loads the model, sizes the KV cache
//   engine->add_request("a", "Once upon a time", params);
//   while (engine->has_unfinished())
//     for (const RequestOutput& d : engine->step()) ...  // new tokens / text / finish
//
// Engine is single-threaded (one step loop); AsyncEngine (engine/async_engine.h) is the
// thread-safe front the server uses, and generate() the offline batch API.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvserve/finish_reason.h"
#include "kvserve/kv_dtype.h"
#include "kvserve/logprobs.h"
#include "kvserve/result.h"
#include "kvserve/sampling_params.h"
#include "kvserve/speculative.h"

namespace kvserve {

class Model;
class Tokenizer;

struct EngineConfig {
  std::string model_path;
  // KV cache size: num_kv_blocks if > 0 (blocks of block_size tokens of every layer; the
  // created engine's config holds the pool's blocks, one KV group's layers each with a
  // hybrid cache), else kv_cache_memory bytes if > 0, else kv_cache_fraction of the
  // memory available now.
  int num_kv_blocks = 0;
  int64_t kv_cache_memory = 0;
  double kv_cache_fraction = 0.25;
  int block_size = 16;
  KvDtype kv_cache_dtype = KvDtype::F16;  // f16 halves the bytes per token (f32: exact K/V)
  int max_num_seqs = 64;
  int max_num_batched_tokens = 512;
  int max_model_len = 0;  // 0 = the model's training context
  bool enable_prefix_caching = true;
  // Hybrid KV cache (models mixing sliding-window and global layers, such as Gemma 3, and
  // those whose every layer slides, such as Mistral): sliding layers keep only their
  // window's blocks, so a long context holds a fraction of the memory. Off: every layer
  // keeps every position (for comparison).
  bool hybrid_kv_cache = true;
  bool enable_chunked_prefill = true;
  int max_chunk_tokens = 0;       // per request per step (0 = the whole budget)
  int n_threads = 0;              // 0 = all hardware threads
  SpeculativeConfig speculative;  // off unless a method is set
};

// What one step produced for one completion (one of a request's n).
struct RequestOutput {
  std::string request_id;
  int index = 0;                               // which completion of the request (0 .. n-1)
  std::vector<int32_t> token_ids;              // new tokens this step (all of them when buffered for best_of)
  std::string text;                            // new text, stop strings already cut
  std::vector<LogprobsEntry> logprobs;         // one per new token when params.logprobs >= 0
  std::vector<LogprobsEntry> prompt_logprobs;  // first output only, when params.prompt_logprobs >= 0
  bool finished = false;
  FinishReason finish_reason = FinishReason::None;
  bool aborted = false;
  int num_prompt_tokens = 0;
  int num_output_tokens = 0;        // generated so far by this completion
  int num_cached_tokens = 0;        // prompt tokens served from the prefix cache (first admission)
  double cumulative_logprob = 0.0;  // sum of the raw logprobs of its tokens (when tracked)
  // When the scheduler first gave the request a step (before that step's forward), so
  // queue time = first_scheduled - arrival excludes the prefill itself.
  std::chrono::steady_clock::time_point first_scheduled{};
  // "stop", "length", "abort" or nullptr while unfinished.
  const char* finish_reason_name() const {
    return aborted ? "abort" : finished ? kvserve::finish_reason_name(finish_reason) : nullptr;
  }
};

struct EngineStats {
  int64_t steps = 0;
  int64_t prompt_tokens_computed = 0;  // prefill work, recomputation included
  int64_t generated_tokens = 0;
  int64_t preemptions = 0;
  int64_t requests_finished = 0;
  int running = 0;
  int waiting = 0;
  int blocks_total = 0;
  int blocks_used = 0;
  int blocks_cached = 0;
  int block_size = 0;
  double prefix_cache_hit_rate = 0.0;  // hit tokens / looked-up prompt tokens
  double kv_fragmentation = 0.0;       // allocated slots past each sequence's end / allocated slots
  double kv_usage = 0.0;               // blocks_used / blocks_total
  // Decode row tiles whose keys the runner split by segment over its threads (split-K).
  int64_t attention_split_tiles = 0;
  // Speculative decoding (as vLLM counts it): drafts proposed and run, their tokens, the
  // tokens the target confirmed, and how many were confirmed at each draft position.
  int64_t spec_drafts = 0;
  int64_t spec_draft_tokens = 0;
  int64_t spec_accepted_tokens = 0;
  std::vector<int64_t> spec_accepted_per_pos;  // [num_speculative_tokens]
  // Steps whose drafts the cost model dropped because they would not have paid off.
  int64_t spec_steps_skipped = 0;
  int spec_draft_blocks_used = 0;   // KV blocks a draft model's own cache holds now
  int64_t spec_draft_forwards = 0;  // forwards a draft model ran
  // Token trees (--speculative-tree): drafts verified as trees (part of spec_drafts), and
  // those whose kept path was not the first (the proposer's likeliest) one.
  int64_t spec_tree_drafts = 0;
  int64_t spec_tree_other_path = 0;
  int64_t spec_trees_cut = 0;  // steps whose trees the cost model cut to their first paths
  double spec_acceptance_rate() const {
    return spec_draft_tokens ? double(spec_accepted_tokens) / double(spec_draft_tokens) : 0.0;
  }
  // Tokens a speculating step yields per draft: the accepted ones plus the target's own.
  double spec_mean_accepted_length() const {
    return spec_drafts ? 1.0 + double(spec_accepted_tokens) / double(spec_drafts) : 0.0;
  }
};

class Engine {
 public:
  static Result<std::unique_ptr<Engine>> create(const EngineConfig& config);
  // Over an already loaded model and tokenizer, shared with the caller.
  static Result<std::unique_ptr<Engine>> create(const EngineConfig& config,
                                                std::shared_ptr<const Model> model,
                                                std::shared_ptr<const Tokenizer> tokenizer);
  ~Engine();

  // Queues a request. Fails (and queues nothing) on a duplicate id, invalid params, or a
  // request that could never fit the context or the cache. The text is tokenized with
  // the model's BOS rule; special tokens written in it are recognised.
  Status add_request(std::string id, std::string_view prompt, const SamplingParams& params, int priority = 0);
  Status add_request(std::string id, std::vector<int32_t> prompt_tokens, const SamplingParams& params,
                     int priority = 0);
  // The checks add_request() makes except the duplicate id: params, vocabulary, context
  // and cache limits. Reads only what is fixed at creation, so any thread may call it.
  Status check_request(std::span<const int32_t> prompt_tokens, const SamplingParams& params) const;
  // Stops a request and frees its blocks now; the next step() reports it finished with
  // aborted = true. False if unknown or already finished.
  bool abort(std::string_view id);

  // Runs one scheduler step and one forward. Outputs stay valid until the next call.
  const std::vector<RequestOutput>& step();
  bool has_unfinished() const;

  EngineStats stats() const;
  const Tokenizer& tokenizer() const;
  const EngineConfig& config() const;  // with the sizes chosen at creation filled in
  int32_t n_vocab() const;

 private:
  // Defined in src/engine/engine_impl.h; private so the public API cannot reach into it.
  struct Impl;
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// ---- offline batch generation ----

struct GenerateOutput {
  std::string request_id;
  std::vector<int32_t> prompt_token_ids;
  // One per completion (n of them).
  struct Completion {
    std::vector<int32_t> token_ids;
    std::string text;
    std::vector<LogprobsEntry> logprobs;
    FinishReason finish_reason = FinishReason::None;
    const char* finish_reason_name() const { return kvserve::finish_reason_name(finish_reason); }
    double cumulative_logprob = 0.0;
  };
  std::vector<Completion> completions;
  std::vector<LogprobsEntry> prompt_logprobs;
  std::string error;  // set (and completions empty) if the request was rejected
};

struct GenerateStats {
  double elapsed_s = 0.0;
  int64_t num_requests = 0;
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 0;
  double requests_per_s = 0.0;
  double output_tokens_per_s = 0.0;
  double total_tokens_per_s = 0.0;  // (prompt + output) / elapsed
  int64_t preemptions = 0;
  double prefix_cache_hit_rate = 0.0;
  int64_t steps = 0;
  // Speculative decoding during the run (zero when off).
  int64_t spec_drafts = 0;
  int64_t spec_draft_tokens = 0;
  int64_t spec_accepted_tokens = 0;
  double spec_acceptance_rate = 0.0;       // accepted / draft tokens
  double spec_mean_accepted_length = 0.0;  // tokens per speculating step: 1 + accepted / drafts
};

struct GenerateInput {
  std::string prompt;  // used when token_ids is empty
  std::vector<int32_t> token_ids;
  int priority = 0;
};

// Runs every input to completion with one set of sampling params (or one per input if
// per_input_params has inputs.size() entries); outputs in input order. `progress`, if
// set, is called after each step with (finished requests, total).
using GenerateProgress = void (*)(int64_t finished, int64_t total, void* user);
std::vector<GenerateOutput> generate(Engine& engine, std::span<const GenerateInput> inputs,
                                     const SamplingParams& params, GenerateStats* stats = nullptr,
                                     std::span<const SamplingParams> per_input_params = {},
                                     GenerateProgress progress = nullptr, void* progress_user = nullptr);

}  // namespace kvserve

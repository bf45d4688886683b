// What the HTTP server needs from the engine, in the server's own terms. The server is
// written against this interface; engine_backend.cpp adapts the real engine to it. The
// engine calls `on_delta` from its loop thread, so callbacks only queue and notify.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "kvserve/sampling_params.h"
#include "sample/logprobs.h"

namespace kvserve {
class Tokenizer;
}

namespace kvserve::server {

using Clock = std::chrono::steady_clock;

// New output of one sequence (one choice) of a submitted prompt.
struct GenDelta {
  int index = 0;                                     // choice index within the submission, 0..n-1
  std::vector<int32_t> token_ids;                    // tokens generated since the last delta
  std::string text;                                  // their text, complete UTF-8, stop strings cut
  std::vector<LogprobsEntry> logprobs;               // one per token when params.logprobs >= 0
  std::vector<LogprobsEntry> prompt_logprobs;        // first delta only, when prompt_logprobs >= 0
  std::string finish_reason;                         // "" while running; "stop" | "length" | "abort"
  std::optional<Clock::time_point> first_scheduled;  // when the prompt was first scheduled
  int num_cached_tokens = -1;  // first delta of index 0: prompt tokens found in the prefix cache
};

using DeltaFn = std::function<void(GenDelta&&)>;

struct Submission {
  std::vector<int32_t> prompt;
  SamplingParams params;
  DeltaFn on_delta;
};

// Engine state for /metrics; reading it must never wait for an engine step.
struct BackendStats {
  int num_running = 0;
  int num_waiting = 0;
  double kv_cache_usage = 0.0;  // used blocks / all blocks, in [0, 1]
  uint64_t num_preemptions = 0;
  // Tokens the engine sampled, those no client will read included (an abandoned request's
  // last steps): compared with the server's own count, it shows whether aborts reach the engine.
  uint64_t generated_tokens = 0;
  // Speculative decoding (zero / empty when the engine does not speculate).
  uint64_t spec_drafts = 0;
  uint64_t spec_draft_tokens = 0;
  uint64_t spec_accepted_tokens = 0;
  std::vector<uint64_t> spec_accepted_per_pos;
  // The KV cache's shape (fixed for the engine's life; empty dtype: not known).
  std::string kv_cache_dtype;
  int kv_cache_block_size = 0;
  int kv_cache_blocks = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Queues prompts, each generating params.n choices, all or none: on an error (a
  // request that can never run) none stays queued. `on_delta` receives every choice's
  // output, ending with one delta per choice that has a finish_reason. Returns one id per
  // submission for abort().
  virtual Result<std::vector<uint64_t>> submit(std::vector<Submission> subs) = 0;
  // Ends the request: its unfinished choices get a final "abort" delta and free their
  // KV blocks within one engine step. Unknown or finished ids are ignored.
  virtual void abort(uint64_t id) = 0;
  virtual BackendStats stats() const = 0;

  virtual const Tokenizer& tokenizer() const = 0;
  virtual int max_model_len() const = 0;
};

}  // namespace kvserve::server

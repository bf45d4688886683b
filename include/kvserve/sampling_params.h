// Per-request sampling parameters (the OpenAI / vLLM set) and their validation.
// Owned by a request; read by the sampler (src/sample/sampler.h), the stop matcher
// (src/engine/stop_matcher.h) and the server's request parsing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kvserve/result.h"

namespace kvserve {

struct SamplingParams {
  int n = 1;                        // completions returned
  int best_of = 0;                  // completions generated, the n best returned; 0 = n
  float temperature = 1.0f;         // 0 = greedy (argmax, ties -> lowest id)
  int top_k = -1;                   // keep the k most likely tokens; <= 0 = off
  float top_p = 1.0f;               // nucleus: smallest set with cumulative prob >= top_p; 1 = off
  float min_p = 0.0f;               // drop tokens with prob < min_p * max prob; 0 = off
  float repetition_penalty = 1.0f;  // HF/llama.cpp style over prompt + output; 1 = off
  float presence_penalty = 0.0f;    // OpenAI style over output tokens, [-2, 2]
  float frequency_penalty = 0.0f;   // OpenAI style over output tokens, [-2, 2]
  std::vector<std::pair<int32_t, float>> logit_bias;  // (token id, added to its logit)
  std::optional<uint64_t> seed;                       // fixed seed = reproducible; none = random device
  std::vector<std::string> stop;                      // stop strings, matched on detokenized text
  std::vector<int32_t> stop_token_ids;
  bool include_stop_str_in_output = false;
  int max_tokens = 16;  // generated tokens at most (finish_reason "length")
  int min_tokens = 0;   // EOS / stop tokens are suppressed until this many are generated
  bool ignore_eos = false;
  int logprobs = -1;         // -1 = none; K >= 0 = top-K logprobs plus the sampled token's
  int prompt_logprobs = -1;  // -1 = none; K >= 0 = per prompt token, as for logprobs
  bool skip_special_tokens = true;
  // false: this request never speculates, even when the engine does (its output is the
  // same either way; only its speed differs).
  bool speculative = true;

  // Temperatures below this are treated as greedy: dividing by them would overflow and
  // the distribution is one-hot anyway (vLLM uses the same epsilon).
  static constexpr float kGreedyEpsilon = 1e-5f;

  bool greedy() const { return temperature < kGreedyEpsilon; }
  int effective_best_of() const { return best_of > 0 ? best_of : n; }
  bool wants_logprobs() const { return logprobs >= 0; }

  // Checks ranges against the model's vocabulary; the message names the field and the
  // offending value, e.g. "temperature must be non-negative, got -0.5."
  Status validate(int32_t n_vocab) const;
};

}  // namespace kvserve

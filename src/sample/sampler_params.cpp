// SamplingParams::validate: range checks with vLLM/OpenAI-style messages, so a bad
// request is rejected before it reaches the scheduler.
#include <fmt/format.h>

#include <cmath>

#include "kvserve/sampling_params.h"

namespace kvserve {

namespace {
Status fail(std::string msg) {
  return Error{std::move(msg)};
}
}  // namespace

Status SamplingParams::validate(int32_t n_vocab) const {
  if (n < 1) return fail(fmt::format("n must be at least 1, got {}.", n));
  if (best_of != 0 && best_of < n)
    return fail(
        fmt::format("best_of must be greater than or equal to n, got n={} and best_of={}.", n, best_of));
  if (!(temperature >= 0.0f) || std::isinf(temperature))
    return fail(fmt::format("temperature must be non-negative, got {}.", temperature));
  if (!(top_p > 0.0f && top_p <= 1.0f)) return fail(fmt::format("top_p must be in (0, 1], got {}.", top_p));
  if (top_k == 0 || top_k < -1)
    return fail(fmt::format("top_k must be -1 (disable), or at least 1, got {}.", top_k));
  if (!(min_p >= 0.0f && min_p <= 1.0f)) return fail(fmt::format("min_p must be in [0, 1], got {}.", min_p));
  if (!(repetition_penalty > 0.0f) || std::isinf(repetition_penalty))
    return fail(fmt::format("repetition_penalty must be greater than zero, got {}.", repetition_penalty));
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f))
    return fail(fmt::format("presence_penalty must be in [-2, 2], got {}.", presence_penalty));
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f))
    return fail(fmt::format("frequency_penalty must be in [-2, 2], got {}.", frequency_penalty));
  if (max_tokens < 1) return fail(fmt::format("max_tokens must be at least 1, got {}.", max_tokens));
  if (min_tokens < 0)
    return fail(fmt::format("min_tokens must be greater than or equal to 0, got {}.", min_tokens));
  if (min_tokens > max_tokens)
    return fail(fmt::format("min_tokens must be less than or equal to max_tokens={}, got {}.", max_tokens,
                            min_tokens));
  if (logprobs < -1) return fail(fmt::format("logprobs must be non-negative, got {}.", logprobs));
  if (logprobs > n_vocab)
    return fail(fmt::format("logprobs must be at most the vocabulary size {}, got {}.", n_vocab, logprobs));
  if (prompt_logprobs < -1)
    return fail(fmt::format("prompt_logprobs must be non-negative, got {}.", prompt_logprobs));
  if (prompt_logprobs > n_vocab)
    return fail(fmt::format("prompt_logprobs must be at most the vocabulary size {}, got {}.", n_vocab,
                            prompt_logprobs));
  for (const auto& [tok, bias] : logit_bias) {
    if (tok < 0 || tok >= n_vocab)
      return fail(
          fmt::format("token_id {} in logit_bias is out of vocabulary. Vocabulary size: {}.", tok, n_vocab));
    if (std::isnan(bias)) return fail(fmt::format("logit_bias value for token_id {} is NaN.", tok));
  }
  for (int32_t tok : stop_token_ids)
    if (tok < 0 || tok >= n_vocab)
      return fail(fmt::format("token_id {} in stop_token_ids is out of vocabulary. Vocabulary size: {}.", tok,
                              n_vocab));
  for (const auto& s : stop)
    if (s.empty()) return fail("stop strings must not be empty.");
  return ok_status();
}

}  // namespace kvserve

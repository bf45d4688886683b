// Per-token log-probabilities as the engine reports them (RequestOutput, GenerateOutput).
// The functions that compute them are internal (src/sample/logprobs.h).
#pragma once

#include <cstdint>
#include <vector>

namespace kvserve {

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

// One position's logprobs, in the shape of OpenAI's / vLLM's response.
struct LogprobsEntry {
  int32_t token = 0;              // the sampled (or prompt) token
  float logprob = 0.0f;           // its log-probability
  int32_t rank = 0;               // 1 + number of tokens strictly more likely
  std::vector<TokenLogprob> top;  // the K most likely, descending; ties -> lower id
};

}  // namespace kvserve

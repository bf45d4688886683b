// Log-probabilities of a logits row: log-softmax, the top-K tokens and a token's rank.
// Used for sampled-token logprobs (Sampler) and prompt logprobs (engine). All values are
// of the row given, i.e. of the raw model distribution when the caller passes raw logits.
#pragma once

#include <cstdint>
#include <vector>

#include "kvserve/logprobs.h"  // TokenLogprob, LogprobsEntry

namespace kvserve {

// log(sum_i exp(x[i])), stable for any finite maximum; -inf for an all -inf row.
float log_sum_exp(const float* x, int32_t n);

// out[i] = x[i] - log_sum_exp(x); out may alias x.
void log_softmax(const float* x, int32_t n, float* out);

// The k largest values of x (k clamped to n) as (token, value) pairs, descending, ties to
// the lower id; the `logprob` field holds the raw value. `out` is overwritten.
void top_k_values(const float* x, int32_t n, int32_t k, std::vector<TokenLogprob>& out);

// The k most likely tokens of row x (k clamped to n), descending by logit, ties to the
// lower id, with logprob = x[id] - lse. `out` is overwritten; its capacity is reused.
void top_k_logprobs(const float* x, int32_t n, int32_t k, float lse, std::vector<TokenLogprob>& out);

// 1 + the number of tokens whose logit is strictly greater than x[token].
int32_t token_rank(const float* x, int32_t n, int32_t token);

// Fills `out` for `token` with the top-k list (k = 0: none). Row x: [n] logits.
void compute_logprobs(const float* x, int32_t n, int32_t token, int32_t k, LogprobsEntry& out);

}  // namespace kvserve

// Token sampling from one logits row, in vLLM's / llama.cpp's order:
//   logit bias -> min_tokens suppression of EOS / stop tokens -> penalties (repetition over
//   prompt + output, presence / frequency over output) -> greedy (temperature 0) or
//   temperature -> top-k -> top-p -> min-p -> draw.
// Logprobs are those of the *raw* model logits (before any of the above), as vLLM reports
// by default: they describe what the model predicted, independent of the request's
// sampling knobs.
//
// One Sampler per thread: it owns scratch buffers sized to the vocabulary, so sampling
// allocates nothing after the first call (except the caller's top-logprobs vector growing
// once to K). Per-sequence state (RNG, penalty counts) lives in SequenceSamplerState.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kvserve/sampling_params.h"
#include "sample/logprobs.h"
#include "sample/sampler_kernels.h"
#include "sample/sampler_state.h"

namespace kvserve {

class Sampler {
 public:
  // eos_token_ids: the model's end-of-generation tokens, suppressed until min_tokens.
  explicit Sampler(int32_t n_vocab, std::vector<int32_t> eos_token_ids = {});

  // Chooses the next token from `logits` ([n_vocab] raw model logits, not modified).
  // Advances state.rng(); does not call state.accept() (the caller does, once the token
  // is kept). If params.logprobs >= 0 and `logprobs` is non-null, fills it with the
  // chosen token's raw logprob, rank and the top-`params.logprobs` list.
  int32_t sample(const float* logits, const SamplingParams& params, SequenceSamplerState& state,
                 LogprobsEntry* logprobs = nullptr);

  // The row after logit bias, min_tokens suppression and penalties, as sample() sees it
  // before temperature (exposed for tests and debugging). Returns `logits` itself when
  // nothing applies, else a pointer to internal scratch valid until the next call.
  const float* adjusted_logits(const float* logits, const SamplingParams& params,
                               const SequenceSamplerState& state);

  // The distribution sample() draws from (after bias, penalties, temperature, top-k,
  // top-p and min-p), normalised, into probs ([n_vocab]); one-hot at the argmax when
  // greedy. For speculative decoding's acceptance test min(1, p / q).
  void distribution(const float* logits, const SamplingParams& params, const SequenceSamplerState& state,
                    float* probs);

  // Draws a token from non-negative weights ([n_vocab], need not be normalised), e.g. the
  // residual max(0, p - q) after a speculative rejection.
  int32_t sample_from(const float* weights, SamplerRng& rng) const;

  int32_t n_vocab() const { return n_vocab_; }

 private:
  struct Cand {
    float logit;
    int32_t token;
    float w;  // exp((logit - max) / T): unnormalised probability
  };

  // The outcome of the filters, before the random draw: a single possible token, the whole
  // row (weights in probs_ / block_sum_) or the candidates in cand_; total = sum of weights.
  struct Prepared {
    enum Kind { Token, Full, Candidates } kind;
    int32_t token;
    double total;
  };

  int32_t argmax(const float* row) const;
  Prepared prepare(const float* row, const SamplingParams& params);
  int32_t draw_full(double total, SamplerRng& rng) const;
  int32_t draw_candidates(double total, SamplerRng& rng) const;
  void keep_top_p(double z, float top_p, float m, float inv_t);

  const SamplerKernels* kernels_;
  int32_t n_vocab_;
  std::vector<int32_t> eos_;
  std::vector<float> work_;        // [n_vocab] adjusted logits
  std::vector<float> probs_;       // [n_vocab] unnormalised probabilities of a draw
  std::vector<double> block_sum_;  // [ceil(n_vocab / kBlock)] per-block sums of probs_
  std::vector<int32_t> idx_;       // [n_vocab] token ids selected by a threshold
  std::vector<TokenLogprob> top_;  // [top_k] (token, logit) of a top-k scan
  std::vector<double> bin_mass_;   // [1024] top-p bucket masses
  std::vector<Cand> cand_;         // [<= n_vocab] surviving candidates
};

}  // namespace kvserve

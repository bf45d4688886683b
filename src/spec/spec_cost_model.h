// When does drafting pay? Decode is memory-bound at small batches (checking k more
// tokens costs little) and compute-bound at large ones (every extra token costs nearly a
// token's time). Rather than guess where the knee lies on a given CPU, the engine feeds
// this model the wall time of every decode step by its token count, and asks before
// each step whether B decode tokens plus D draft tokens, of which it expects A to be
// accepted, produce more tokens per second than the B tokens alone:
//   (B + A) / (t(B + D) + drafting)  >  B / t(B),
// where drafting is what a draft model's own forwards cost (estimated by the engine).
// Token counts never measured are interpolated between measured ones. Outside them: with
// the plain step size unknown the model says no (so that step measures it), with only
// the drafting size unknown, yes (one step per new size, once).
#pragma once

#include <cstdint>
#include <vector>

namespace kvserve {

class SpecCostModel {
 public:
  explicit SpecCostModel(int max_tokens);

  // A step of `tokens` tokens, all decodes (1 + drafts each), took `seconds`.
  void observe(int tokens, double seconds);
  // `extra_seconds`: what producing the draft costs besides the target's step (a draft
  // model's forwards).
  bool worth(int base_tokens, int draft_tokens, double expected_accepted, double extra_seconds = 0.0) const;
  // Estimated step seconds for `tokens` tokens (0 if nothing is measured yet).
  double step_time(int tokens) const;

 private:
  std::vector<double> ema_;  // [max_tokens + 1] seconds, 0 = never measured
};

}  // namespace kvserve

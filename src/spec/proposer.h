// The proposer seam of speculative decoding: given a decoding sequence's verified tokens
// (prompt + output so far), guess the tokens that follow. The engine asks every running
// sequence in decode before the scheduler runs, schedules 1 + (guesses) tokens for it,
// and keeps the guesses the target model confirms (engine_step.cpp). A proposer never
// sees unverified tokens in `tokens`: drafts live only in the engine's step buffer.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "kvserve/speculative.h"

namespace kvserve {

class Proposer {
 public:
  virtual ~Proposer() = default;
  virtual const char* name() const = 0;

  // A sequence slot starts (admission or fork); `capacity` bounds its tokens (prompt +
  // max_tokens), so per-sequence state can be sized once, outside the step loop.
  virtual void start(int32_t seq, int capacity) = 0;
  // Writes up to out.size() tokens likely to follow `tokens`; returns how many.
  virtual int propose(int32_t seq, std::span<const int32_t> tokens, std::span<int32_t> out) = 0;
  // The sequence is done; its tokens may serve later requests. `num_prompt` of them are
  // the prompt.
  virtual void finish(int32_t seq, std::span<const int32_t> tokens, int num_prompt) = 0;
};

// The proposer for config.method (null for SpecMethod::None).
std::unique_ptr<Proposer> make_proposer(const SpeculativeConfig& config);

}  // namespace kvserve

// Per-sequence sampler state the engine keeps beside each sequence: its RNG and the token
// statistics the penalties need. Small when penalties are off (no per-vocabulary arrays:
// a sparse table holds only the tokens the sequence has seen).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kvserve/sampling_params.h"
#include "sample/sampler_rng.h"

namespace kvserve {

// Open-addressing table: token id -> (count in the output, seen in the prompt).
// Insertion is amortised O(1) and allocates only when the table grows.
class TokenCounts {
 public:
  struct Entry {
    int32_t token;
    int32_t output_count;  // occurrences among generated tokens
    bool in_prompt;
  };

  void clear();
  Entry& get(int32_t token);  // inserts a zero entry when missing
  const Entry* find(int32_t token) const;
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  void rehash(size_t slots);
  size_t slot_of(int32_t token) const { return (uint32_t(token) * 0x9E3779B1u) & (index_.size() - 1); }

  std::vector<Entry> entries_;  // dense, in insertion order
  std::vector<int32_t> index_;  // [power of two] entry index or -1; load <= 1/2
};

class SequenceSamplerState {
 public:
  // Seeds the RNG from params.seed (mixed with `stream`, e.g. the sequence's index among
  // the request's n) or from the random device, and records the prompt for the
  // repetition penalty. Call once when the sequence starts.
  void init(const SamplingParams& params, std::span<const int32_t> prompt, uint64_t stream = 0);

  // Records a generated token (call after each token is appended to the sequence).
  void accept(int32_t token);
  // Undoes accept() for tokens dropped from the end (speculative decoding rejections).
  void rollback(std::span<const int32_t> dropped);

  int32_t n_generated() const { return n_generated_; }
  bool tracks_penalties() const { return track_; }
  const TokenCounts& counts() const { return counts_; }
  SamplerRng& rng() { return rng_; }

 private:
  SamplerRng rng_;
  TokenCounts counts_;
  int32_t n_generated_ = 0;
  bool track_ = false;  // any penalty active: keep counts
};

}  // namespace kvserve

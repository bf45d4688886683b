#include "sample/sampler_state.h"

#include <algorithm>
#include <cassert>

namespace kvserve {

void TokenCounts::clear() {
  entries_.clear();
  std::fill(index_.begin(), index_.end(), -1);
}

void TokenCounts::rehash(size_t slots) {
  index_.assign(slots, -1);
  for (size_t e = 0; e < entries_.size(); ++e) {
    size_t s = slot_of(entries_[e].token);
    while (index_[s] >= 0) s = (s + 1) & (slots - 1);
    index_[s] = int32_t(e);
  }
}

const TokenCounts::Entry* TokenCounts::find(int32_t token) const {
  if (index_.empty()) return nullptr;
  for (size_t s = slot_of(token);; s = (s + 1) & (index_.size() - 1)) {
    const int32_t e = index_[s];
    if (e < 0) return nullptr;
    if (entries_[size_t(e)].token == token) return &entries_[size_t(e)];
  }
}

TokenCounts::Entry& TokenCounts::get(int32_t token) {
  if ((entries_.size() + 1) * 2 > index_.size()) rehash(index_.empty() ? 64 : index_.size() * 2);
  size_t s = slot_of(token);
  for (;; s = (s + 1) & (index_.size() - 1)) {
    const int32_t e = index_[s];
    if (e < 0) break;
    if (entries_[size_t(e)].token == token) return entries_[size_t(e)];
  }
  index_[s] = int32_t(entries_.size());
  entries_.push_back({token, 0, false});
  return entries_.back();
}

void SequenceSamplerState::init(const SamplingParams& params, std::span<const int32_t> prompt,
                                uint64_t stream) {
  if (params.seed)
    rng_.seed(*params.seed, stream);
  else
    rng_.seed_random();
  n_generated_ = 0;
  counts_.clear();
  track_ = params.repetition_penalty != 1.0f || params.presence_penalty != 0.0f ||
           params.frequency_penalty != 0.0f;
  // Only the repetition penalty looks at the prompt.
  if (track_ && params.repetition_penalty != 1.0f)
    for (int32_t t : prompt) counts_.get(t).in_prompt = true;
}

void SequenceSamplerState::accept(int32_t token) {
  ++n_generated_;
  if (track_) ++counts_.get(token).output_count;
}

void SequenceSamplerState::rollback(std::span<const int32_t> dropped) {
  assert(int32_t(dropped.size()) <= n_generated_);
  n_generated_ -= int32_t(dropped.size());
  if (!track_) return;
  for (int32_t t : dropped) {
    auto& e = counts_.get(t);
    assert(e.output_count > 0);
    --e.output_count;
  }
}

}  // namespace kvserve

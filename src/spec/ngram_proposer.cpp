#include "spec/ngram_proposer.h"

namespace kvserve {

NgramProposer::NgramProposer(const SpeculativeConfig& config) : config_(config) {
  if (config_.shared_cache_entries > 0)
    shared_ = std::make_unique<NgramSharedCache>(config_.ngram_min, config_.ngram_max,
                                                 config_.shared_cache_entries);
}

void NgramProposer::start(int32_t seq, int capacity) {
  if (size_t(seq) >= index_.size()) index_.resize(size_t(seq) + 1);
  index_[size_t(seq)].reset(config_.ngram_min, config_.ngram_max, capacity);
}

void NgramProposer::propose(std::span<DraftItem> items, DraftChooser&) {
  for (DraftItem& it : items) it.n = propose_one(it.seq, it.tokens, it.out);
}

int NgramProposer::propose_one(int32_t seq, std::span<const int32_t> tokens, std::span<int32_t> out) {
  NgramIndex& idx = index_[size_t(seq)];
  idx.update(tokens);
  if (int k = idx.lookup(tokens, out); k > 0) {
    ++own_hits_;
    return k;
  }
  if (shared_) {
    if (int k = shared_->lookup(tokens, out); k > 0) {
      ++shared_hits_;
      return k;
    }
  }
  return 0;
}

void NgramProposer::finish(int32_t seq, std::span<const int32_t> tokens, int num_prompt) {
  (void)seq;
  if (shared_) shared_->add(tokens, num_prompt);
}

}  // namespace kvserve

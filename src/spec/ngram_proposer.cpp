#include "spec/ngram_proposer.h"

namespace kvserve {

NgramProposer::NgramProposer(const SpeculativeConfig& config) : config_(config) {
  if (config_.shared_cache_entries > 0)
    shared_ = std::make_unique<NgramSharedCache>(config_.ngram_min, config_.ngram_max,
                                                 config_.shared_cache_entries);
  ends_.resize(SpeculativeConfig::kMaxTreeLeaves);
  path_.resize(SpeculativeConfig::kMaxTokens);
  others_.resize(size_t(SpeculativeConfig::kMaxTokens) * NgramSharedCache::kOthers);
}

void NgramProposer::start(int32_t seq, int capacity) {
  if (size_t(seq) >= index_.size()) index_.resize(size_t(seq) + 1);
  index_[size_t(seq)].reset(config_.ngram_min, config_.ngram_max, capacity);
}

void NgramProposer::propose(std::span<DraftItem> items, DraftChooser&) {
  for (DraftItem& it : items)
    it.n = it.parent.empty() ? propose_one(it.seq, it.tokens, it.out) : propose_tree(it);
}

int NgramProposer::propose_tree(DraftItem& it) {
  NgramIndex& idx = index_[size_t(it.seq)];
  idx.update(it.tokens);
  tree_.reset(config_.tree, it.depth, int(it.out.size()));
  const auto path = std::span(path_).first(size_t(std::min(it.depth, int(path_.size()))));
  const int n_occ = idx.occurrences(it.tokens, ends_);
  for (int i = 0; i < n_occ; ++i)
    tree_.insert(path.first(size_t(NgramIndex::continuation(it.tokens, ends_[size_t(i)], path))));
  if (n_occ > 0) {
    ++own_hits_;
  } else if (shared_) {
    // The most frequent continuation as the first path, the others known at each of its
    // tokens beside it.
    if (int k = shared_->lookup(it.tokens, path, others_); k > 0) {
      ++shared_hits_;
      tree_.insert(path.first(size_t(k)));
      for (int pos = 0; pos < k; ++pos)
        for (int j = 0; j < NgramSharedCache::kOthers; ++j) {
          const int32_t alt = others_[size_t(pos * NgramSharedCache::kOthers + j)];
          if (alt < 0) break;
          const int32_t saved = path[size_t(pos)];
          path[size_t(pos)] = alt;
          tree_.insert(path.first(size_t(pos) + 1));
          path[size_t(pos)] = saved;
        }
    }
  }
  return tree_.emit(it.out, it.parent);
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

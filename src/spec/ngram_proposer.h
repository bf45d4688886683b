// `--speculative-method ngram`: proposes what followed the sequence's current suffix
// earlier in the same sequence (prompt lookup: code edits, summaries and answers that
// quote their input), else what followed it in recent requests' outputs (the shared
// cache). Deterministic, so the engine's verification keeps the target distribution by
// sampling the target at each position and comparing (engine_spec.cpp).
#pragma once

#include <memory>
#include <vector>

#include "kvserve/speculative.h"
#include "spec/draft_tree.h"
#include "spec/ngram_index.h"
#include "spec/ngram_shared_cache.h"
#include "spec/proposer.h"

namespace kvserve {

class NgramProposer final : public Proposer {
 public:
  explicit NgramProposer(const SpeculativeConfig& config);

  const char* name() const override { return "ngram"; }
  void start(int32_t seq, int capacity) override;
  void propose(std::span<DraftItem> items, DraftChooser& chooser) override;
  // One sequence's draft (what propose() does per item); returns its length.
  int propose_one(int32_t seq, std::span<const int32_t> tokens, std::span<int32_t> out);
  // One sequence's tree (tree mode): the continuations of every earlier occurrence of its
  // suffix merged, the longest match and latest occurrence first; returns its nodes.
  int propose_tree(DraftItem& item);
  void finish(int32_t seq, std::span<const int32_t> tokens, int num_prompt) override;

  // Where the last proposals came from (tests and benchmarks).
  int64_t own_hits() const { return own_hits_; }
  int64_t shared_hits() const { return shared_hits_; }

 private:
  SpeculativeConfig config_;
  std::vector<NgramIndex> index_;  // by sequence slot
  std::unique_ptr<NgramSharedCache> shared_;
  DraftTreeBuilder tree_;
  std::vector<int32_t> ends_, path_, others_;  // propose_tree's occurrences, a continuation, runners-up
  int64_t own_hits_ = 0, shared_hits_ = 0;
};

}  // namespace kvserve

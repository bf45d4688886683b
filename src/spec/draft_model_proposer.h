// `--speculative-method draft`: a smaller model with the target's vocabulary drafts k
// tokens per sequence, batched over every sequence that speculates in the step: one
// forward catches each sequence's draft cache up with its verified tokens and yields the
// first draft token, then k - 1 one-token forwards yield the rest.
//
// The draft keeps its own paged KV (its runner's storage, its own block manager, sized
// by the engine from the same memory budget as the target's). Its cache follows the
// target: per sequence it remembers the tokens whose K/V it holds, and at each step keeps
// only the longest prefix of them that is still verified (accepted draft tokens stay,
// rejected ones are rolled back and their blocks released).
//
// In tree mode the draft still runs one chain (its best token at each depth, so its own
// cache never holds more than one path); the runner-up tokens at each depth become
// leaves beside the chain, and the target's verification may take one of them instead.
#pragma once

#include <memory>
#include <vector>

#include "cache/block_manager.h"
#include "model/forward_batch.h"
#include "spec/draft_tree.h"
#include "spec/proposer.h"

namespace kvserve {

struct DraftModelOptions {
  int n_blocks = 0;  // KV blocks the runner has allocated
  int block_size = 16;
  std::vector<int> group_windows = {0};  // the runner's KV groups (Runner::kv_group_windows)
  int max_batch_tokens = 512;            // the runner's step limits
  int max_seqs = 64;
  int max_draft = 4;  // k at most
  // Tree mode (SpeculativeConfig::tree): the draft extends its best token at each depth
  // and offers the next best tokens there as leaves beside it (branching[d] - 1 of them).
  std::vector<int> tree;
};

class DraftModelProposer final : public Proposer {
 public:
  // `runner` has its KV allocated for options.n_blocks blocks of options.block_size.
  DraftModelProposer(std::unique_ptr<Runner> runner, const DraftModelOptions& options);
  ~DraftModelProposer() override;

  const char* name() const override { return "draft"; }
  bool model_based() const override { return true; }
  void start(int32_t seq, int capacity) override;
  void propose(std::span<DraftItem> items, DraftChooser& chooser) override;
  void finish(int32_t seq, std::span<const int32_t> tokens, int num_prompt) override;
  void release(int32_t seq) override;
  int kv_blocks_used() const override { return blocks_.stats().blocks_used; }

  const Runner& runner() const { return *runner_; }
  const BlockManager& blocks() const { return blocks_; }
  int64_t forwards() const override { return forwards_; }

 private:
  struct Seq {
    std::vector<int32_t> cached;  // tokens whose K/V the draft cache holds, in order
  };
  Seq& seq(int32_t s);
  // Trims s's cache to the prefix still in `tokens`, leaving at least one token to run.
  int keep_prefix(int32_t s, std::span<const int32_t> tokens);

  std::unique_ptr<Runner> runner_;
  DraftModelOptions opt_;
  BlockManager blocks_;
  std::vector<Seq> seqs_;
  // Per step, reused: the batch and which item each slice belongs to.
  std::vector<SeqSlice> slices_;
  std::vector<int32_t> slice_item_;
  std::vector<uint8_t> active_;
  // Tree mode: per item and depth, the runner-up tokens (kMaxTreeBranching - 1 each).
  std::vector<int32_t> alt_;
  std::vector<int32_t> top_, chain_;
  DraftTreeBuilder tree_;
  void choose(DraftItem& it, size_t item, int pos, const float* logits, DraftChooser& chooser);
  void build_tree(DraftItem& it, size_t item);
  int64_t forwards_ = 0;
};

}  // namespace kvserve

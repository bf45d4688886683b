// The proposer seam of speculative decoding: given decoding sequences' verified tokens
// (prompt + output so far), guess the tokens that follow. The engine asks for every
// running sequence in decode before the scheduler runs, schedules 1 + (guesses) tokens
// for each, and keeps the guesses the target model confirms (engine_spec.cpp). A
// proposer never sees unverified tokens in `tokens`: drafts live only in the engine's
// step buffers.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "kvserve/speculative.h"

namespace kvserve {

class Runner;

// One sequence's request for a draft.
struct DraftItem {
  int32_t seq = -1;
  std::span<const int32_t> tokens;  // verified tokens
  std::span<int32_t> out;           // room for up to k draft tokens (a tree: its nodes)
  int n = 0;                        // written by the proposer
  // Tree mode (--speculative-tree; empty: a chain): room for each node's parent, an
  // earlier index in out or -1 for the last verified token. Nodes come in preorder,
  // first child first, the proposer's likeliest path being the first (spec/draft_tree.h),
  // at most `depth` levels deep.
  std::span<int32_t> parent;
  int depth = 0;
};

// How a model-based proposer turns its logits into draft tokens: the engine's choice,
// made with the request's sampling parameters; for a sampled request it records the
// distribution q it drew from, which verification needs (engine_spec.cpp).
class DraftChooser {
 public:
  virtual ~DraftChooser() = default;
  // Token `pos` of items[item]'s draft from the draft model's logits row ([n_vocab]).
  virtual int32_t choose(size_t item, int pos, const float* logits) = 0;
  // Tree mode: the request's best out.size() tokens by its own rule (the target's, after
  // bias and penalties), best first; the first is the draft's choice at `pos`.
  virtual void top(size_t item, int pos, const float* logits, std::span<int32_t> out) = 0;
};

class Proposer {
 public:
  virtual ~Proposer() = default;
  virtual const char* name() const = 0;
  // Its drafts are drawn from distributions the chooser records (a draft model), rather
  // than deterministic guesses (n-gram).
  virtual bool model_based() const { return false; }

  // A sequence slot starts (admission or fork); `capacity` bounds its tokens (prompt +
  // max_tokens), so per-sequence state can be sized once, outside the step loop.
  virtual void start(int32_t seq, int capacity) = 0;
  // Fills each item's draft (item.n tokens of item.out).
  virtual void propose(std::span<DraftItem> items, DraftChooser& chooser) = 0;
  // The sequence is done; its tokens may serve later requests. `num_prompt` of them are
  // the prompt.
  virtual void finish(int32_t seq, std::span<const int32_t> tokens, int num_prompt) = 0;
  // The sequence is gone without finishing (abort): drop its state.
  virtual void release(int32_t seq) { (void)seq; }
  // KV blocks the proposer's own cache holds now (a draft model's), for accounting.
  virtual int kv_blocks_used() const { return 0; }
  // Forwards of the proposer's own model so far (a draft model's), for accounting.
  virtual int64_t forwards() const { return 0; }
};

// The n-gram proposer for config.method == Ngram, null for None. (A draft model needs its
// runner: make_draft_model_proposer in spec/draft_model_proposer.h.)
std::unique_ptr<Proposer> make_proposer(const SpeculativeConfig& config);

}  // namespace kvserve

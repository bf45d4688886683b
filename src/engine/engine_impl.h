// Engine internals shared by engine.cpp (set-up, admission, abort), engine_step.cpp (the
// step loop), engine_spec.cpp (speculation) and engine_output.cpp (output processing). A request group is
// what the user asked for (one id, n completions); each completion is a sequence slot holding the scheduler's
// Request plus the per- sequence sampling / detokenizing / stop state beside it.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "cache/block_manager.h"
#include "engine/request.h"
#include "engine/scheduler.h"
#include "engine/stop_matcher.h"
#include "kvserve/engine.h"
#include "model/model.h"
#include "model/runner.h"
#include "sample/sampler.h"
#include "sample/sampler_state.h"
#include "spec/proposer.h"
#include "spec/spec_cost_model.h"
#include "tokenizer/tokenizer.h"

namespace kvserve {

struct SeqSlot {
  Request req;
  SequenceSamplerState sampler;
  std::optional<StreamingDetokenizer> detok;
  std::optional<StopMatcher> stop;
  int group = -1;
  int index = 0;  // completion index within the group
  bool finished = false;
  FinishReason finish = FinishReason::None;
  double cumulative_logprob = 0.0;
  int num_cached_tokens = -1;  // prefix-cache hit at first admission (-1 = not yet admitted)
  std::chrono::steady_clock::time_point first_scheduled{};  // set with num_cached_tokens
  // Completions of a best_of > n group are reported only at the end: kept here.
  std::vector<int32_t> out_tokens;
  std::string out_text;
  std::vector<LogprobsEntry> out_logprobs;
  // Speculation: [1 + k] the sequence's last token then its draft (the tokens a
  // speculating step runs), the draft length it may use next, and the share of its
  // draft tokens it keeps.
  std::vector<int32_t> verify;
  // Tree mode: [1 + nodes] each node's parent (-1 for the root, verify[0]), depth and
  // lanes (model/forward_batch.h's TokenTree), the proposer's parents ([nodes]) and
  // the tree its step runs.
  std::vector<int32_t> tree_parent, tree_depth, draft_parent;
  std::vector<uint64_t> tree_lanes;
  TokenTree tree;
  int spec_k = 0;
  double spec_accept = 0.5;  // EMA of the share of its draft tokens kept
  // A draft the cost model dropped, kept to be scored against the tokens that really
  // follow (the output is the same either way): acceptance stays measured while
  // speculation is off, so it can turn back on.
  std::vector<int32_t> shadow;
  int shadow_pos = -1;  // token index the shadow draft would have started at (-1: none)
  // A draft model's sampled drafts: the distributions q they were drawn from ([k,
  // n_vocab], sampled requests only) and the stream they were drawn with.
  std::vector<float> draft_q;
  SamplerRng draft_rng;
};

struct Group {
  std::string id;
  SamplingParams params;
  std::vector<SeqId> seqs;  // the first is the original; forks follow
  int n_finished = 0;
  bool buffered = false;  // best_of > n
  bool forked = false;
  int prompt_lp_next = 1;  // next prompt position whose logprob is due (position 0 has none)
  std::vector<LogprobsEntry> prompt_logprobs;
  bool prompt_lp_sent = false;
};

struct Engine::Impl {
  EngineConfig config;
  std::shared_ptr<const Model> model;
  std::shared_ptr<const Tokenizer> tok;
  std::unique_ptr<Runner> runner;  // owns the KV storage
  std::unique_ptr<BlockManager> blocks;
  std::unique_ptr<Scheduler> sched;
  std::unique_ptr<Sampler> sampler;
  std::vector<int32_t> eos_ids;
  int32_t n_vocab = 0;

  std::vector<std::unique_ptr<SeqSlot>> slots;  // indexed by SeqId
  std::vector<SeqId> free_slots;
  std::vector<std::unique_ptr<Group>> groups;
  std::vector<int> free_groups;
  std::unordered_map<std::string, int> by_id;
  uint64_t next_arrival = 0;

  std::vector<RequestOutput> outputs;  // returned by step()
  std::vector<RequestOutput> pending;  // aborts since the last step
  std::vector<SeqSlice> slices;        // [max_num_seqs] the batch being built
  std::vector<uint8_t> sample_flags;   // [max_num_seqs] slice i samples a token this step
  LogprobsEntry lp_tmp;                // scratch for one sampled token's logprobs
  EngineStats counters;
  std::shared_ptr<const Model> draft_model;  // --speculative-method draft; outlives the proposer
  std::unique_ptr<Proposer> proposer;        // null: no speculation
  std::unique_ptr<SpecCostModel> spec_cost;
  std::vector<DraftItem> draft_items;  // this step's draft requests, and whose they are
  std::vector<Request*> draft_reqs;
  int64_t spec_skipped_in_row = 0;  // a draft model's steps refused since it last drafted
  int64_t spec_probe_after = 32;
  // A draft model's forward over a batch relative to the target's (weight bytes, or kept
  // layers for layerskip): the cost model's estimate of drafting.
  double draft_cost_ratio = 0.0;
  std::vector<float> spec_p, spec_w;  // [n_vocab] target distribution and residual of a verification
  struct Chooser final : DraftChooser {
    Impl* m = nullptr;
    int32_t choose(size_t item, int pos, const float* logits) override {
      return m->choose_draft(item, pos, logits);
    }
    void top(size_t item, int pos, const float* logits, std::span<int32_t> out) override {
      m->top_draft(item, pos, logits, out);
    }
  } chooser;

  SeqId new_slot(int group, int index);
  int new_group();
  void release_group(int g);
  void finish_seq(SeqId s, FinishReason why);
  void emit_group_results(Group& g);
  void fork_group(SeqSlot& parent);
  // Samples the slot's next token from `row` and reports it (appending to this step's
  // delta for the slot when `extend`); returns the token, or -1 if the sequence finished
  // (its slot may be gone then).
  int32_t sample_into(SeqSlot& slot, const float* row, bool extend = false);
  // Reports `token` chosen from `row` (lp_tmp already filled when logprobs are wanted);
  // returns it, or -1 if the sequence finished.
  int32_t emit_token(SeqSlot& slot, const float* row, int32_t token, bool extend);
  void take_prompt_logprobs(SeqSlot& slot, int first_pos, int n, const float* rows);
  void start_seq(SeqSlot& slot);  // per-sequence speculation state
  void propose_drafts();
  void note_acceptance(SeqSlot& slot, int accepted, int drafted);
  void score_shadow(SeqSlot& slot);
  // Samples a speculating slice's rows in order, keeping draft tokens while they match.
  void verify_draft(SeqSlot& slot, int num_draft, const float* rows);
  // A draft model's sampled draft: rejection sampling against the recorded q.
  int32_t verify_sampled(SeqSlot& slot, int j, int32_t drafted, const float* row);
  int32_t choose_draft(size_t item, int pos, const float* logits);
  void top_draft(size_t item, int pos, const float* logits, std::span<int32_t> out);
  // A tree draft's depth, lanes and first chain (Request::draft_*), from its parents.
  void shape_tree(SeqSlot& slot, int nodes);
  // Keeps only each tree's first path when those chains pay and the trees did not.
  bool cut_trees_to_chains(int decodes);
  // Samples a tree slice's rows down the path the target confirms, keeping that lane.
  void verify_tree(SeqSlot& slot, int num_nodes, const float* rows);
  void step();
};

}  // namespace kvserve

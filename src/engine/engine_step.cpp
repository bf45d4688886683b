// One engine step: drafts (engine_spec.cpp), schedule, copy-on-write copies, one forward
// over the whole batch, then for every sequence that reached the end of its tokens the
// next token is sampled (or the draft verified) and handed to output processing
// (engine_output.cpp).
#include <algorithm>
#include <chrono>

#include "engine/engine_impl.h"

namespace kvserve {

void Engine::Impl::step() {
  outputs.clear();
  for (RequestOutput& p : pending) outputs.push_back(std::move(p));
  pending.clear();

  propose_drafts();
  const auto step_start = std::chrono::steady_clock::now();  // the target's step (drafting is modelled apart)
  const SchedulerOutput& so = sched->schedule();
  // A preempted sequence's draft-model cache goes too: memory is short, and it catches up
  // from its verified tokens when the sequence runs again.
  if (proposer)
    for (const Request* p : so.preempted) proposer->release(p->seq);
  if (so.empty()) return;

  // Copy-on-write copies must land before the forward writes into the new blocks.
  for (const BlockCopy& c : blocks->pending_copies()) runner->copy_kv_block(c.src, c.dst);
  blocks->clear_pending_copies();

  slices.clear();
  sample_flags.clear();
  bool all_decodes = true;  // the step's time then feeds the speculation cost model
  for (const ScheduledSeq& s : so.seqs) {
    Request& r = *s.req;
    SeqSlot& slot = *slots[r.seq];
    const Group& grp = *groups[slot.group];
    if (slot.num_cached_tokens < 0) {
      slot.num_cached_tokens = r.num_computed_tokens;  // the prefix hit
      slot.first_scheduled = step_start;
    }
    SeqSlice& sl = slices.emplace_back();
    sl.n_past = r.num_computed_tokens;
    if (s.num_draft > 0) {
      slot.verify[0] = r.token_ids.back();  // the draft follows the last verified token
      sl.tokens = std::span<const int32_t>(slot.verify).first(size_t(s.num_new_tokens));
      if (s.tree) {
        slot.tree.depth = std::span<const int32_t>(slot.tree_depth).first(size_t(s.num_new_tokens));
        slot.tree.lanes = std::span<const uint64_t>(slot.tree_lanes).first(size_t(s.num_new_tokens));
        slot.tree.lane_tables = blocks->lane_tables(r.seq);
        slot.tree.n_lanes = r.draft_lanes;
        sl.tree = &slot.tree;
      }
    } else {
      sl.tokens = std::span<const int32_t>(r.token_ids)
                      .subspan(size_t(r.num_computed_tokens), size_t(s.num_new_tokens));
    }
    sl.block_table = blocks->block_table(r.seq);
    all_decodes = all_decodes && s.num_new_tokens - s.num_draft == 1 && s.samples();
    const bool prompt_lp = grp.params.prompt_logprobs >= 0 && slot.index == 0 &&
                           grp.prompt_lp_next < r.num_prompt_tokens &&
                           r.num_computed_tokens + s.num_new_tokens >= grp.prompt_lp_next;
    sample_flags.push_back(s.samples());
    sl.logits = prompt_lp || s.num_draft > 0 ? LogitsMode::All
                : s.samples()                ? LogitsMode::Last
                                             : LogitsMode::None;
    counters.prompt_tokens_computed +=
        std::clamp(r.num_prompt_tokens - r.num_computed_tokens, 0, s.num_new_tokens);
  }

  ForwardBatch batch;
  batch.seqs = slices;
  const float* logits = runner->forward(batch).data;
  sched->commit_step();
  ++counters.steps;

  // Requests may finish (and their slots be released) below; `so` still lists them, so
  // read everything needed per slice before touching the next one.
  const float* row = logits;
  for (size_t i = 0; i < slices.size(); ++i) {
    const SeqSlice& sl = slices[i];
    const int64_t rows = logits_rows(sl);
    if (so.seqs[i].tree) {
      verify_tree(*slots[so.seqs[i].req->seq], so.seqs[i].num_draft, row);
    } else if (so.seqs[i].num_draft > 0) {
      verify_draft(*slots[so.seqs[i].req->seq], so.seqs[i].num_draft, row);
    } else if (rows > 0) {
      SeqSlot& slot = *slots[so.seqs[i].req->seq];
      if (sl.logits == LogitsMode::All) take_prompt_logprobs(slot, sl.n_past, int(sl.tokens.size()), row);
      const float* last = row + (rows - 1) * int64_t(n_vocab);
      if (sample_flags[i]) {
        Group& grp = *groups[slot.group];
        if (!grp.forked && grp.params.effective_best_of() > 1) {
          fork_group(slot);
          // Each fork samples its first token from the same distribution (own RNG stream).
          for (size_t k = 1; k < grp.seqs.size(); ++k) sample_into(*slots[grp.seqs[k]], last);
        }
        sample_into(slot, last);
      }
    }
    row += rows * int64_t(n_vocab);
  }
  if (spec_cost && all_decodes)
    spec_cost->observe(so.num_batched_tokens,
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count());
}

}  // namespace kvserve

// One engine step: schedule, copy-on-write copies, one forward over the whole batch,
// then sample / detokenize / stop-check every sequence that reached the end of its
// tokens and report the deltas.
#include <algorithm>
#include <numeric>

#include "engine/engine_impl.h"
#include "engine/logprobs.h"

namespace kvserve {

void Engine::Impl::take_prompt_logprobs(SeqSlot& slot, int first_pos, int n, const float* rows) {
  // The row at position p is the distribution of token p + 1.
  Group& grp = *groups[slot.group];
  const Request& r = slot.req;
  const int from = std::max(first_pos, grp.prompt_lp_next - 1);
  const int to = std::min(first_pos + n - 1, r.num_prompt_tokens - 2);
  for (int p = from; p <= to; ++p) {
    LogprobsEntry& e = grp.prompt_logprobs.emplace_back();
    compute_logprobs(rows + int64_t(p - first_pos) * n_vocab, n_vocab, r.token_ids[size_t(p) + 1],
                     grp.params.prompt_logprobs, e);
    grp.prompt_lp_next = p + 2;
  }
}

void Engine::Impl::fork_group(SeqSlot& parent) {
  Group& grp = *groups[parent.group];
  grp.forked = true;
  const int k = grp.params.effective_best_of();
  for (int i = 1; i < k; ++i) {
    const SeqId s = new_slot(parent.group, i);
    SeqSlot& c = *slots[s];
    Request& r = c.req;
    r.token_ids.reserve(parent.req.token_ids.capacity());
    r.token_ids = parent.req.token_ids;
    r.num_prompt_tokens = parent.req.num_prompt_tokens;
    r.num_computed_tokens = parent.req.num_computed_tokens;
    r.params = &grp.params;
    r.priority = parent.req.priority;
    r.arrival = parent.req.arrival;
    r.skip_prefix_cache = parent.req.skip_prefix_cache;
    c.num_cached_tokens = parent.num_cached_tokens;
    c.first_scheduled = parent.first_scheduled;
    blocks->fork(parent.req.seq, s);  // shares the prompt's blocks; the partial tail is copied on write
    c.sampler.init(grp.params, std::span<const int32_t>(r.token_ids).first(size_t(r.num_prompt_tokens)),
                   uint64_t(i));
    c.detok.emplace(*tok, grp.params.skip_special_tokens);
    c.stop.emplace(grp.params, eos_ids);
    sched->add_running(&r);
    grp.seqs.push_back(s);
  }
}

void Engine::Impl::emit_group_results(Group& grp) {
  std::vector<SeqId> order(grp.seqs);
  std::stable_sort(order.begin(), order.end(), [&](SeqId a, SeqId b) {
    return slots[a]->cumulative_logprob > slots[b]->cumulative_logprob;
  });
  for (int i = 0; i < grp.params.n; ++i) {
    SeqSlot& s = *slots[order[size_t(i)]];
    RequestOutput& o = outputs.emplace_back();
    o.request_id = grp.id;
    o.index = i;
    o.token_ids = std::move(s.out_tokens);
    o.text = std::move(s.out_text);
    o.logprobs = std::move(s.out_logprobs);
    if (i == 0) o.prompt_logprobs = std::move(grp.prompt_logprobs);
    o.finished = true;
    o.finish_reason = s.finish;
    o.num_prompt_tokens = s.req.num_prompt_tokens;
    o.num_output_tokens = s.req.num_output_tokens();
    o.num_cached_tokens = std::max(0, s.num_cached_tokens);
    o.first_scheduled = s.first_scheduled;
    o.cumulative_logprob = s.cumulative_logprob;
  }
}

void Engine::Impl::finish_seq(SeqId s, FinishReason why) {
  SeqSlot& slot = *slots[s];
  Group& grp = *groups[slot.group];
  slot.finished = true;
  slot.finish = why;
  sched->remove(&slot.req);  // frees its blocks now; full ones stay in the prefix cache
  ++grp.n_finished;
  const bool all_started = grp.forked || grp.params.effective_best_of() == 1;
  if (all_started && grp.n_finished == int(grp.seqs.size())) {
    if (grp.buffered) emit_group_results(grp);
    ++counters.requests_finished;
    release_group(slot.group);
  }
}

void Engine::Impl::sample_into(SeqSlot& slot, const float* row) {
  Group& grp = *groups[slot.group];
  const SamplingParams& p = grp.params;
  Request& r = slot.req;
  const bool want_lp = p.wants_logprobs();
  const int32_t token = sampler->sample(row, p, slot.sampler, want_lp ? &lp_tmp : nullptr);
  slot.sampler.accept(token);
  r.token_ids.push_back(token);
  ++counters.generated_tokens;
  if (want_lp) {
    slot.cumulative_logprob += lp_tmp.logprob;
  } else if (grp.buffered) {
    slot.cumulative_logprob += double(row[token]) - double(log_sum_exp(row, n_vocab));
  }
  std::string piece = slot.detok->push(token);
  StopMatcher::TokenResult tr = slot.stop->push_token(token, piece);
  FinishReason finish = tr.finish;
  if (finish == FinishReason::None && r.num_tokens() >= config.max_model_len) finish = FinishReason::Length;
  if (finish == FinishReason::Length) tr.text += slot.detok->flush();

  if (grp.buffered) {
    slot.out_tokens.push_back(token);
    slot.out_text += tr.text;
    if (want_lp) slot.out_logprobs.push_back(lp_tmp);
  } else {
    RequestOutput& o = outputs.emplace_back();
    o.request_id = grp.id;
    o.index = slot.index;
    o.token_ids.push_back(token);
    o.text = std::move(tr.text);
    if (want_lp) o.logprobs.push_back(lp_tmp);
    if (slot.index == 0 && p.prompt_logprobs >= 0 && !grp.prompt_lp_sent) {
      o.prompt_logprobs = std::move(grp.prompt_logprobs);
      grp.prompt_lp_sent = true;
    }
    o.num_prompt_tokens = r.num_prompt_tokens;
    o.num_output_tokens = r.num_output_tokens();
    o.num_cached_tokens = std::max(0, slot.num_cached_tokens);
    o.first_scheduled = slot.first_scheduled;
    o.cumulative_logprob = slot.cumulative_logprob;
    o.finished = finish != FinishReason::None;
    o.finish_reason = finish;
  }
  if (finish != FinishReason::None) finish_seq(r.seq, finish);
}

void Engine::Impl::step() {
  outputs.clear();
  for (RequestOutput& p : pending) outputs.push_back(std::move(p));
  pending.clear();

  const SchedulerOutput& so = sched->schedule();
  if (so.empty()) return;

  // Copy-on-write copies must land before the forward writes into the new blocks.
  for (const BlockCopy& c : blocks->pending_copies()) runner->copy_kv_block(c.src, c.dst);
  blocks->clear_pending_copies();

  slices.clear();
  sample_flags.clear();
  const auto step_start = std::chrono::steady_clock::now();
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
    sl.tokens = std::span<const int32_t>(r.token_ids)
                    .subspan(size_t(r.num_computed_tokens), size_t(s.num_new_tokens));
    sl.block_table = blocks->block_table(r.seq);
    const bool prompt_lp = grp.params.prompt_logprobs >= 0 && slot.index == 0 &&
                           grp.prompt_lp_next < r.num_prompt_tokens &&
                           r.num_computed_tokens + s.num_new_tokens >= grp.prompt_lp_next;
    sample_flags.push_back(s.samples());
    sl.logits = prompt_lp ? LogitsMode::All : s.samples() ? LogitsMode::Last : LogitsMode::None;
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
    if (rows > 0) {
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
}

}  // namespace kvserve

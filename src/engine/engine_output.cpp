// Output processing: what happens to a token once the step has chosen it. It is
// appended, detokenized and stop-checked, and reported as a delta, or kept for the end
// when best_of > n. Also here: the prompt's logprobs, forking a group's n / best_of
// sequences, and finishing a sequence with its group's results.
#include <algorithm>

#include "engine/engine_impl.h"
#include "sample/logprobs.h"

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
    start_seq(c);
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
  if (proposer) proposer->finish(s, slot.req.token_ids, slot.req.num_prompt_tokens);
  sched->remove(&slot.req);  // frees its blocks now; full ones stay in the prefix cache
  ++grp.n_finished;
  const bool all_started = grp.forked || grp.params.effective_best_of() == 1;
  if (all_started && grp.n_finished == int(grp.seqs.size())) {
    if (grp.buffered) emit_group_results(grp);
    ++counters.requests_finished;
    release_group(slot.group);
  }
}

int32_t Engine::Impl::sample_into(SeqSlot& slot, const float* row, bool extend) {
  const SamplingParams& p = groups[slot.group]->params;
  const int32_t token = sampler->sample(row, p, slot.sampler, p.wants_logprobs() ? &lp_tmp : nullptr);
  return emit_token(slot, row, token, extend);
}

int32_t Engine::Impl::emit_token(SeqSlot& slot, const float* row, int32_t token, bool extend) {
  Group& grp = *groups[slot.group];
  const SamplingParams& p = grp.params;
  Request& r = slot.req;
  const bool want_lp = p.wants_logprobs();
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
    // A speculating step yields several tokens: one delta carries them all.
    const bool same = extend && !outputs.empty() && outputs.back().index == slot.index &&
                      !outputs.back().finished && outputs.back().request_id == grp.id;
    RequestOutput& o = same ? outputs.back() : outputs.emplace_back();
    if (!same) o.request_id = grp.id;
    o.index = slot.index;
    o.token_ids.push_back(token);
    o.text += tr.text;
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
  if (finish == FinishReason::None) return token;
  finish_seq(r.seq, finish);
  return -1;
}

}  // namespace kvserve

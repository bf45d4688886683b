#include "engine/scheduler.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>

namespace kvserve {

Scheduler::Scheduler(const SchedulerConfig& config, BlockManager& blocks) : config_(config), blocks_(blocks) {
  assert(config_.max_num_seqs > 0 && config_.max_num_batched_tokens > 0);
  out_.seqs.reserve(size_t(config_.max_num_seqs));
  out_.preempted.reserve(size_t(config_.max_num_seqs));
  running_.reserve(size_t(config_.max_num_seqs) * 2);
  waiting_.reserve(256);
}

Status Scheduler::check_admissible(int num_prompt_tokens, int max_tokens) const {
  if (num_prompt_tokens <= 0) return Error{"the prompt must contain at least one token."};
  const int64_t total = int64_t(num_prompt_tokens) + max_tokens;
  if (total > config_.max_model_len)
    return Error{fmt::format(
        "This model's maximum context length is {} tokens. However, you requested {} tokens ({} in the "
        "prompt, {} for the completion). Please reduce the prompt or max_tokens.",
        config_.max_model_len, total, num_prompt_tokens, max_tokens)};
  const int64_t blocks = blocks_.max_blocks_held(total, config_.max_num_batched_tokens);
  if (blocks > blocks_.n_blocks())
    return Error{fmt::format(
        "the request needs up to {} tokens of KV cache ({} blocks of {}), but the whole cache holds {} "
        "blocks ({} tokens); it could never complete. Reduce the prompt or max_tokens, or enlarge the "
        "KV cache.",
        total, blocks, blocks_.block_size(), blocks_.n_blocks(),
        int64_t(blocks_.n_blocks()) * blocks_.block_size())};
  if (!config_.enable_chunked_prefill && num_prompt_tokens > config_.max_num_batched_tokens)
    return Error{fmt::format(
        "the prompt has {} tokens, more than max_num_batched_tokens={} with chunked prefill disabled.",
        num_prompt_tokens, config_.max_num_batched_tokens)};
  return ok_status();
}

void Scheduler::insert_sorted(std::vector<Request*>& q, Request* r) {
  q.insert(std::upper_bound(q.begin(), q.end(), r, schedules_before), r);
}

void Scheduler::add(Request* req) {
  req->status = RequestStatus::Waiting;
  insert_sorted(waiting_, req);
  if (size_t(req->seq) >= scheduled_.size()) scheduled_.resize(size_t(req->seq) + 1, 0);
}

void Scheduler::add_running(Request* req) {
  req->status = RequestStatus::Running;
  insert_sorted(running_, req);
  if (size_t(req->seq) >= scheduled_.size()) scheduled_.resize(size_t(req->seq) + 1, 0);
}

void Scheduler::remove(Request* req) {
  auto drop = [req](std::vector<Request*>& q) {
    auto it = std::find(q.begin(), q.end(), req);
    if (it != q.end()) q.erase(it);
  };
  drop(running_);
  drop(waiting_);
  blocks_.free(req->seq);
  req->status = RequestStatus::Finished;
}

int Scheduler::chunk(int missing) const {
  int n = std::min(missing, budget_);
  if (config_.max_chunk_tokens > 0) n = std::min(n, config_.max_chunk_tokens);
  return n;
}

void Scheduler::unschedule(Request* req) {
  if (!scheduled_[req->seq]) return;
  auto it =
      std::find_if(out_.seqs.begin(), out_.seqs.end(), [req](const ScheduledSeq& s) { return s.req == req; });
  assert(it != out_.seqs.end());
  budget_ += it->num_new_tokens;
  out_.num_batched_tokens -= it->num_new_tokens;
  out_.seqs.erase(it);
  scheduled_[req->seq] = 0;
}

void Scheduler::preempt(Request* victim) {
  unschedule(victim);
  auto it = std::find(running_.begin(), running_.end(), victim);
  assert(it != running_.end());
  running_.erase(it);
  blocks_.free(victim->seq);
  victim->num_computed_tokens = 0;
  ++victim->num_preemptions;
  ++num_preemptions_;
  insert_sorted(waiting_, victim);
  victim->status = RequestStatus::Waiting;
  out_.preempted.push_back(victim);
}

void Scheduler::schedule_running(bool decodes) {
  for (size_t i = 0; i < running_.size() && budget_ > 0; ++i) {
    Request* r = running_[i];
    if (scheduled_[r->seq] || r->num_missing() <= 0 || (r->num_missing() == 1) != decodes) continue;
    if (int(out_.seqs.size()) >= config_.max_num_seqs) return;
    int n = chunk(r->num_missing() + (decodes ? r->num_draft : 0));
    if (!config_.enable_chunked_prefill && n < r->num_missing()) continue;
    const bool has_tree = decodes && r->num_draft > 0 && r->draft_lanes > 1;
    bool tree = has_tree && n == 1 + r->num_draft;
    if (has_tree && !tree) n = std::min(n, 1 + r->draft_chain);  // the first path alone
    int draft = decodes ? n - 1 : 0;
    // A tree's nodes sit at positions up to its depth; a chain's one after another.
    int positions = tree ? 1 + r->draft_depth : n;
    // Drafts are optional: without the memory for them, run the plain decode (or a tree's
    // first path without its other lanes).
    if (draft > 0 && !blocks_.allocate_slots(r->seq, r->num_computed_tokens, positions)) {
      n = positions = 1;
      draft = 0;
      tree = false;
    } else if (tree && !blocks_.allocate_lanes(r->seq, r->num_computed_tokens, r->draft_lanes - 1)) {
      n = positions = 1 + r->draft_chain;
      draft = n - 1;
      tree = false;
      blocks_.trim(r->seq, r->num_computed_tokens + n);
    }
    bool fits = false;
    while (!(fits = blocks_.allocate_slots(r->seq, r->num_computed_tokens, positions))) {
      Request* victim = running_.back();  // least important
      preempt(victim);
      if (victim == r) break;
    }
    if (!fits) return;  // r itself was the least important: nothing after it can run either
    scheduled_[r->seq] = 1;
    out_.seqs.push_back({r, n, draft, tree});
    out_.num_batched_tokens += n;
    budget_ -= n;
  }
}

bool Scheduler::preempt_for(const Request* r) {
  // Only a strictly less important request (higher priority value) makes room: within a
  // priority, arrival order rules and running requests keep their progress.
  if (running_.empty() || running_.back()->priority <= r->priority) return false;
  preempt(running_.back());
  return true;
}

void Scheduler::schedule_waiting() {
  while (!waiting_.empty() && budget_ > 0) {
    Request* r = waiting_.front();
    assert(!blocks_.holds_blocks(r->seq));
    // A request preempted in this very step waits for the next one (no churn).
    if (std::find(out_.preempted.begin(), out_.preempted.end(), r) != out_.preempted.end()) return;
    if (int(running_.size()) >= config_.max_num_seqs || int(out_.seqs.size()) >= config_.max_num_seqs) {
      if (!preempt_for(r)) return;
      continue;  // re-check: the victim may not have held a slot of this step's batch
    }
    if (r->skip_prefix_cache) {
      match_.clear();
    } else {
      blocks_.match_prefix(r->token_ids, match_);
    }
    const int computed = match_.num_tokens;
    const int missing = r->num_tokens() - computed;
    const int n = chunk(missing);
    if (!config_.enable_chunked_prefill && n < missing) return;
    bool fits;
    while (!(fits = blocks_.allocate_slots(r->seq, computed, n, &match_)) && preempt_for(r)) {
    }
    if (!fits) return;  // wait for memory
    r->num_computed_tokens = computed;
    waiting_.erase(waiting_.begin());
    add_running(r);
    scheduled_[r->seq] = 1;
    out_.seqs.push_back({r, n});
    out_.num_batched_tokens += n;
    budget_ -= n;
  }
}

const SchedulerOutput& Scheduler::schedule() {
  out_.seqs.clear();
  out_.preempted.clear();
  out_.num_batched_tokens = 0;
  budget_ = config_.max_num_batched_tokens;
  schedule_running(/*decodes=*/true);
  schedule_running(/*decodes=*/false);
  if (out_.preempted.empty()) schedule_waiting();
  return out_;
}

void Scheduler::commit_step() {
  for (const ScheduledSeq& s : out_.seqs) {
    Request* r = s.req;
    scheduled_[r->seq] = 0;
    r->num_computed_tokens += s.num_new_tokens - s.num_draft;
    blocks_.cache_blocks(r->seq, r->token_ids, r->num_computed_tokens);
  }
}

void Scheduler::commit_draft(Request* req, int accepted) {
  assert(req->status == RequestStatus::Running);
  req->num_computed_tokens += accepted;
  assert(req->num_missing() == 1);
  blocks_.cache_blocks(req->seq, req->token_ids, req->num_computed_tokens);
  blocks_.trim(req->seq, req->num_tokens());
}

}  // namespace kvserve

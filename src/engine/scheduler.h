// Iteration-level scheduler. Each step it hands out a token budget so that every
// request's num_computed_tokens catches up with its tokens:
//   1. running requests with one missing token (decodes), most important first, each
//      with its speculative draft when the budget and the free blocks allow (a draft
//      is dropped before anything is preempted for it);
//   2. running requests with more (prompt chunks, re-prefill), chunked to the budget;
//   3. waiting requests, most important / earliest first, starting from their cached
//      prefix, while sequences, budget and free blocks last.
// When a running request's blocks cannot be allocated, the least important running
// request (lowest priority, latest arrival) is preempted: its blocks are freed and it is
// re-queued to recompute (its full blocks usually come back from the prefix cache).
// No new request is admitted in a step whose running requests preempted; a waiting
// request may preempt strictly lower-priority running ones to get in (sequences or
// memory).
//
// The scheduler decides; the engine executes the returned SchedulerOutput and then calls
// commit_step(); the block manager owns the memory. Nothing allocates per step once the
// queues have grown to their working size.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "cache/block_manager.h"
#include "core/result.h"
#include "engine/request.h"

namespace kvserve {

struct SchedulerConfig {
  int max_num_seqs = 64;             // sequences in one step
  int max_num_batched_tokens = 512;  // new tokens in one step
  int max_model_len = 2048;          // prompt + output tokens of one sequence
  bool enable_chunked_prefill = true;
  int max_chunk_tokens = 0;  // cap on one request's tokens per step (0 = the budget)
};

struct ScheduledSeq {
  Request* req = nullptr;
  // Tokens [num_computed, num_computed + num_new) run this step; the last num_draft of
  // them are speculative (a decode's draft, at most req->num_draft).
  int num_new_tokens = 0;
  int num_draft = 0;
  // The draft is the request's whole tree (Request::draft_lanes > 1): its lanes hold
  // blocks (BlockManager::allocate_lanes) until the engine keeps one. A tree that does
  // not fit runs its first path alone, as a chain.
  bool tree = false;
  // The step reaches the end of the request's tokens: the next token is sampled.
  bool samples() const { return req->num_computed_tokens + num_new_tokens - num_draft == req->num_tokens(); }
};

struct SchedulerOutput {
  std::vector<ScheduledSeq> seqs;   // batch order: decodes, then chunks / new prompts
  std::vector<Request*> preempted;  // re-queued this step (they hold no blocks now)
  int num_batched_tokens = 0;
  bool empty() const { return seqs.empty(); }
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, BlockManager& blocks);

  const SchedulerConfig& config() const { return config_; }
  // Whether the request can ever run: prompt + max_tokens within the model context and
  // within the whole cache, and a prompt that fits one step if chunking is off. The
  // message says which limit and by how much.
  Status check_admissible(int num_prompt_tokens, int max_tokens) const;

  void add(Request* req);          // queue a new request (status Waiting)
  void add_running(Request* req);  // a fork that already holds blocks (n > 1)
  // Removes the request wherever it is and frees its blocks (finish, abort).
  void remove(Request* req);

  // Decides the next step. The output is valid until the next schedule() call.
  const SchedulerOutput& schedule();
  // After the step's forward: advances num_computed_tokens of every scheduled request
  // past its verified tokens and makes their newly full blocks findable in the prefix
  // cache. The engine appends sampled tokens afterwards.
  void commit_step();
  // After the engine appended a speculating request's accepted draft tokens and the
  // token that follows them: the first `accepted` draft positions hold valid K/V, so
  // they count as computed; the slots of rejected ones are released.
  void commit_draft(Request* req, int accepted);

  int num_running() const { return int(running_.size()); }
  int num_waiting() const { return int(waiting_.size()); }
  bool has_unfinished() const { return !running_.empty() || !waiting_.empty(); }
  int64_t num_preemptions() const { return num_preemptions_; }
  std::span<Request* const> running() const { return running_; }
  std::span<Request* const> waiting() const { return waiting_; }

 private:
  void schedule_running(bool decodes);
  void schedule_waiting();
  void preempt(Request* victim);
  bool preempt_for(const Request* r);  // frees room for r if a less important request runs
  void unschedule(Request* req);
  int chunk(int missing) const;
  static void insert_sorted(std::vector<Request*>& q, Request* r);

  SchedulerConfig config_;
  BlockManager& blocks_;
  std::vector<Request*> running_;  // sorted by schedules_before
  std::vector<Request*> waiting_;  // sorted by schedules_before
  SchedulerOutput out_;
  std::vector<uint8_t> scheduled_;  // by seq id: scheduled in the current step
  PrefixMatch match_;
  int budget_ = 0;
  int64_t num_preemptions_ = 0;
};

}  // namespace kvserve

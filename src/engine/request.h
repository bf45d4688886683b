// A sequence the scheduler works on: its tokens and how far the KV cache has caught up
// with them. Nothing else (timings, text, sampler state live beside it in the engine).
//
// There is no prefill or decode phase: each step the scheduler gives a request some of
// its num_tokens() - num_computed_tokens missing tokens; a prompt is just many missing
// tokens, a decode one, a preempted request (recompute mode) all of them again.
#pragma once

#include <cstdint>
#include <vector>

#include "cache/block_manager.h"
#include "kvserve/sampling_params.h"

namespace kvserve {

enum class RequestStatus : uint8_t {
  Waiting,   // queued (new, or preempted and re-queued)
  Running,   // holds blocks, scheduled every step it has work and fits
  Finished,  // done or aborted; owns nothing
};

struct Request {
  SeqId seq = -1;                  // block-manager sequence id (the engine's slot index)
  std::vector<int32_t> token_ids;  // prompt then generated tokens
  int num_prompt_tokens = 0;
  int num_computed_tokens = 0;  // tokens whose K/V are in the cache
  RequestStatus status = RequestStatus::Waiting;
  const SamplingParams* params = nullptr;  // owned by the engine's request group
  int priority = 0;                        // lower is more important (as in vLLM); FCFS within a priority
  uint64_t arrival = 0;                    // monotonically increasing admission order
  int num_preemptions = 0;
  bool skip_prefix_cache = false;  // prompt logprobs need every prompt position computed
  // Speculative tokens proposed for the next step (decodes only). They are not in
  // token_ids: the engine keeps them in its step buffer until the target confirms them.
  int num_draft = 0;
  // A tree draft (--speculative-tree): its num_draft nodes reach draft_depth levels over
  // draft_lanes root-to-leaf paths; the first draft_chain nodes are the first path, a
  // chain the scheduler runs alone when the whole tree does not fit. A chain draft has
  // one lane and draft_depth == draft_chain == num_draft.
  int draft_depth = 0;
  int draft_lanes = 1;
  int draft_chain = 0;

  int num_tokens() const { return int(token_ids.size()); }
  int num_output_tokens() const { return num_tokens() - num_prompt_tokens; }
  int num_missing() const { return num_tokens() - num_computed_tokens; }
};

// Scheduling order: more important first, then earlier arrival.
inline bool schedules_before(const Request* a, const Request* b) {
  return a->priority != b->priority ? a->priority < b->priority : a->arrival < b->arrival;
}

}  // namespace kvserve

// One HTTP request's generation: submits its prompts to the Backend, gathers the
// per-choice deltas the engine pushes from its loop thread, and turns them into either
// one response body or a sequence of SSE events. Records the request's metrics.
//
// Threads: on_delta runs on the engine thread and only appends to a queue under a mutex
// held for a push; everything else runs on the HTTP connection's thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "server/backend.h"
#include "server/metrics.h"
#include "server/openai_response.h"
#include "server/openai_types.h"

namespace kvserve::server {

// A tokenized prompt, ready to submit.
struct PreparedPrompt {
  std::vector<int32_t> ids;
  std::string text;       // for echo: the prompt as text
  SamplingParams params;  // max_tokens resolved for this prompt
};

class Generation : public std::enable_shared_from_this<Generation> {
 public:
  Generation(Backend& backend, ServerMetrics& metrics, const ApiRequest& req,
             std::vector<PreparedPrompt> prompts, ResponseMeta meta, Clock::time_point arrival);
  ~Generation();  // aborts whatever is still running

  // Submits every prompt; on an error aborts the ones already submitted.
  Status start();
  // Non-streaming: consumes deltas until every choice has finished (true) or `wait`
  // has passed (false); then body() is the response.
  bool wait_finished(std::chrono::milliseconds wait);
  std::string body();

  enum class Poll { Data, Idle, Done };
  // Streaming: appends the SSE events that are ready to `out`, waiting up to `wait` for
  // some; Done once [DONE] has been appended.
  Poll next_events(std::string& out, std::chrono::milliseconds wait);

  // Aborts unfinished choices (shutdown); their final deltas still arrive and are read.
  void abort();
  // The client is gone: aborts and counts every unfinished choice as aborted now, since
  // nobody will read their final deltas.
  void abandon();
  bool finished() const;
  int num_sequences() const { return int(choices_.size()); }

 private:
  struct Choice {
    int prompt = 0;  // index into prompts_
    int index = 0;   // OpenAI choice index (before best_of selection)
    std::string text;
    std::vector<TokenLogprob> logprobs;
    double cum_logprob = 0.0;  // for best_of
    std::string finish_reason;
    int64_t num_tokens = 0;
    int64_t text_offset = 0;  // streaming completions logprobs
    bool started = false;     // streaming: echo / role chunk sent
    Clock::time_point first_token, last_token;
  };
  struct PromptState {
    uint64_t id = 0;
    bool submitted = false;
    bool first_token_seen = false;
    int unfinished = 0;
  };
  struct Event {
    int prompt;
    GenDelta delta;
    Clock::time_point at;
  };

  void on_delta(int prompt, GenDelta&& d);
  // Applies one delta to its choice; streaming appends its SSE events to `out`.
  void apply(Event& ev, std::string* out);
  TokenLogprob convert(const LogprobsEntry& e) const;
  std::vector<TokenLogprob> echo_logprobs(int prompt, const std::vector<LogprobsEntry>& prompt_lps) const;
  void record_finish(Choice& c, Clock::time_point at);
  Usage usage() const;

  Backend& backend_;
  ServerMetrics& metrics_;
  ApiRequest req_;
  std::vector<PreparedPrompt> prompts_;
  ResponseMeta meta_;
  Clock::time_point arrival_;
  int n_per_prompt_ = 1;        // sequences generated per prompt (best_of when larger than n)
  bool hide_logprobs_ = false;  // logprobs only requested internally (best_of ranking)

  std::vector<Choice> choices_;  // [prompts * n_per_prompt]
  std::vector<PromptState> prompt_state_;
  int unfinished_ = 0;  // consumer-side count
  bool done_sent_ = false;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> queue_;  // guarded by mu_
};

}  // namespace kvserve::server

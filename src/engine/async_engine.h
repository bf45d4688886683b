// Thread-safe front of the engine for the server: any thread adds or aborts requests;
// one background thread runs the step loop and streams each request's deltas to its
// callback. Requests are validated on the caller's thread (so an HTTP handler can answer
// 400 at once) and queued; the loop picks queued work up before its next step, so an
// abort frees the request's blocks within one step.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "kvserve/engine.h"

namespace kvserve {

class AsyncEngine {
 public:
  // Called on the engine thread with every delta of the request, the last one with
  // finished = true (also for aborts). Keep it short: hand the data to your own thread.
  using Callback = std::function<void(const RequestOutput&)>;

  explicit AsyncEngine(std::unique_ptr<Engine> engine);
  // Stops the loop; unfinished requests are aborted and their callbacks told so.
  ~AsyncEngine();

  // Tokenizes (text form), validates and queues. Errors: duplicate id, invalid params,
  // a request that could never fit.
  Status add_request(std::string id, std::string_view prompt, const SamplingParams& params, Callback cb,
                     int priority = 0);
  Status add_request(std::string id, std::vector<int32_t> prompt_tokens, const SamplingParams& params,
                     Callback cb, int priority = 0);
  // Any thread. False if the id is unknown or already finished.
  bool abort(const std::string& id);

  EngineStats stats() const;  // as of the last step
  int num_active() const;     // requests queued or running
  const Tokenizer& tokenizer() const { return engine_->tokenizer(); }
  const EngineConfig& config() const { return engine_->config(); }

 private:
  struct Pending {
    std::string id;
    std::vector<int32_t> tokens;
    SamplingParams params;
    int priority = 0;
  };
  struct Active {
    Callback cb;
    int open = 0;  // completions not yet finished
  };
  void loop();

  std::unique_ptr<Engine> engine_;  // touched only by the loop thread after construction
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Pending> incoming_;
  std::vector<std::string> aborts_;
  std::unordered_map<std::string, Active> active_;  // guarded by mu_
  EngineStats stats_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace kvserve

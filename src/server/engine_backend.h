// Backend over the single-threaded Engine: one loop thread owns the engine, takes
// submissions and aborts from an inbox, runs steps while there is work, and hands each
// step's outputs to the requests' callbacks. Engine statistics are mirrored into
// atomics after every step so /metrics never waits for a step.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "kvserve/engine.h"
#include "server/backend.h"

namespace kvserve::server {

class EngineBackend final : public Backend {
 public:
  // Takes the engine over and starts the loop thread.
  explicit EngineBackend(std::unique_ptr<Engine> engine);
  ~EngineBackend() override;  // aborts what is left and joins the loop

  Result<std::vector<uint64_t>> submit(std::vector<Submission> subs) override;
  void abort(uint64_t id) override;
  BackendStats stats() const override;
  const Tokenizer& tokenizer() const override;
  int max_model_len() const override;

  // Stops the loop after aborting every request (their final deltas are delivered).
  void stop();

 private:
  struct Command {
    enum Kind { Add, Abort } kind = Add;
    std::vector<uint64_t> ids;      // Add: one per submission; Abort: the one to abort
    std::vector<Submission> subs;   // Add
    std::promise<Status> accepted;  // Add
  };
  struct Live {
    DeltaFn on_delta;
    int n = 1;
    int n_finished = 0;
    bool got_output = false;
  };

  void loop();
  void run_commands(std::vector<Command>& cmds);
  void dispatch(const std::vector<RequestOutput>& outputs, Clock::time_point step_start);
  void publish_stats();

  std::unique_ptr<Engine> engine_;
  int max_model_len_ = 0;
  std::atomic<uint64_t> next_id_{1};

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Command> inbox_;  // guarded by mu_
  bool stopping_ = false;       // guarded by mu_

  std::unordered_map<uint64_t, Live> live_;  // loop thread only

  std::atomic<int> running_{0}, waiting_{0};
  std::atomic<double> kv_usage_{0.0};
  std::atomic<uint64_t> preemptions_{0};

  std::thread thread_;
};

}  // namespace kvserve::server

// Backend over the engine's thread-safe front (engine/async_engine.h): requests are
// validated on the caller's thread and queued; the AsyncEngine loop thread runs the steps
// and calls back with each request's outputs, which are translated into GenDeltas here.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/async_engine.h"
#include "kvserve/engine.h"
#include "server/backend.h"

namespace kvserve::server {

class EngineBackend final : public Backend {
 public:
  // Takes the engine over and starts its loop thread.
  explicit EngineBackend(std::unique_ptr<Engine> engine);
  ~EngineBackend() override;  // aborts what is left and stops the loop

  Result<std::vector<uint64_t>> submit(std::vector<Submission> subs) override;
  void abort(uint64_t id) override;
  BackendStats stats() const override;
  const Tokenizer& tokenizer() const override;
  int max_model_len() const override;

  // Aborts every request (their final deltas are delivered) and stops the loop.
  void stop();

 private:
  std::unique_ptr<AsyncEngine> async_;
  int max_model_len_ = 0;
  KvDtype kv_dtype_ = KvDtype::F16;
  int kv_block_size_ = 0, kv_blocks_ = 0;
  std::atomic<uint64_t> next_id_{1};
  std::mutex stop_mu_;  // stop() may race with the destructor's
};

}  // namespace kvserve::server

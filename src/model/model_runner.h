// Contract between the engine and the model: the engine decides what runs (a
// ForwardBatch over block tables it owns), the runner executes it against the KV-cache
// storage and returns logits. Implemented in src/model/model_runner.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "cache/kv_cache.h"
#include "core/result.h"
#include "model/forward_batch.h"

namespace kvserve {

class Model;  // loaded weights + hyper-parameters (model/model.h)

struct RunnerOptions {
  int max_batch_tokens = 512;  // most new tokens in one forward (sizes scratch buffers)
  int max_seqs = 64;           // most sequences in one forward
  int n_threads = 0;           // 0 = all hardware threads
};

// What the runner did, counted since construction (tests and benchmarks check that a
// path was really taken, not only that its result is right).
struct RunnerStats {
  int64_t steps = 0;        // forward() calls
  int64_t split_tiles = 0;  // row tiles whose keys were split by segment over threads (split-K)
  int64_t split_items = 0;  // work items those tiles became: (query-head unit, key segment)
};

class ModelRunner {
 public:
  ModelRunner(const Model& model, const RunnerOptions& options);
  ~ModelRunner();

  // Executes one step: writes K/V of every new token into `kv` at the slots its block
  // table maps it to, attends over each sequence's cached tokens, and returns the logits
  // rows in batch order ([rows, n_vocab], see logits_rows()), valid until the next call.
  // The batch must respect RunnerOptions (checked) and block tables must cover
  // n_past + tokens.size() positions.
  const float* forward(const ForwardBatch& batch, KvCacheStorage& kv);

  int32_t n_vocab() const;
  const RunnerStats& stats() const;
  // The KV layout this model needs, for a pool of n_blocks blocks of block_size tokens.
  KvCacheConfig kv_config(int n_blocks, int block_size, KvDtype dtype = KvDtype::F16) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvserve

// The CPU runner: the forward pass on this machine's cores (kernels/cpu), over KV
// storage in host memory — its own (the Runner interface the engine uses) or a caller's
// (forward(batch, kv): tests and benchmarks that lay out the cache themselves).
// Implemented in src/model/cpu_runner.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "cache/kv_cache.h"
#include "model/runner.h"

namespace kvserve {

class Model;  // loaded weights + hyper-parameters (model/model.h)
class ThreadPool;

struct RunnerOptions {
  int max_batch_tokens = 512;  // most new tokens in one forward (sizes scratch buffers)
  int max_seqs = 64;           // most sequences in one forward
  int n_threads = 0;           // 0 = all hardware threads
  // Run on this pool instead of an own one of n_threads: runners used one after the
  // other (a speculative draft model and its target) must not spin against each other.
  std::shared_ptr<ThreadPool> pool;
  // Layers left out of the forward (self-speculation's draft): [n_layers] flags, or empty.
  // Their KV slots stay in the layout, unused.
  std::vector<uint8_t> skip_layers;
  // Hybrid KV cache: when layers have different sliding windows (Gemma 3), lay the cache
  // out in groups of layers with one window each, so the engine's block manager can
  // release the sliding groups' blocks that fell out of the window (kv_group_windows()).
  // Also a model whose every layer slides (Mistral) then reports its window. Off: one
  // group {0} that keeps every position (what callers laying out their own cache expect).
  bool hybrid_kv = false;
};

class CpuRunner final : public Runner {
 public:
  CpuRunner(const Model& model, const RunnerOptions& options);
  ~CpuRunner() override;

  // Executes one step: writes K/V of every new token into `kv` at the slots its block
  // table maps it to, attends over each sequence's cached tokens, and returns the logits
  // rows in batch order ([rows, n_vocab], see logits_rows()), valid until the next call.
  // The batch must respect RunnerOptions (checked) and block tables must cover
  // n_past + tokens.size() positions.
  const float* forward(const ForwardBatch& batch, KvCacheStorage& kv);
  // The KV layout this model needs, for a pool of n_blocks blocks of block_size tokens
  // (n_layers: the layers of one KV group).
  KvCacheConfig kv_config(int n_blocks, int block_size, KvDtype dtype = KvDtype::F16) const;

  // Runner: the same, over the storage allocate_kv() made.
  const char* device() const override { return "cpu"; }
  int32_t n_vocab() const override;
  std::span<const int> kv_group_windows() const override;
  size_t kv_bytes_per_block(int block_size, KvDtype dtype) const override;
  Status allocate_kv(int n_blocks, int block_size, KvDtype dtype) override;
  void copy_kv_block(int32_t src, int32_t dst) override;
  LogitsView forward(const ForwardBatch& batch) override;
  const RunnerStats& stats() const override;
  std::shared_ptr<ThreadPool> pool() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<KvCacheStorage> kv_;  // allocate_kv()'s
};

}  // namespace kvserve

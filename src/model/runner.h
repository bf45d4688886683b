// The backend seam: what the engine runs a step on. A runner owns its KV storage (host
// memory for the CPU, device memory for a GPU), executes a ForwardBatch over the block
// tables the engine's block manager chose, and hands back the logits rows. The engine
// never knows the device. CpuRunner (cpu_runner.h) is the first implementation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "cache/kv_dtype.h"
#include "core/result.h"
#include "model/forward_batch.h"

namespace kvserve {

// Logits rows of one step, in batch order (see logits_rows()), in host memory; valid
// until the runner's next forward.
struct LogitsView {
  const float* data = nullptr;  // [rows, n_vocab]
  int64_t rows = 0;
  int32_t n_vocab = 0;
  const float* row(int64_t i) const { return data + i * n_vocab; }
};

// What a runner did, counted since construction (tests and benchmarks check that a
// path was really taken, not only that its result is right).
struct RunnerStats {
  int64_t steps = 0;        // forward() calls
  int64_t split_tiles = 0;  // row tiles whose keys were split by segment over threads (split-K)
  int64_t split_items = 0;  // work items those tiles became: (query-head unit, key segment)
  int64_t expert_runs = 0;  // (layer, expert) MLPs run, each over all its tokens of the step
};

class Runner {
 public:
  virtual ~Runner() = default;

  virtual const char* device() const = 0;  // "cpu", ...
  virtual int32_t n_vocab() const = 0;
  // The KV groups the cache is laid out in (BlockManagerConfig::group_windows): each
  // group's sliding window in keys (0: full attention), group 0's the longest. A block
  // holds block_size tokens of one group's layers, and a ForwardBatch's block tables hold
  // one row per group. One group of every layer ({0}, or {W} if every layer slides)
  // unless the layers' windows differ and the runner was asked to split them.
  virtual std::span<const int> kv_group_windows() const = 0;
  // Bytes of one KV block of block_size tokens in dtype, one group's layers (to size the pool).
  virtual size_t kv_bytes_per_block(int block_size, KvDtype dtype) const = 0;
  // Allocates the KV storage the block manager's ids index: n_blocks blocks. Once,
  // before the first forward.
  virtual Status allocate_kv(int n_blocks, int block_size, KvDtype dtype) = 0;
  // Copies block src's keys and values (all its layers) to block dst: copy-on-write.
  virtual void copy_kv_block(int32_t src, int32_t dst) = 0;
  // One step over the runner's KV storage: writes the new tokens' K/V at the slots
  // their block tables map them to, attends, and returns the requested logits rows.
  virtual LogitsView forward(const ForwardBatch& batch) = 0;
  virtual const RunnerStats& stats() const = 0;
};

}  // namespace kvserve

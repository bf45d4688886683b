// Paged KV-cache storage: a fixed pool of blocks, each holding `block_size` token slots
// of K and V for every layer. This class owns the memory only; which sequence owns
// which block is the block manager's business (src/cache/block_manager.h). The model
// runner reads and writes slots through per-sequence block tables.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/zeroed_buffer.h"

namespace kvserve {

struct KvCacheConfig {
  int n_layers = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int block_size = 16;
  int n_blocks = 0;
};

class KvCacheStorage {
 public:
  explicit KvCacheStorage(const KvCacheConfig& config);

  const KvCacheConfig& config() const { return config_; }
  // Bytes of K+V for one block across all layers (for sizing the pool from a budget).
  static size_t bytes_per_block(const KvCacheConfig& config);

  // K (or V) of one block in one layer: [n_kv_heads][block_size][head_dim] floats, so
  // that one head's keys for a block are contiguous for the attention kernels.
  float* k_block(int layer, int block);
  float* v_block(int layer, int block);
  const float* k_block(int layer, int block) const;
  const float* v_block(int layer, int block) const;

  // Copies every layer's K and V of block src into block dst (copy-on-write).
  void copy_block(int src, int dst);

 private:
  size_t block_floats() const;  // floats of K (or V) per block per layer
  KvCacheConfig config_;
  // Pages are backed lazily, so a pool sized from a large budget costs memory only as used.
  ZeroedBuffer k_;  // floats [n_layers][n_blocks][n_kv_heads][block_size][head_dim]
  ZeroedBuffer v_;
  float* k_data() const { return static_cast<float*>(k_.data()); }
  float* v_data() const { return static_cast<float*>(v_.data()); }
};

}  // namespace kvserve

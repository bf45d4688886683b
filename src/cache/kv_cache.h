// Paged KV-cache storage: a fixed pool of blocks, each holding `block_size` token slots
// of K and V for every layer. This class owns the memory only; which sequence owns
// which block is the block manager's business (src/cache/block_manager.h). The model
// runner writes slots through per-sequence block tables; the attention kernels
// (src/kernels/cpu/attention.h, PagedKvHead) read them.
//
// Layout of one block in one layer, per KV head (elements of config.dtype):
//   K: [head_dim][block_size]  transposed, so the block's keys of one dim are contiguous
//                              (16 keys = one AVX-512 vector; no transposes in decode)
//   V: [block_size][head_dim]  one token's value row contiguous
// int8 / fp8 (scaled): each head's K and V are followed by block_size f32 scales, one per
// slot (kv_head_elems in kvserve/kv_dtype.h).
#pragma once

#include <cstddef>
#include <cstdint>

#include "cache/kv_dtype.h"
#include "core/zeroed_buffer.h"

namespace kvserve {

struct KvCacheConfig {
  int n_layers = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int block_size = 16;
  int n_blocks = 0;
  KvDtype dtype = KvDtype::F16;
};

class KvCacheStorage {
 public:
  explicit KvCacheStorage(const KvCacheConfig& config);

  const KvCacheConfig& config() const { return config_; }
  // Bytes of K+V for one block across all layers (for sizing the pool from a budget).
  static size_t bytes_per_block(const KvCacheConfig& config);
  // Elements of K (or V) per block per layer: n_kv_heads * kv_head_elems; KV head h of a
  // block starts h * kv_head_elems elements in.
  size_t block_elems() const;

  // K (or V) of one block in one layer, elements of config().dtype (layout above).
  // Within a layer, block b starts b * block_elems() elements after block 0.
  void* k_block(int layer, int block);
  void* v_block(int layer, int block);
  const void* k_block(int layer, int block) const;
  const void* v_block(int layer, int block) const;

  // Copies every layer's K and V of block src into block dst (copy-on-write).
  void copy_block(int src, int dst);

 private:
  size_t block_bytes() const { return block_elems() * kv_dtype_size(config_.dtype); }
  KvCacheConfig config_;
  // Pages are backed lazily, so a pool sized from a large budget costs memory only as used.
  ZeroedBuffer k_;  // [n_layers][n_blocks][n_kv_heads][head_dim][block_size]
  ZeroedBuffer v_;  // [n_layers][n_blocks][n_kv_heads][block_size][head_dim]
  char* k_data() const { return static_cast<char*>(k_.data()); }
  char* v_data() const { return static_cast<char*>(v_.data()); }
};

}  // namespace kvserve

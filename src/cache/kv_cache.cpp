#include "cache/kv_cache.h"

#include <cassert>
#include <cstring>

namespace kvserve {

KvCacheStorage::KvCacheStorage(const KvCacheConfig& config) : config_(config) {
  assert(config.n_layers > 0 && config.n_kv_heads > 0 && config.head_dim > 0);
  assert(config.block_size > 0 && config.n_blocks >= 0);
  const size_t n = size_t(config.n_layers) * size_t(config.n_blocks) * block_bytes();
  k_ = ZeroedBuffer(n);
  v_ = ZeroedBuffer(n);
}

size_t KvCacheStorage::bytes_per_block(const KvCacheConfig& c) {
  return 2 * size_t(c.n_layers) * size_t(c.n_kv_heads) *
         size_t(kv_head_elems(c.dtype, c.block_size, c.head_dim)) * kv_dtype_size(c.dtype);
}

size_t KvCacheStorage::block_elems() const {
  return size_t(config_.n_kv_heads) *
         size_t(kv_head_elems(config_.dtype, config_.block_size, config_.head_dim));
}

void* KvCacheStorage::k_block(int layer, int block) {
  assert(layer >= 0 && layer < config_.n_layers && block >= 0 && block < config_.n_blocks);
  return k_data() + (size_t(layer) * size_t(config_.n_blocks) + size_t(block)) * block_bytes();
}

void* KvCacheStorage::v_block(int layer, int block) {
  assert(layer >= 0 && layer < config_.n_layers && block >= 0 && block < config_.n_blocks);
  return v_data() + (size_t(layer) * size_t(config_.n_blocks) + size_t(block)) * block_bytes();
}

const void* KvCacheStorage::k_block(int layer, int block) const {
  return const_cast<KvCacheStorage*>(this)->k_block(layer, block);
}

const void* KvCacheStorage::v_block(int layer, int block) const {
  return const_cast<KvCacheStorage*>(this)->v_block(layer, block);
}

void KvCacheStorage::copy_block(int src, int dst) {
  assert(src >= 0 && src < config_.n_blocks && dst >= 0 && dst < config_.n_blocks);
  if (src == dst) return;
  const size_t bytes = block_bytes();
  for (int l = 0; l < config_.n_layers; ++l) {
    std::memcpy(k_block(l, dst), k_block(l, src), bytes);
    std::memcpy(v_block(l, dst), v_block(l, src), bytes);
  }
}

}  // namespace kvserve

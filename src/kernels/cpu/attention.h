// Causal attention of one query head over a paged KV cache, FlashAttention-style: keys
// and values are read block by block through the sequence's block table, and each query
// row keeps a running max and normalizer (online softmax), so no [n x n] score matrix
// is ever formed. The same kernel serves prefill chunks (many rows, causal inside the
// chunk and over the cached prefix) and decode (one row).
#pragma once

#include <cstdint>

#include "cache/kv_dtype.h"

namespace kvserve {

// One KV head of one layer in the paged cache (the layout of src/cache/kv_cache.h).
// Physical block p holds this head's keys at k + p * block_stride elements as
// [head_dim][block_size] (transposed: one dim's keys contiguous) and its values at
// v + p * block_stride as [block_size][head_dim]; elements are f16 or f32 (dtype).
struct PagedKvHead {
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t block_stride = 0;              // elements between consecutive physical blocks
  const int32_t* block_table = nullptr;  // logical block -> physical block
  int block_size = 0;
  KvDtype dtype = KvDtype::F32;
  // Optional: the KV head (and its key count) the caller attends to next. Kernels that
  // prefetch ahead go on into it once this one's blocks are requested, so the next call
  // does not start on cold misses (batched decode: many short calls, each from memory).
  const PagedKvHead* prefetch_next = nullptr;
  int64_t prefetch_next_keys = 0;
};

// Stores one token's key and value (head_dim floats each) in slot `slot` of one KV head's
// block (k_head/v_head: that head's K and V in the block, layout above), rounding to
// f16 (nearest even) when dtype is f16. The only writer of the cache, so every reader
// sees the same rounded numbers.
void kv_store_token(void* k_head, void* v_head, KvDtype dtype, int block_size, int head_dim, int slot,
                    const float* k, const float* v);

// Queries of n_rows tokens for the n_group query heads that share this KV head (GQA;
// 1 = one head): token r, group head g at q + r * q_stride + g * head_dim (head_dim
// floats), at position n_past + r; it attends to the keys at positions 0 .. n_past + r
// (all must be in the cache). out: likewise at out + r * out_stride + g * head_dim.
// Grouping reads each K/V block once for the whole group; results do not depend on it.
void attention_paged(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                     const PagedKvHead& kv, int head_dim, float scale, float* out, int64_t out_stride);

// The plain scalar version, the reference the dispatched one is tested against.
void attention_paged_scalar(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                            const PagedKvHead& kv, int head_dim, float scale, float* out, int64_t out_stride);

}  // namespace kvserve

// Causal attention of one query head over a paged KV cache, FlashAttention-style: keys
// and values are read block by block through the sequence's block table, and each query
// row keeps a running max and normalizer (online softmax), so no [n x n] score matrix
// is ever formed. The same kernel serves prefill chunks (many rows, causal inside the
// chunk and over the cached prefix) and decode (one row).
#pragma once

#include <cstdint>

namespace kvserve {

// One KV head of one layer in the paged cache. Physical block p holds this head's keys
// at k + p * block_stride as [block_size][head_dim] (values likewise).
struct PagedKvHead {
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t block_stride = 0;              // floats between consecutive physical blocks
  const int32_t* block_table = nullptr;  // logical block -> physical block
  int block_size = 0;
};

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

// Causal attention of one query head over a paged KV cache, FlashAttention-style: keys
// and values are read block by block through the sequence's block table, and each query
// row keeps a running max and normalizer (online softmax), so no [n x n] score matrix
// is ever formed. The same kernel serves prefill chunks (many rows, causal inside the
// chunk and over the cached prefix) and decode (one row).
//
// Keys are taken in fixed segments of kAttentionSegmentKeys positions: each segment is
// one online softmax from scratch (a partial result: unnormalized output, max, sum), and
// a row's segments are folded in order by attention_merge, then normalized. Every path
// computes exactly this, so a caller may run a long context's segments on different
// threads (split-K, as in flash-decoding) and fold them itself: the result has the same
// bits as attention_paged's, alone or batched, in decode or in a prefill chunk.
//
// Sliding-window attention (PagedKvHead::window = W > 0, as in Gemma 2/3 and Mistral):
// the row at position p sees only keys j with p - W < j <= p. Keys, key blocks and
// segments that no row of a call can see are not read, so a decode step reads about W
// keys however long the context. A row skips the softmax steps wholly before its window
// and masks the keys before its window start in the step that holds it, so its bits
// still do not depend on the call, the tiling or the grouping.
#pragma once

#include <cstdint>

#include "cache/kv_dtype.h"
#include "core/cpu_features.h"

namespace kvserve {

// One KV head of one layer in the paged cache (the layout of src/cache/kv_cache.h).
// Physical block p holds this head's keys at k + p * block_stride elements as
// [head_dim][block_size] (transposed: one dim's keys contiguous) and its values at
// v + p * block_stride as [block_size][head_dim]; elements of dtype (kvserve/kv_dtype.h),
// for int8 / fp8 followed by the block's block_size f32 scales of this head's K (V).
// Only the blocks holding keys some row of the call sees are read (see window).
struct PagedKvHead {
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t block_stride = 0;              // elements between consecutive physical blocks
  const int32_t* block_table = nullptr;  // logical block -> physical block
  int block_size = 0;
  KvDtype dtype = KvDtype::F32;
  // Sliding window: 0 = full causal attention; W > 0 = the row at position p sees only
  // the keys j with p - W < j <= p (masked when p - j >= W, as llama.cpp's SWA).
  int64_t window = 0;
  // Optional: the KV head (and its key count) the caller attends to next. Kernels that
  // prefetch ahead go on into it once this one's blocks are requested, so the next call
  // does not start on cold misses (batched decode: many short calls, each from memory).
  const PagedKvHead* prefetch_next = nullptr;
  int64_t prefetch_next_keys = 0;   // keys [prefetch_next_begin, prefetch_next_keys) of it
  int64_t prefetch_next_begin = 0;  // raised to its last row's window start if it has a window
};

// Key positions per segment (a multiple of every kernel's softmax step; see above).
constexpr int64_t kAttentionSegmentKeys = 512;

// The first key the row at position pos sees through a window of `window` keys (0: full
// attention, so key 0).
inline int64_t attention_first_key(int64_t pos, int64_t window) {
  return window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
}

// The first segment (its keys start at that index * kAttentionSegmentKeys) that any row
// at position first_row_pos or later sees: a split-K caller runs the segments of a row
// tile from here on: an earlier segment would give every row acc = 0, m = -inf, l = 0
// (nothing to fold), and so may be skipped. Likewise a row whose window starts past a
// segment's end gets that empty result from it (attention_merge folds it as nothing).
inline int64_t attention_first_segment(int64_t first_row_pos, int64_t window) {
  return attention_first_key(first_row_pos, window) / kAttentionSegmentKeys;
}

// Stores one token's key and value (head_dim floats each) in slot `slot` of one KV head's
// block (k_head/v_head: that head's K and V in the block, layout above), rounded to dtype
// (nearest even; int8 / fp8 with the slot's scale, see kvserve/kv_dtype.h). The only writer of the cache, so
// every reader sees the same rounded numbers.
void kv_store_token(void* k_head, void* v_head, KvDtype dtype, int block_size, int head_dim, int slot,
                    const float* k, const float* v);

// Queries of n_rows tokens for the n_group query heads that share this KV head (GQA;
// 1 = one head): token r, group head g at q + r * q_stride + g * head_dim (head_dim
// floats), at position n_past + r; it attends to the keys at positions 0 .. n_past + r
// (all must be in the cache), or with kv.window = W > 0 to those after n_past + r - W
// (only those need be: the slots before every row's window may hold anything, NaN
// included, and the block table is not looked up for blocks wholly before it).
// out: likewise at out + r * out_stride + g * head_dim.
// Grouping reads each K/V block once for the whole group; results do not depend on it.
void attention_paged(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                     const PagedKvHead& kv, int head_dim, float scale, float* out, int64_t out_stride);

// One segment's partial result: the rows as in attention_paged, over the keys at
// positions [key_begin, key_end) only (key_begin a multiple of kAttentionSegmentKeys,
// key_end at most one segment later): acc (like out, at acc + r * acc_stride +
// g * head_dim) gets sum_j exp(s_j - m) v_j, m[i] the max score m and l[i] the sum of
// exp(s_j - m), for row i = r * n_group + g. A row that sees none of the keys (the
// range is past it, or before its window) gets acc = 0, m = -inf, l = 0, and no key the
// call's rows do not see is read: see attention_first_segment.
void attention_paged_partial(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                             const PagedKvHead& kv, int head_dim, float scale, int64_t key_begin,
                             int64_t key_end, float* acc, int64_t acc_stride, float* m, float* l);

// Folds a later segment's partial result of one row (acc2, m2, l2; l2 > 0) into the row's
// running one (acc, *m, *l), in place. The only fold: every path calls it, in segment order.
// A running result still empty (*l = 0: a window's row saw none of the earlier segments)
// becomes the later one exactly, so where a fold starts does not change the bits.
void attention_merge(float* acc, float* m, float* l, const float* acc2, float m2, float l2, int head_dim);

// The row's output from its folded result: acc * (1 / l).
void attention_finish(float* acc, float l, int head_dim);

// The plain scalar version, the reference the dispatched one is tested against.
void attention_paged_scalar(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                            const PagedKvHead& kv, int head_dim, float scale, float* out, int64_t out_stride);

// attention_paged on one ISA's kernels, for tests that compare them (the CPU must have it).
using AttentionPagedFn = void (*)(const float*, int64_t, int, int, int64_t, const PagedKvHead&, int, float,
                                  float*, int64_t);
AttentionPagedFn attention_paged_for(Isa isa);

}  // namespace kvserve

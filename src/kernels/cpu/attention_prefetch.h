// Software prefetch of paged K/V ahead of an attention kernel (SSE's prefetch only, so
// every ISA's kernel file can include it).
#pragma once

#include <xmmintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/attention.h"

// Internal linkage: each ISA's file gets its own copy (as attention_impl.h).
namespace kvserve::attention_detail {
namespace {

// Fetches the K and V of the blocks ahead of the computation, a few lines at a time
// between softmax steps. Blocks are scattered, so the hardware prefetcher cannot run
// ahead across them, and the out-of-order window covers too little of a block's work to
// overlap its misses; a whole block's lines issued at once overflow the core's miss
// buffers (the excess prefetches are dropped), so they are paced with the work.
struct Prefetcher {
  const char* k = nullptr;
  const char* v = nullptr;
  const int32_t* block_table = nullptr;
  int64_t block_stride_bytes = 0;     // between consecutive physical blocks
  int64_t head_bytes = 0;             // one head's K (or V) in a block
  int64_t next = 0;                   // logical block being prefetched
  int64_t end = 0;                    // logical blocks < end are used
  int64_t off = 0;                    // next line within it
  int lines_per_chunk = 0;            // lines of K (and of V) a chunk of keys occupies
  const PagedKvHead* then = nullptr;  // where to go on when these blocks are done
  int64_t then_begin = 0;
  int64_t then_keys = 0;

  // chunk_keys: keys the caller computes per chunk (sets lines_per_chunk, its pace).
  Prefetcher(const PagedKvHead& kv, int64_t key_begin, int64_t n_keys, int head_dim, int chunk_keys)
      : chunk_keys_(chunk_keys) {
    start(kv, key_begin, n_keys, head_dim);
  }

  // Blocks of keys [key_begin, n_keys).
  void start(const PagedKvHead& kv, int64_t key_begin, int64_t n_keys, int head_dim) {
    const int64_t esize = int64_t(kv_dtype_size(kv.dtype));
    k = static_cast<const char*>(kv.k);
    v = static_cast<const char*>(kv.v);
    block_table = kv.block_table;
    block_stride_bytes = kv.block_stride * esize;
    head_bytes = kv_head_elems(kv.dtype, kv.block_size, head_dim) * esize;  // int8 / fp8: scales too
    next = key_begin / kv.block_size;
    off = 0;
    end = (n_keys + kv.block_size - 1) / kv.block_size;
    lines_per_chunk = int(std::max<int64_t>(1, int64_t(chunk_keys_) * head_dim * esize / 64));
    then = kv.prefetch_next;
    then_begin = kv.prefetch_next_begin;
    then_keys = kv.prefetch_next_keys;
    head_dim_ = head_dim;
  }

  // Prefetches the next n lines of K and of V.
  void issue(int n) {
    for (; n > 0; --n) {
      if (next >= end) {
        if (!then) break;
        const PagedKvHead* t = then;
        // A window's call reads from its rows' window starts on: from its last row's
        // (decode's only row) is the guess that never fetches what it will not read.
        start(*t, std::max(then_begin, attention_first_key(then_keys - 1, t->window)), then_keys, head_dim_);
        then = nullptr;  // one call ahead is enough
        if (next >= end) break;
      }
      const int64_t base = block_table[next] * block_stride_bytes + off;
      _mm_prefetch(k + base, _MM_HINT_T0);
      _mm_prefetch(v + base, _MM_HINT_T0);
      off += 64;
      if (off >= head_bytes) {
        off = 0;
        ++next;
      }
    }
  }

 private:
  int head_dim_ = 0;
  int chunk_keys_ = 16;
};

}  // namespace
}  // namespace kvserve::attention_detail

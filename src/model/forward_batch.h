// What the model runner executes in one step: a batch of sequences, each contributing
// a run of new tokens (a prefill chunk or a single decode token) at known positions,
// with the block table that maps its positions to KV-cache blocks. Built by the engine
// from the scheduler's decisions; read by the runner; nothing here owns memory.
#pragma once

#include <cstdint>
#include <span>

namespace kvserve {

enum class LogitsMode : uint8_t {
  None,  // a prefill chunk that is not the prompt's last: no logits needed
  Last,  // logits of the last new token only (next-token sampling)
  All,   // logits of every new token (prompt logprobs, speculative verification)
};

// A token tree to verify in one pass (speculative decoding): tokens[0] is the root (the
// last verified token) and every other token a draft node, in depth-first preorder with
// the first child first. Node i sits at position n_past + depth[i] and attends to the
// cached prefix, its ancestors and itself - the chain from the root to it. Each
// root-to-leaf path is a lane: lane w (leaves in preorder) has its own block table
// (lane 0: the slice's block_table; lane w > 0: lane_tables[(w - 1) * table_size ...],
// equal to block_table for the blocks before n_past's and private from there on, with
// the verified slots of n_past's block already copied in). A node's K/V is written into
// every lane holding it (bit w of lanes[i]), so each lane's table sees exactly one
// chain: attention reads it as it reads a chain and gives the same bits as verifying
// that path alone.
struct TokenTree {
  std::span<const int32_t> depth;        // [tokens] 0 for the root; a child is its parent + 1
  std::span<const uint64_t> lanes;       // [tokens] bit w: lane w's path holds the node
  std::span<const int32_t> lane_tables;  // [n_lanes - 1][block_table.size()]
  int n_lanes = 1;                       // at most 64
};

struct SeqSlice {
  int32_t n_past = 0;               // tokens already in the cache = position of tokens[0]
  std::span<const int32_t> tokens;  // new tokens, at positions n_past .. n_past + size - 1
  // Physical block ids covering [0, n_past + tokens.size()), one row per KV group
  // (Runner::kv_group_windows): [n_groups][width]. A sliding-window group's entries before
  // the window of position n_past may be -1 (released; never read).
  std::span<const int32_t> block_table;
  LogitsMode logits = LogitsMode::Last;
  const TokenTree* tree = nullptr;  // tokens form a tree (then logits must be All)
};

struct ForwardBatch {
  std::span<const SeqSlice> seqs;
};

// Logits rows are produced in batch order: for each sequence, 0 (None), 1 (Last) or
// tokens.size() (All) rows of n_vocab floats.
inline int64_t logits_rows(const SeqSlice& s) {
  return s.logits == LogitsMode::None ? 0 : s.logits == LogitsMode::Last ? 1 : int64_t(s.tokens.size());
}

}  // namespace kvserve

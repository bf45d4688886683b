// The block manager owns KV memory on behalf of sequences: one block table per
// sequence, allocation on demand as it grows, automatic prefix caching of full blocks,
// fork (n > 1 samples share the prompt's blocks) with copy-on-write, and statistics.
//
// Memory changes are transactions: allocate_slots() first plans the whole change
// (prefix-hit blocks to revive, new blocks, copy-on-write copies) and returns false
// without touching anything if the pool cannot cover it, so the scheduler can preempt
// and retry; only a plan that fits is committed.
//
// Sequence ids are small dense integers chosen by the caller (the engine's request
// slots), so per-sequence state is a plain vector, not a hash map.
//
// KV groups (hybrid models such as Gemma 3): a model's layers may be split into groups
// whose blocks are allocated apart, each group with its own block table per sequence,
// all over one pool of same-sized blocks (a block holds one group's layers). A group
// with a sliding window of W keys releases the blocks that fell out of the window: once
// a sequence has computed c tokens, no later token reads a key before c - W + 1, so the
// blocks wholly before it go back to the pool (their table entries become kNoBlock).
// A sequence's table is then [n_groups][width], every group's row as wide.
//
// Prefix caching with groups: every group's block i is cached under the chained hash of
// the tokens up to its end (salted by group). Group 0 (the one with the longest window,
// full attention if any layer has it) chains its blocks parent to child as without
// groups; a block of another group is anchored to group 0's block i (its id and
// generation), so a hit is exact whatever the group. A hit of n blocks needs group 0's
// whole chain still cached and, in each windowed group, only the blocks of the window
// before position n * block_size: a sliding group's older blocks may already be gone.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "cache/block_pool.h"

namespace kvserve {

using SeqId = int32_t;

inline constexpr int32_t kNoBlock = -1;  // a table entry a sliding-window group released

struct BlockManagerConfig {
  int n_blocks = 0;
  int block_size = 16;
  bool enable_prefix_caching = true;
  int max_blocks_per_seq = 0;  // capacity reserved per block table (0 = n_blocks)
  uint64_t hash_mask = ~0ULL;  // tests shrink this to force hash collisions
  // One entry per KV group: its sliding window in keys (0 = full attention). Group 0 must
  // have the longest window (0 counts as the longest).
  std::vector<int> group_windows = {0};
};

// A run of cached full blocks matching the start of a sequence's tokens.
struct PrefixMatch {
  std::vector<int32_t> blocks;   // [n_groups][num_tokens / block_size]; kNoBlock: outside a window
  std::vector<uint64_t> hashes;  // chained hash of each block
  int num_tokens = 0;            // hashes.size() * block_size
  int num_queried = 0;           // tokens that were looked up (for the hit rate)
  void clear() {
    blocks.clear();
    hashes.clear();
    num_tokens = num_queried = 0;
  }
};

// Copy of a block's K/V that must run before the step's forward (copy-on-write).
struct BlockCopy {
  int32_t src = -1;
  int32_t dst = -1;
};

struct BlockManagerStats {
  int blocks_total = 0;
  int blocks_used = 0;    // ref > 0
  int blocks_cached = 0;  // hashed and free: reusable prefixes kept in idle memory
  int blocks_free = 0;    // ref 0, including cached
  int64_t prefix_queried_tokens = 0;
  int64_t prefix_hit_tokens = 0;
  int64_t slots_allocated = 0;  // block_size * blocks held by sequences (shared counted per seq)
  int64_t slots_unused = 0;     // allocated to a sequence but past its last token
  double prefix_hit_rate() const {
    return prefix_queried_tokens ? double(prefix_hit_tokens) / double(prefix_queried_tokens) : 0.0;
  }
  double fragmentation() const {
    return slots_allocated ? double(slots_unused) / double(slots_allocated) : 0.0;
  }
  double usage() const { return blocks_total ? double(blocks_used) / double(blocks_total) : 0.0; }
};

class BlockManager {
 public:
  explicit BlockManager(const BlockManagerConfig& config);

  int block_size() const { return config_.block_size; }
  int n_groups() const { return int(config_.group_windows.size()); }
  int n_blocks() const { return pool_.n_blocks(); }
  bool prefix_caching() const { return config_.enable_prefix_caching; }
  int num_free_blocks() const { return pool_.num_free(); }
  int blocks_for(int64_t n_tokens) const { return int((n_tokens + block_size() - 1) / block_size()); }
  // The most blocks (all groups) a sequence of n_tokens holds at once when it computes at
  // most max_step_tokens per step: sliding groups hold only their window and the step.
  int64_t max_blocks_held(int64_t n_tokens, int64_t max_step_tokens) const;

  // Longest run of cached full blocks at the start of `tokens`, leaving at least one
  // token to compute (its logits are needed). Read-only: nothing is reserved until the
  // match is passed to allocate_slots(). `out` is reused by the caller.
  void match_prefix(std::span<const int32_t> tokens, PrefixMatch& out) const;

  // Ensures `seq` has blocks for positions [0, num_computed + num_new) and that the
  // blocks num_new tokens will be written to are not shared (copy-on-write). For a
  // sequence that holds no blocks yet, `match` (may be null) supplies its cached prefix
  // and num_computed must equal match->num_tokens. Returns false if the free blocks do
  // not cover it; then the only change is that blocks sliding-window groups no longer
  // need (before num_computed's window) have been released, as they are in any case.
  bool allocate_slots(SeqId seq, int num_computed, int num_new, const PrefixMatch* match = nullptr);
  // Blocks allocate_slots() would take from the free list, less those the sliding-window
  // groups would release to it (for planning / admission; may be negative).
  int blocks_needed(SeqId seq, int num_computed, int num_new, const PrefixMatch* match = nullptr) const;

  // Makes full, computed blocks of `seq` findable by later requests. `tokens` are the
  // sequence's tokens (at least num_computed of them).
  void cache_blocks(SeqId seq, std::span<const int32_t> tokens, int num_computed);

  // `child` (holding nothing) shares every block of `parent`; a later write to a shared
  // block copies it first.
  void fork(SeqId parent, SeqId child);
  // Releases every block of `seq` (finish, abort, preemption). Cached blocks stay findable.
  void free(SeqId seq);
  // Shrinks `seq` to positions [0, num_tokens): blocks wholly past them (slots of
  // rejected speculative tokens) go back to the pool. Blocks in the prefix cache hold
  // only verified tokens, so they are never past num_tokens. num_tokens is at least the
  // num_computed of the last allocate_slots(): a window may have released what an
  // earlier position would need.
  void trim(SeqId seq, int num_tokens);

  // Token trees (speculative verification): gives `seq` n_extra more lanes, each a
  // private copy of its block table from the block holding position num_computed on
  // (that block's verified slots copied in: a queued BlockCopy), as wide as its table
  // now is. Called right after allocate_slots() covered the tree's deepest position.
  // Returns false and changes nothing if the free blocks do not cover them.
  bool allocate_lanes(SeqId seq, int num_computed, int n_extra);
  // The lanes' tables, [n_extra][block_table(seq).size()] (empty without lanes): each
  // lane's is [n_groups][width] like the sequence's.
  std::span<const int32_t> lane_tables(SeqId seq) const;
  // Keeps lane `lane` (0: the sequence's own blocks): its private blocks replace the
  // sequence's from the first lane block on (but a first block already in the prefix
  // cache, which every lane holds alike, stays); every other lane's go back to the pool.
  void adopt_lane(SeqId seq, int lane);

  // The sequence's tables, [n_groups][table_width(seq)]: group g's row from g * width.
  std::span<const int32_t> block_table(SeqId seq) const;
  int table_width(SeqId seq) const { return seq < SeqId(seqs_.size()) ? seqs_[seq].width : 0; }
  bool holds_blocks(SeqId seq) const { return table_width(seq) > 0; }

  // Copies queued by copy-on-write since the last take; the engine runs them before the
  // forward that writes the destination blocks.
  std::span<const BlockCopy> pending_copies() const { return copies_; }
  void clear_pending_copies() { copies_.clear(); }

  BlockManagerStats stats() const;
  const BlockPool& pool() const { return pool_; }
  bool check_invariants() const;  // pool invariants + ref counts equal table references

 private:
  struct SeqState {
    std::vector<int32_t> table;    // [n_groups][width]
    int width = 0;                 // logical blocks (positions / block_size, rounded up)
    std::vector<int32_t> live;     // [n_groups] first entry not released by a window
    std::vector<uint64_t> hashes;  // chained hash of each full, computed block (prefix of table)
    int num_tokens = 0;            // positions covered by allocate_slots
    std::vector<int32_t> lanes;    // allocate_lanes(): [n_extra][n_groups][width]
    int lane_first = 0;            // the lanes' first private block
    int32_t& at(int g, int b) { return table[size_t(g) * size_t(width) + size_t(b)]; }
    int32_t at(int g, int b) const { return table[size_t(g) * size_t(width) + size_t(b)]; }
  };
  void release_lanes(SeqState& st, int keep);  // keep: a lane index (1..) or 0 for none
  SeqState& state(SeqId seq);
  // The first block group g still needs once `num_computed` tokens are computed.
  int first_needed(int g, int64_t num_computed) const;
  // Releases the blocks of st's windowed groups before first_needed(num_computed).
  void release_outside_windows(SeqState& st, int num_computed);
  void resize_width(SeqState& st, int width);  // keeps every row's first entries
  uint64_t group_hash(uint64_t h, int g) const;
  BlockManagerConfig config_;
  BlockPool pool_;
  std::vector<SeqState> seqs_;
  std::vector<BlockCopy> copies_;
  int64_t queried_tokens_ = 0;
  int64_t hit_tokens_ = 0;
};

}  // namespace kvserve

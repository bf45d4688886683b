// Metadata of the fixed pool of KV blocks (the memory itself is KvCacheStorage):
// reference counts, the free list and the prefix-cache index.
//
// Free blocks (ref 0) sit in one intrusive doubly linked list in eviction order, so
// allocate, free and "revive a cached block" are O(1). A freed block keeps its hash and
// stays findable until it is handed out again; unhashed blocks are freed to the head
// (taken first: they have no reuse value), hashed ones to the tail (least recently used
// is evicted first).
//
// A hashed block also remembers its tokens and its parent block (id + generation), so a
// lookup is verified exactly: same hash, same tokens, and the parent is the very block
// the caller matched one step earlier, still holding the same contents.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "cache/block_hash.h"

namespace kvserve {

class BlockPool {
 public:
  BlockPool(int n_blocks, int block_size);

  int n_blocks() const { return int(meta_.size()); }
  int block_size() const { return block_size_; }
  int num_free() const { return num_free_; }        // ref 0, cached or not
  int num_cached() const { return index_.size(); }  // hashed, used or free
  int num_cached_free() const { return num_cached_free_; }

  // Takes the block at the head of the free list (evicting its hash), ref = 1.
  // The caller checks num_free() first.
  int32_t allocate();
  void incref(int32_t block);  // revives a free cached block
  void decref(int32_t block);  // at 0 the block joins the free list

  int32_t ref_count(int32_t block) const { return meta_[block].ref; }
  bool is_free(int32_t block) const { return meta_[block].in_free_list; }
  bool is_hashed(int32_t block) const { return meta_[block].hashed; }
  uint64_t hash(int32_t block) const { return meta_[block].hash; }
  uint32_t generation(int32_t block) const { return meta_[block].gen; }
  std::span<const int32_t> stored_tokens(int32_t block) const {
    return {tokens_.data() + size_t(block) * block_size_, size_t(block_size_)};
  }

  // The cached block for (hash, tokens) whose parent is `parent` (-1 for the first
  // block of a sequence) at generation `parent_gen`; -1 if none or not verified.
  int32_t lookup(uint64_t hash, std::span<const int32_t> tokens, int32_t parent, uint32_t parent_gen) const;
  // Makes a full, computed, used block findable. False if the hash is already indexed
  // (another block holds that prefix) or the block is already hashed.
  bool register_block(int32_t block, uint64_t hash, std::span<const int32_t> tokens, int32_t parent,
                      uint32_t parent_gen);

  // Checks every invariant (free list vs ref counts, index vs hashes); for tests.
  bool check_invariants() const;

 private:
  struct Meta {
    int32_t ref = 0;
    int32_t prev = -1, next = -1;  // free-list links
    bool in_free_list = false;
    bool hashed = false;
    uint32_t gen = 0;  // bumped every time the block is handed out fresh
    uint64_t hash = 0;
    int32_t parent = -1;
    uint32_t parent_gen = 0;
  };
  void unlink(int32_t b);
  void push_front(int32_t b);
  void push_back(int32_t b);

  int block_size_;
  std::vector<Meta> meta_;
  std::vector<int32_t> tokens_;  // [n_blocks][block_size] tokens of hashed blocks
  BlockHashIndex index_;
  int32_t head_ = -1, tail_ = -1;
  int num_free_ = 0;
  int num_cached_free_ = 0;
};

}  // namespace kvserve

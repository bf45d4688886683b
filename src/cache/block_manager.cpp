#include "cache/block_manager.h"

#include <algorithm>
#include <cassert>

namespace kvserve {

BlockManager::BlockManager(const BlockManagerConfig& config)
    : config_(config), pool_(config.n_blocks, config.block_size) {
  if (config_.max_blocks_per_seq <= 0) config_.max_blocks_per_seq = config.n_blocks;
  copies_.reserve(64);
}

BlockManager::SeqState& BlockManager::state(SeqId seq) {
  assert(seq >= 0);
  if (seq >= SeqId(seqs_.size())) {
    size_t old = seqs_.size();
    seqs_.resize(size_t(seq) + 1);
    // Reserve each table up front so growing a sequence never reallocates in the step loop.
    for (size_t i = old; i < seqs_.size(); ++i) {
      seqs_[i].table.reserve(size_t(config_.max_blocks_per_seq));
      seqs_[i].hashes.reserve(size_t(config_.max_blocks_per_seq));
    }
  }
  return seqs_[seq];
}

void BlockManager::match_prefix(std::span<const int32_t> tokens, PrefixMatch& out) const {
  out.clear();
  out.num_queried = int(tokens.size());
  if (!config_.enable_prefix_caching || tokens.empty()) return;
  const int bs = block_size();
  const size_t max_blocks = (tokens.size() - 1) / size_t(bs);
  uint64_t h = kRootHash;
  int32_t parent = -1;
  uint32_t parent_gen = 0;
  for (size_t i = 0; i < max_blocks; ++i) {
    auto blk = tokens.subspan(i * bs, size_t(bs));
    h = chain_block_hash(h, blk, config_.hash_mask);
    int32_t b = pool_.lookup(h, blk, parent, parent_gen);
    if (b < 0) break;
    out.blocks.push_back(b);
    out.hashes.push_back(h);
    parent = b;
    parent_gen = pool_.generation(b);
  }
  out.num_tokens = int(out.blocks.size()) * bs;
}

int BlockManager::blocks_needed(SeqId seq, int num_computed, int num_new, const PrefixMatch* match) const {
  static const SeqState kEmpty;
  const SeqState& st = seq < SeqId(seqs_.size()) ? seqs_[seq] : kEmpty;
  const int total = blocks_for(int64_t(num_computed) + num_new);
  int need = 0;
  int have = int(st.table.size());
  if (have == 0 && match) {
    assert(num_computed == match->num_tokens);
    for (int32_t b : match->blocks)
      if (pool_.ref_count(b) == 0) ++need;  // revived blocks leave the free list too
    have = int(match->blocks.size());
  } else if (num_new > 0) {
    const int first = num_computed / block_size();
    const int last = std::min(have, total);
    for (int i = first; i < last; ++i)
      if (pool_.ref_count(st.table[i]) > 1) ++need;  // copy-on-write
  }
  return need + std::max(0, total - have);
}

bool BlockManager::allocate_slots(SeqId seq, int num_computed, int num_new, const PrefixMatch* match) {
  if (blocks_needed(seq, num_computed, num_new, match) > pool_.num_free()) return false;
  SeqState& st = state(seq);
  const int total = blocks_for(int64_t(num_computed) + num_new);
  assert(total <= config_.max_blocks_per_seq);
  if (st.table.empty() && match) {
    // Take the hits first: they may sit in the free list, where allocate() could evict them.
    for (size_t i = 0; i < match->blocks.size(); ++i) {
      pool_.incref(match->blocks[i]);
      st.table.push_back(match->blocks[i]);
      st.hashes.push_back(match->hashes[i]);
    }
    queried_tokens_ += match->num_queried;
    hit_tokens_ += match->num_tokens;
  } else if (num_new > 0) {
    const int first = num_computed / block_size();
    const int last = std::min(int(st.table.size()), total);
    for (int i = first; i < last; ++i) {
      int32_t old = st.table[i];
      if (pool_.ref_count(old) <= 1) continue;
      assert(!pool_.is_hashed(old) && "a cached block is full and never written again");
      int32_t fresh = pool_.allocate();
      copies_.push_back({old, fresh});
      pool_.decref(old);
      st.table[i] = fresh;
    }
  }
  while (int(st.table.size()) < total) st.table.push_back(pool_.allocate());
  st.num_tokens = std::max(st.num_tokens, num_computed + num_new);
  return true;
}

void BlockManager::cache_blocks(SeqId seq, std::span<const int32_t> tokens, int num_computed) {
  if (!config_.enable_prefix_caching) return;
  SeqState& st = state(seq);
  const int bs = block_size();
  assert(int(tokens.size()) >= num_computed);
  const size_t full = std::min(size_t(num_computed / bs), st.table.size());
  for (size_t i = st.hashes.size(); i < full; ++i) {
    auto blk = tokens.subspan(i * bs, size_t(bs));
    uint64_t h = chain_block_hash(i ? st.hashes[i - 1] : kRootHash, blk, config_.hash_mask);
    int32_t b = st.table[i];
    if (!pool_.is_hashed(b)) {
      int32_t parent = i ? st.table[i - 1] : -1;
      pool_.register_block(b, h, blk, parent, parent >= 0 ? pool_.generation(parent) : 0);
    }
    st.hashes.push_back(h);
  }
}

void BlockManager::fork(SeqId parent, SeqId child) {
  SeqState& c = state(child);
  const SeqState& p = state(parent);  // after state(child): a resize would move p
  assert(c.table.empty() && parent != child);
  for (int32_t b : p.table) pool_.incref(b);
  c.table.assign(p.table.begin(), p.table.end());
  c.hashes.assign(p.hashes.begin(), p.hashes.end());
  c.num_tokens = p.num_tokens;
}

void BlockManager::free(SeqId seq) {
  if (seq >= SeqId(seqs_.size())) return;
  SeqState& st = seqs_[seq];
  // Last block first: it then sits ahead of its parents in the eviction order, so a
  // partially evicted chain keeps its usable beginning.
  release_lanes(st, 0);
  for (auto it = st.table.rbegin(); it != st.table.rend(); ++it) pool_.decref(*it);
  st.table.clear();
  st.hashes.clear();
  st.num_tokens = 0;
}

bool BlockManager::allocate_lanes(SeqId seq, int num_computed, int n_extra) {
  SeqState& st = state(seq);
  assert(st.lanes.empty() && n_extra >= 0);
  const int width = int(st.table.size()), first = num_computed / block_size();
  assert(first < width);
  if ((width - first) * n_extra > pool_.num_free()) return false;
  st.lane_first = first;
  for (int w = 0; w < n_extra; ++w)
    for (int b = 0; b < width; ++b) {
      if (b < first) {
        st.lanes.push_back(st.table[size_t(b)]);  // shared verified blocks: not referenced again
        continue;
      }
      const int32_t fresh = pool_.allocate();
      if (b == first && num_computed % block_size() != 0) copies_.push_back({st.table[size_t(b)], fresh});
      st.lanes.push_back(fresh);
    }
  return true;
}

std::span<const int32_t> BlockManager::lane_tables(SeqId seq) const {
  if (seq >= SeqId(seqs_.size())) return {};
  return seqs_[seq].lanes;
}

void BlockManager::release_lanes(SeqState& st, int keep) {
  const size_t width = st.table.size();
  for (size_t w = 0; width && w < st.lanes.size() / width; ++w)
    if (int(w) + 1 != keep)
      for (size_t b = size_t(st.lane_first); b < width; ++b) pool_.decref(st.lanes[w * width + b]);
  st.lanes.clear();
}

void BlockManager::adopt_lane(SeqId seq, int lane) {
  SeqState& st = state(seq);
  const size_t width = st.table.size();
  if (lane > 0) {
    assert(size_t(lane) * width <= st.lanes.size());
    for (size_t b = size_t(st.lane_first); b < width; ++b) {
      int32_t& kept = st.lanes[size_t(lane - 1) * width + b];
      // The first block is already in the prefix cache when the tree's root filled it:
      // every lane holds the same verified tokens there, so the cached one stays.
      if (pool_.is_hashed(st.table[b])) {
        assert(b == size_t(st.lane_first));
        pool_.decref(kept);
      } else {
        pool_.decref(st.table[b]);
        st.table[b] = kept;
      }
    }
  }
  release_lanes(st, lane);
}

void BlockManager::trim(SeqId seq, int num_tokens) {
  if (seq >= SeqId(seqs_.size())) return;
  SeqState& st = seqs_[seq];
  const size_t keep = size_t(blocks_for(num_tokens));
  assert(st.hashes.size() <= keep);
  while (st.table.size() > keep) {
    pool_.decref(st.table.back());
    st.table.pop_back();
  }
  st.num_tokens = std::min(st.num_tokens, num_tokens);
}

std::span<const int32_t> BlockManager::block_table(SeqId seq) const {
  if (seq >= SeqId(seqs_.size())) return {};
  return seqs_[seq].table;
}

BlockManagerStats BlockManager::stats() const {
  BlockManagerStats s;
  s.blocks_total = pool_.n_blocks();
  s.blocks_free = pool_.num_free();
  s.blocks_used = s.blocks_total - s.blocks_free;
  s.blocks_cached = pool_.num_cached_free();
  s.prefix_queried_tokens = queried_tokens_;
  s.prefix_hit_tokens = hit_tokens_;
  for (const SeqState& st : seqs_) {
    int64_t slots = int64_t(st.table.size()) * block_size();
    s.slots_allocated += slots;
    s.slots_unused += slots - std::min<int64_t>(slots, st.num_tokens);
  }
  return s;
}

bool BlockManager::check_invariants() const {
  if (!pool_.check_invariants()) return false;
  std::vector<int32_t> refs(size_t(pool_.n_blocks()), 0);
  for (const SeqState& st : seqs_) {
    if (st.hashes.size() > st.table.size()) return false;
    for (int32_t b : st.table) ++refs[b];
    const size_t width = st.table.size();
    for (size_t i = 0; width && i < st.lanes.size(); ++i)
      if (i % width >= size_t(st.lane_first)) ++refs[st.lanes[i]];
  }
  for (int32_t b = 0; b < pool_.n_blocks(); ++b)
    if (refs[b] != pool_.ref_count(b)) return false;
  return true;
}

}  // namespace kvserve

#include "cache/block_manager.h"

#include <algorithm>
#include <cassert>

namespace kvserve {

BlockManager::BlockManager(const BlockManagerConfig& config)
    : config_(config), pool_(config.n_blocks, config.block_size) {
  if (config_.max_blocks_per_seq <= 0) config_.max_blocks_per_seq = config.n_blocks;
  if (config_.group_windows.empty()) config_.group_windows = {0};
  for (int w : config_.group_windows) {
    assert(w >= 0);
    assert(config_.group_windows[0] == 0 || (w > 0 && w <= config_.group_windows[0]));
    (void)w;
  }
  copies_.reserve(64);
}

BlockManager::SeqState& BlockManager::state(SeqId seq) {
  assert(seq >= 0);
  if (seq >= SeqId(seqs_.size())) {
    size_t old = seqs_.size();
    seqs_.resize(size_t(seq) + 1);
    // Reserve each table up front so growing a sequence never reallocates in the step loop.
    for (size_t i = old; i < seqs_.size(); ++i) {
      seqs_[i].table.reserve(size_t(config_.max_blocks_per_seq) * size_t(n_groups()));
      seqs_[i].hashes.reserve(size_t(config_.max_blocks_per_seq));
      seqs_[i].live.assign(size_t(n_groups()), 0);
    }
  }
  return seqs_[seq];
}

int BlockManager::first_needed(int g, int64_t num_computed) const {
  const int w = config_.group_windows[size_t(g)];
  if (w <= 0 || num_computed - w + 1 <= 0) return 0;
  return int((num_computed - w + 1) / block_size());
}

int64_t BlockManager::max_blocks_held(int64_t n_tokens, int64_t max_step_tokens) const {
  int64_t total = 0;
  for (int w : config_.group_windows)
    total += w == 0 ? blocks_for(n_tokens)
                    : std::min<int64_t>(blocks_for(n_tokens), blocks_for(w - 1 + max_step_tokens) + 1);
  return total;
}

uint64_t BlockManager::group_hash(uint64_t h, int g) const {
  return g == 0 ? h : mix64(h ^ (0x9e3779b97f4a7c15ULL * uint64_t(g))) & config_.hash_mask;
}

void BlockManager::resize_width(SeqState& st, int width) {
  const size_t G = size_t(n_groups()), old = size_t(st.width), w = size_t(width);
  if (w > old) {
    st.table.resize(G * w);
    for (size_t g = G; g-- > 1;)  // last row first: each row moves to a later place
      std::copy_backward(st.table.begin() + ptrdiff_t(g * old), st.table.begin() + ptrdiff_t(g * old + old),
                         st.table.begin() + ptrdiff_t(g * w + old));
    for (size_t g = 0; g < G; ++g)
      std::fill(st.table.begin() + ptrdiff_t(g * w + old), st.table.begin() + ptrdiff_t(g * w + w), kNoBlock);
  } else if (w < old) {
    for (size_t g = 1; g < G; ++g)  // first row first: each row moves to an earlier place
      for (size_t b = 0; b < w; ++b) st.table[g * w + b] = st.table[g * old + b];
    st.table.resize(G * w);
  }
  st.width = width;
}

void BlockManager::release_outside_windows(SeqState& st, int num_computed) {
  for (int g = 0; g < n_groups(); ++g) {
    const int from = std::min(first_needed(g, num_computed), st.width);
    int32_t& live = st.live[size_t(g)];
    for (int b = live; b < from; ++b) {
      int32_t& id = st.at(g, b);
      if (id == kNoBlock) continue;
      pool_.decref(id);  // oldest first: the least likely to be matched again is evicted first
      id = kNoBlock;
    }
    live = std::max(live, from);
  }
}

void BlockManager::match_prefix(std::span<const int32_t> tokens, PrefixMatch& out) const {
  out.clear();
  out.num_queried = int(tokens.size());
  if (!config_.enable_prefix_caching || tokens.empty()) return;
  const int bs = block_size(), G = n_groups();
  const size_t max_blocks = (tokens.size() - 1) / size_t(bs);
  // Group 0: the chain from the first block, every parent verified.
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
  int n = int(out.hashes.size());
  if (G > 1 && n > 0) {
    // Other groups: block i anchored to group 0's block i, kNoBlock where not cached.
    const int n0 = n;
    out.blocks.resize(size_t(G) * size_t(n0));
    for (int g = 1; g < G; ++g)
      for (int i = 0; i < n0; ++i) {
        const int32_t anchor = out.blocks[size_t(i)];
        out.blocks[size_t(g * n0 + i)] =
            pool_.lookup(group_hash(out.hashes[size_t(i)], g), tokens.subspan(size_t(i) * bs, size_t(bs)),
                         anchor, pool_.generation(anchor));
      }
    // The longest hit whose every group holds the blocks its window still needs.
    auto covered = [&](int len) {
      for (int g = 1; g < G; ++g)
        for (int i = first_needed(g, int64_t(len) * bs); i < len; ++i)
          if (out.blocks[size_t(g * n0 + i)] < 0) return false;
      return true;
    };
    while (n > 0 && !covered(n)) --n;
    for (int g = 1; g < G; ++g)
      for (int i = 0; i < n; ++i) out.blocks[size_t(g * n + i)] = out.blocks[size_t(g * n0 + i)];
    out.blocks.resize(size_t(G) * size_t(n));
    out.hashes.resize(size_t(n));
  }
  for (int g = 0; g < G; ++g)  // what no window needs is not taken
    for (int i = 0; i < std::min(n, first_needed(g, int64_t(n) * bs)); ++i)
      out.blocks[size_t(g * n + i)] = kNoBlock;
  out.num_tokens = n * bs;
}

int BlockManager::blocks_needed(SeqId seq, int num_computed, int num_new, const PrefixMatch* match) const {
  static const SeqState kEmpty;
  const SeqState& st = seq < SeqId(seqs_.size()) ? seqs_[seq] : kEmpty;
  const int G = n_groups();
  const int total = blocks_for(int64_t(num_computed) + num_new);
  int need = 0;
  int have = st.width;
  if (have == 0 && match) {
    assert(num_computed == match->num_tokens);
    for (int32_t b : match->blocks)
      if (b >= 0 && pool_.ref_count(b) == 0) ++need;  // revived blocks leave the free list too
    have = match->num_tokens / block_size();
  } else if (have > 0) {
    for (int g = 0; g < G; ++g) {
      const int from = std::min(first_needed(g, num_computed), have);
      for (int b = st.live[size_t(g)]; b < from; ++b)
        if (st.at(g, b) >= 0 && pool_.ref_count(st.at(g, b)) == 1) --need;  // released to the pool
      if (num_new == 0) continue;
      const int last = std::min(have, total);
      for (int b = num_computed / block_size(); b < last; ++b)
        if (pool_.ref_count(st.at(g, b)) > 1) ++need;  // copy-on-write
    }
  }
  return need + G * std::max(0, total - have);
}

bool BlockManager::allocate_slots(SeqId seq, int num_computed, int num_new, const PrefixMatch* match) {
  SeqState& st = state(seq);
  if (st.width > 0) release_outside_windows(st, num_computed);
  if (blocks_needed(seq, num_computed, num_new, match) > pool_.num_free()) return false;
  const int G = n_groups();
  const int total = blocks_for(int64_t(num_computed) + num_new);
  assert(total <= config_.max_blocks_per_seq);
  if (st.width == 0 && match) {
    // Take the hits first: they may sit in the free list, where allocate() could evict them.
    const int n = match->num_tokens / block_size();
    resize_width(st, n);
    for (int g = 0; g < G; ++g) {
      for (int i = 0; i < n; ++i) {
        const int32_t b = match->blocks[size_t(g * n + i)];
        if (b == kNoBlock) continue;
        pool_.incref(b);
        st.at(g, i) = b;
      }
      st.live[size_t(g)] = first_needed(g, num_computed);
    }
    st.hashes.assign(match->hashes.begin(), match->hashes.end());
    queried_tokens_ += match->num_queried;
    hit_tokens_ += match->num_tokens;
  } else if (num_new > 0) {
    const int first = num_computed / block_size();
    const int last = std::min(st.width, total);
    for (int g = 0; g < G; ++g)
      for (int i = first; i < last; ++i) {
        int32_t& id = st.at(g, i);
        if (pool_.ref_count(id) <= 1) continue;
        assert(!pool_.is_hashed(id) && "a cached block is full and never written again");
        int32_t fresh = pool_.allocate();
        copies_.push_back({id, fresh});
        pool_.decref(id);
        id = fresh;
      }
  }
  if (total > st.width) {
    const int old = st.width;
    resize_width(st, total);
    for (int g = 0; g < G; ++g)
      for (int i = old; i < total; ++i) st.at(g, i) = pool_.allocate();
  }
  st.num_tokens = std::max(st.num_tokens, num_computed + num_new);
  return true;
}

void BlockManager::cache_blocks(SeqId seq, std::span<const int32_t> tokens, int num_computed) {
  if (!config_.enable_prefix_caching) return;
  SeqState& st = state(seq);
  const int bs = block_size();
  assert(int(tokens.size()) >= num_computed);
  const size_t full = std::min(size_t(num_computed / bs), size_t(st.width));
  for (size_t i = st.hashes.size(); i < full; ++i) {
    auto blk = tokens.subspan(i * bs, size_t(bs));
    uint64_t h = chain_block_hash(i ? st.hashes[i - 1] : kRootHash, blk, config_.hash_mask);
    for (int g = 0; g < n_groups(); ++g) {
      const int32_t b = st.at(g, int(i));
      if (b == kNoBlock || pool_.is_hashed(b)) continue;
      // Group 0 chains to its previous block, the others anchor to group 0's; a link a
      // window already released cannot be verified, so that block is not cached.
      const int32_t parent = g == 0 ? (i ? st.at(0, int(i) - 1) : -1) : st.at(0, int(i));
      if (parent == kNoBlock && (g > 0 || i > 0)) continue;
      pool_.register_block(b, group_hash(h, g), blk, parent, parent >= 0 ? pool_.generation(parent) : 0);
    }
    st.hashes.push_back(h);
  }
}

void BlockManager::fork(SeqId parent, SeqId child) {
  SeqState& c = state(child);
  const SeqState& p = state(parent);  // after state(child): a resize would move p
  assert(c.width == 0 && parent != child);
  for (int32_t b : p.table)
    if (b != kNoBlock) pool_.incref(b);
  c.table.assign(p.table.begin(), p.table.end());
  c.width = p.width;
  c.live = p.live;
  c.hashes.assign(p.hashes.begin(), p.hashes.end());
  c.num_tokens = p.num_tokens;
}

void BlockManager::free(SeqId seq) {
  if (seq >= SeqId(seqs_.size())) return;
  SeqState& st = seqs_[seq];
  // Last block first: it then sits ahead of its parents in the eviction order, so a
  // partially evicted chain keeps its usable beginning.
  release_lanes(st, 0);
  for (int b = st.width; b-- > 0;)
    for (int g = 0; g < n_groups(); ++g)
      if (st.at(g, b) != kNoBlock) pool_.decref(st.at(g, b));
  st.table.clear();
  st.width = 0;
  std::fill(st.live.begin(), st.live.end(), 0);
  st.hashes.clear();
  st.num_tokens = 0;
}

bool BlockManager::allocate_lanes(SeqId seq, int num_computed, int n_extra) {
  SeqState& st = state(seq);
  assert(st.lanes.empty() && n_extra >= 0);
  const int width = st.width, first = num_computed / block_size(), G = n_groups();
  assert(first < width);
  if ((width - first) * n_extra * G > pool_.num_free()) return false;
  st.lane_first = first;
  for (int w = 0; w < n_extra; ++w)
    for (int g = 0; g < G; ++g)
      for (int b = 0; b < width; ++b) {
        if (b < first) {
          st.lanes.push_back(st.at(g, b));  // shared verified blocks: not referenced again
          continue;
        }
        const int32_t fresh = pool_.allocate();
        if (b == first && num_computed % block_size() != 0) copies_.push_back({st.at(g, b), fresh});
        st.lanes.push_back(fresh);
      }
  return true;
}

std::span<const int32_t> BlockManager::lane_tables(SeqId seq) const {
  if (seq >= SeqId(seqs_.size())) return {};
  return seqs_[seq].lanes;
}

void BlockManager::release_lanes(SeqState& st, int keep) {
  const size_t width = size_t(st.width), full = width * size_t(n_groups());
  for (size_t w = 0; full && w < st.lanes.size() / full; ++w)
    if (int(w) + 1 != keep)
      for (size_t g = 0; g < size_t(n_groups()); ++g)
        for (size_t b = size_t(st.lane_first); b < width; ++b)
          pool_.decref(st.lanes[w * full + g * width + b]);
  st.lanes.clear();
}

void BlockManager::adopt_lane(SeqId seq, int lane) {
  SeqState& st = state(seq);
  const size_t width = size_t(st.width), full = width * size_t(n_groups());
  if (lane > 0) {
    assert(size_t(lane) * full <= st.lanes.size());
    for (int g = 0; g < n_groups(); ++g)
      for (size_t b = size_t(st.lane_first); b < width; ++b) {
        int32_t& kept = st.lanes[size_t(lane - 1) * full + size_t(g) * width + b];
        int32_t& own = st.at(g, int(b));
        // The first block is already in the prefix cache when the tree's root filled it:
        // every lane holds the same verified tokens there, so the cached one stays.
        if (pool_.is_hashed(own)) {
          assert(b == size_t(st.lane_first));
          pool_.decref(kept);
        } else {
          pool_.decref(own);
          own = kept;
        }
      }
  }
  release_lanes(st, lane);
}

void BlockManager::trim(SeqId seq, int num_tokens) {
  if (seq >= SeqId(seqs_.size())) return;
  SeqState& st = seqs_[seq];
  const int keep = blocks_for(num_tokens);
  assert(int(st.hashes.size()) <= keep);
  if (keep < st.width) {
    for (int g = 0; g < n_groups(); ++g)
      for (int b = st.width; b-- > keep;) {
        assert(st.at(g, b) != kNoBlock && "a window never releases blocks past the verified tokens");
        pool_.decref(st.at(g, b));
      }
    resize_width(st, keep);
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
  for (const SeqState& st : seqs_)
    for (int g = 0; g < n_groups() && st.width > 0; ++g) {
      // A group holds positions [live * block_size, width * block_size).
      const int64_t first = int64_t(st.live[size_t(g)]) * block_size();
      const int64_t slots = int64_t(st.width) * block_size() - first;
      s.slots_allocated += slots;
      s.slots_unused += slots - std::clamp<int64_t>(st.num_tokens - first, 0, slots);
    }
  return s;
}

bool BlockManager::check_invariants() const {
  if (!pool_.check_invariants()) return false;
  std::vector<int32_t> refs(size_t(pool_.n_blocks()), 0);
  for (const SeqState& st : seqs_) {
    if (st.hashes.size() > size_t(st.width) || st.table.size() != size_t(st.width) * size_t(n_groups()))
      return false;
    for (int g = 0; g < n_groups(); ++g)
      for (int b = 0; b < st.width; ++b) {
        const int32_t id = st.at(g, b);
        if ((id == kNoBlock) != (b < st.live[size_t(g)])) return false;  // released exactly before live
        if (id != kNoBlock) ++refs[size_t(id)];
      }
    const size_t width = size_t(st.width);
    for (size_t i = 0; width && i < st.lanes.size(); ++i)
      if (i % width >= size_t(st.lane_first) && st.lanes[i] != kNoBlock) ++refs[size_t(st.lanes[i])];
  }
  for (int32_t b = 0; b < pool_.n_blocks(); ++b)
    if (refs[size_t(b)] != pool_.ref_count(b)) return false;
  return true;
}

}  // namespace kvserve

// Prefix-cache keys and their index. A full block is keyed by a hash chained over
// (parent block's hash, the block's token ids), so equal keys mean "probably the same
// prefix"; the block pool confirms every hit against the stored tokens and the parent
// block before trusting it. The index is open-addressed with a fixed capacity so that
// inserting and evicting in the step loop never allocates.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace kvserve {

inline uint64_t mix64(uint64_t x) {  // splitmix64 finalizer: every input bit moves every output bit
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// `mask` keeps only some bits (tests shrink it to force collisions).
inline uint64_t chain_block_hash(uint64_t parent, std::span<const int32_t> tokens, uint64_t mask = ~0ULL) {
  uint64_t h = mix64(parent ^ 0x9e3779b97f4a7c15ULL);
  for (int32_t t : tokens) h = mix64(h ^ (uint64_t(uint32_t(t)) + 0x632be59bd9b4e019ULL));
  return h & mask;
}
inline constexpr uint64_t kRootHash = 0x6a09e667f3bcc908ULL;  // parent hash of a sequence's first block

// hash -> block id, at most one block per hash (a duplicate is simply not indexed).
// Linear probing with backward-shift deletion: no tombstones, so lookups stay short.
class BlockHashIndex {
 public:
  explicit BlockHashIndex(int max_entries) {
    size_t cap = 16;
    while (cap < size_t(max_entries) * 2) cap <<= 1;
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
  }

  int32_t find(uint64_t hash) const {
    for (size_t i = home(hash);; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.block < 0) return -1;
      if (s.hash == hash) return s.block;
    }
  }
  // Returns false (and changes nothing) if the hash is already present.
  bool insert(uint64_t hash, int32_t block) {
    size_t i = home(hash);
    for (; slots_[i].block >= 0; i = (i + 1) & mask_)
      if (slots_[i].hash == hash) return false;
    slots_[i] = Slot{hash, block};
    ++size_;
    return true;
  }
  // Removes the entry only if it maps hash to this block.
  bool erase(uint64_t hash, int32_t block) {
    size_t i = home(hash);
    for (;; i = (i + 1) & mask_) {
      if (slots_[i].block < 0) return false;
      if (slots_[i].hash == hash) break;
    }
    if (slots_[i].block != block) return false;
    // Backward shift: pull later entries of the probe run into the hole.
    size_t hole = i;
    for (size_t j = (i + 1) & mask_; slots_[j].block >= 0; j = (j + 1) & mask_) {
      size_t h = home(slots_[j].hash);
      // Entry j may move to the hole if its home is not cyclically in (hole, j].
      bool in_range = hole <= j ? (h > hole && h <= j) : (h > hole || h <= j);
      if (!in_range) {
        slots_[hole] = slots_[j];
        hole = j;
      }
    }
    slots_[hole] = Slot{};
    --size_;
    return true;
  }
  int size() const { return size_; }

 private:
  struct Slot {
    uint64_t hash = 0;
    int32_t block = -1;  // -1 = empty
  };
  size_t home(uint64_t hash) const { return size_t(mix64(hash)) & mask_; }
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  int size_ = 0;
};

}  // namespace kvserve

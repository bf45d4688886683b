// What followed each n-gram in recent requests' outputs, shared by all sequences: chat
// and agent workloads repeat themselves across requests (the same code block, the same
// tool-call scaffolding), which a per-sequence index cannot see. Bounded: a fixed
// number of buckets, direct-mapped, a newer n-gram evicting an older one; each bucket
// keeps up to four continuations with counts and proposes the most frequent.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace kvserve {

class NgramSharedCache {
 public:
  NgramSharedCache(int n_min, int n_max, int buckets);

  // Records every n-gram -> next token of tokens[from, size) (n-grams may start before
  // `from`, so the join between prompt and output counts too).
  void add(std::span<const int32_t> tokens, int from);
  // Extends `context` greedily with the most frequent continuation of its longest known
  // suffix, up to out.size() tokens; returns how many were written.
  // With `others` ([out.size()][kOthers]): for each token written, the other known
  // continuations at that point, the most frequent first (-1 past the last).
  int lookup(std::span<const int32_t> context, std::span<int32_t> out, std::span<int32_t> others = {}) const;

  int buckets() const { return int(buckets_.size()); }

 private:
  static constexpr int kWays = 4;

 public:
  static constexpr int kOthers = kWays - 1;

 private:
  struct Bucket {
    uint64_t key = 0;  // 0 = empty
    int32_t token[kWays] = {-1, -1, -1, -1};
    uint16_t count[kWays] = {};
  };
  static uint64_t hash(std::span<const int32_t> gram);
  // The bucket's continuations of `key` by count, most frequent first, into ranked[kWays]
  // (-1 past the last); returns how many (0: unknown n-gram).
  int ranked(uint64_t key, int32_t* ranked) const;

  int n_min_, n_max_;
  std::vector<Bucket> buckets_;  // power of two
};

}  // namespace kvserve

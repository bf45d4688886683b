// Per-sequence n-gram index for prompt / output lookup. For every position e of the
// sequence and every n in [n_min, n_max] it remembers the latest e whose preceding n
// tokens form a given n-gram, so "what followed this suffix last time?" is one hash probe
// per n. update() indexes only the tokens appended since the last call (no rescan per
// step); the table is sized once for the sequence's capacity and never grows.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace kvserve {

class NgramIndex {
 public:
  // Sizes the table for up to `capacity` tokens and forgets everything.
  void reset(int n_min, int n_max, int capacity);
  // Indexes tokens [indexed, tokens.size()) (tokens only ever grow between resets).
  void update(std::span<const int32_t> tokens);
  // Longest suffix of `tokens` (n_max down to n_min tokens) that occurred earlier: copies
  // what followed it (running on into the copy itself for a repeating pattern) into
  // `out`; returns the number of tokens written (0: no match). Call after update().
  int lookup(std::span<const int32_t> tokens, std::span<int32_t> out) const;

  // Every earlier occurrence of the sequence's suffixes, for a tree of continuations: the
  // positions e that followed them (continuation tokens[e..]), the longest suffix first
  // and within it the latest first, each position once. Returns how many were written.
  int occurrences(std::span<const int32_t> tokens, std::span<int32_t> ends) const;
  // The continuation at `end` (as lookup() writes it) into out; returns its length.
  static int continuation(std::span<const int32_t> tokens, int32_t end, std::span<int32_t> out);

  int indexed() const { return indexed_; }

 private:
  struct Slot {
    uint32_t tag = 0;  // high hash bits; 0 = empty
    int32_t pos = 0;   // continuation position e (tokens[e - n, e) is the n-gram)
  };
  static uint64_t hash(std::span<const int32_t> gram);
  void insert(uint64_t h, int n, int32_t pos);
  int32_t find(uint64_t h) const;  // -1 if absent

  int n_min_ = 2, n_max_ = 4;
  int indexed_ = 0;
  std::vector<Slot> slots_;  // power of two, load <= 1/2
  // [n - n_min][e]: the occurrence of the same n-gram before e (-1: none), a chain from
  // the latest (in slots_) back to the first.
  std::vector<int32_t> prev_;
  int capacity_ = 0;
};

}  // namespace kvserve

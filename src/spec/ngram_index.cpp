#include "spec/ngram_index.h"

#include <algorithm>
#include <bit>
#include <cassert>

namespace kvserve {

void NgramIndex::reset(int n_min, int n_max, int capacity) {
  assert(1 <= n_min && n_min <= n_max);
  n_min_ = n_min;
  n_max_ = n_max;
  indexed_ = 0;
  const size_t entries = size_t(std::max(capacity, 1)) * size_t(n_max - n_min + 1);
  capacity_ = std::max(capacity, 1);
  prev_.assign(entries, -1);
  const size_t want = std::bit_ceil(entries * 2);
  if (slots_.size() != want) {
    slots_.assign(want, Slot{});
  } else {
    std::fill(slots_.begin(), slots_.end(), Slot{});
  }
}

uint64_t NgramIndex::hash(std::span<const int32_t> gram) {
  // The length is mixed in, so "b c" and "a b c" never share a key.
  uint64_t h = 0x9E3779B97F4A7C15ull * (gram.size() + 1);
  for (int32_t t : gram) {
    h ^= uint32_t(t);
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
  }
  return h;
}

void NgramIndex::insert(uint64_t h, int n, int32_t pos) {
  const size_t mask = slots_.size() - 1;
  const uint32_t tag = uint32_t(h >> 32) | 1u;
  for (size_t i = size_t(h) & mask;; i = (i + 1) & mask) {
    Slot& s = slots_[i];
    if (s.tag == 0 || s.tag == tag) {
      prev_[size_t(n - n_min_) * size_t(capacity_) + size_t(pos)] = s.tag == tag ? s.pos : -1;
      s.tag = tag;
      s.pos = pos;  // the latest occurrence wins
      return;
    }
  }
}

int32_t NgramIndex::find(uint64_t h) const {
  const size_t mask = slots_.size() - 1;
  const uint32_t tag = uint32_t(h >> 32) | 1u;
  for (size_t i = size_t(h) & mask;; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.tag == 0) return -1;
    if (s.tag == tag) return s.pos;
  }
}

void NgramIndex::update(std::span<const int32_t> tokens) {
  // Position e is indexed once tokens[e] (what followed the n-gram) exists.
  const int size = int(tokens.size());
  assert(size_t(size) * size_t(n_max_ - n_min_ + 1) * 2 <= slots_.size() && "capacity exceeded");
  for (int e = std::max(indexed_, n_min_); e < size; ++e)
    for (int n = n_min_; n <= std::min(n_max_, e); ++n)
      insert(hash(tokens.subspan(size_t(e - n), size_t(n))), n, e);
  indexed_ = std::max(indexed_, size);
}

int NgramIndex::occurrences(std::span<const int32_t> tokens, std::span<int32_t> ends) const {
  const int size = int(tokens.size());
  int found = 0;
  for (int n = std::min(n_max_, size - 1); n >= n_min_ && found < int(ends.size()); --n) {
    auto suffix = tokens.subspan(size_t(size - n));
    for (int32_t e = find(hash(suffix)); e >= 0 && found < int(ends.size());
         e = prev_[size_t(n - n_min_) * size_t(capacity_) + size_t(e)]) {
      // A 32-bit tag can collide: confirm the tokens (a collision's chain is skipped whole).
      if (e >= size || !std::equal(suffix.begin(), suffix.end(), tokens.begin() + (e - n))) break;
      if (std::find(ends.begin(), ends.begin() + found, e) == ends.begin() + found) ends[size_t(found++)] = e;
    }
  }
  return found;
}

int NgramIndex::continuation(std::span<const int32_t> tokens, int32_t end, std::span<int32_t> out) {
  const int size = int(tokens.size());
  int k = 0;
  for (; k < int(out.size()); ++k) {
    const int idx = end + k;
    out[size_t(k)] = idx < size ? tokens[size_t(idx)] : out[size_t(idx - size)];
  }
  return k;
}

int NgramIndex::lookup(std::span<const int32_t> tokens, std::span<int32_t> out) const {
  const int size = int(tokens.size());
  if (out.empty()) return 0;
  for (int n = std::min(n_max_, size - 1); n >= n_min_; --n) {
    auto suffix = tokens.subspan(size_t(size - n));
    const int32_t e = find(hash(suffix));
    if (e < 0 || e >= size) continue;
    // A 32-bit tag can collide: confirm the tokens.
    if (!std::equal(suffix.begin(), suffix.end(), tokens.begin() + (e - n))) continue;
    return continuation(tokens, e, out);
  }
  return 0;
}

}  // namespace kvserve

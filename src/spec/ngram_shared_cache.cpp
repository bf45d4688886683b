#include "spec/ngram_shared_cache.h"

#include <algorithm>
#include <array>
#include <bit>

namespace kvserve {

NgramSharedCache::NgramSharedCache(int n_min, int n_max, int buckets) : n_min_(n_min), n_max_(n_max) {
  buckets_.resize(std::bit_ceil(size_t(std::max(buckets, 1))));
}

uint64_t NgramSharedCache::hash(std::span<const int32_t> gram) {
  uint64_t h = 0xC2B2AE3D27D4EB4Full * (gram.size() + 1);
  for (int32_t t : gram) {
    h ^= uint32_t(t);
    h *= 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
  }
  return h | 1;  // never the empty key
}

void NgramSharedCache::add(std::span<const int32_t> tokens, int from) {
  const size_t mask = buckets_.size() - 1;
  for (int e = std::max(from, n_min_); e < int(tokens.size()); ++e) {
    const int32_t next = tokens[size_t(e)];
    for (int n = n_min_; n <= std::min(n_max_, e); ++n) {
      const uint64_t key = hash(tokens.subspan(size_t(e - n), size_t(n)));
      Bucket& b = buckets_[size_t(key >> 7) & mask];
      if (b.key != key) b = Bucket{.key = key};  // evict the older n-gram
      int way = 0;
      while (way < kWays && b.token[way] != next && b.token[way] >= 0) ++way;
      if (way == kWays) way = int(std::min_element(b.count, b.count + kWays) - b.count);  // least seen
      if (b.token[way] != next) {
        b.token[way] = next;
        b.count[way] = 0;
      }
      if (b.count[way] < UINT16_MAX) ++b.count[way];
    }
  }
}

int32_t NgramSharedCache::best(uint64_t key) const {
  const Bucket& b = buckets_[size_t(key >> 7) & (buckets_.size() - 1)];
  if (b.key != key) return -1;
  int way = -1;
  for (int w = 0; w < kWays; ++w)
    if (b.token[w] >= 0 && (way < 0 || b.count[w] > b.count[way])) way = w;
  return way < 0 ? -1 : b.token[way];
}

int NgramSharedCache::lookup(std::span<const int32_t> context, std::span<int32_t> out) const {
  // A window of the last n_max context tokens followed by what was proposed so far.
  std::array<int32_t, 16 + 16> win{};
  const int ctx = std::min<int>(int(context.size()), n_max_);
  const int cap = int(win.size()) - ctx;
  std::copy(context.end() - ctx, context.end(), win.begin());
  int len = ctx, k = 0;
  while (k < int(out.size()) && k < cap) {
    int32_t next = -1;
    for (int n = std::min(n_max_, len); n >= n_min_ && next < 0; --n)
      next = best(hash(std::span<const int32_t>(win.data() + (len - n), size_t(n))));
    if (next < 0) break;
    out[size_t(k++)] = next;
    win[size_t(len++)] = next;
  }
  return k;
}

}  // namespace kvserve

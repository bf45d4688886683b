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

int NgramSharedCache::ranked(uint64_t key, int32_t* out) const {
  const Bucket& b = buckets_[size_t(key >> 7) & (buckets_.size() - 1)];
  std::fill_n(out, kWays, -1);
  if (b.key != key) return 0;
  std::array<int, kWays> ways{};
  int n = 0;
  for (int w = 0; w < kWays; ++w)
    if (b.token[w] >= 0) ways[size_t(n++)] = w;
  // Stable: equal counts keep way order (the earlier-seen continuation first).
  std::stable_sort(ways.begin(), ways.begin() + n, [&](int x, int y) { return b.count[x] > b.count[y]; });
  for (int i = 0; i < n; ++i) out[i] = b.token[ways[size_t(i)]];
  return n;
}

int NgramSharedCache::lookup(std::span<const int32_t> context, std::span<int32_t> out,
                             std::span<int32_t> others) const {
  // A window of the last n_max context tokens followed by what was proposed so far.
  std::array<int32_t, 16 + 16> win{};
  const int ctx = std::min<int>(int(context.size()), n_max_);
  const int cap = int(win.size()) - ctx;
  std::copy(context.end() - ctx, context.end(), win.begin());
  int len = ctx, k = 0;
  std::array<int32_t, kWays> rank{};
  while (k < int(out.size()) && k < cap) {
    int found = 0;
    for (int n = std::min(n_max_, len); n >= n_min_ && found == 0; --n)
      found = ranked(hash(std::span<const int32_t>(win.data() + (len - n), size_t(n))), rank.data());
    if (found == 0) break;
    const int32_t next = rank[0];
    if (!others.empty())
      std::copy(rank.begin() + 1, rank.end(), others.begin() + std::ptrdiff_t(k) * kOthers);
    out[size_t(k++)] = next;
    win[size_t(len++)] = next;
  }
  return k;
}

}  // namespace kvserve

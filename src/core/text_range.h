// Byte ranges of a text. A chat prompt carries the ranges that came from request data
// (jinja/taint.h), so the tokenizer reads no control token there (Tokenizer::encode).
#pragma once

#include <cstdint>
#include <vector>

namespace kvserve {

struct TextRange {
  uint32_t begin = 0, end = 0;  // [begin, end)
};
using TextRanges = std::vector<TextRange>;  // sorted, disjoint, non-empty

// Appends src's ranges moved `offset` bytes on, merging one that touches dst's last.
inline void append_ranges(TextRanges& dst, const TextRanges& src, uint32_t offset) {
  for (const TextRange& r : src) {
    if (r.end <= r.begin) continue;
    const TextRange m{r.begin + offset, r.end + offset};
    if (!dst.empty() && dst.back().end >= m.begin)
      dst.back().end = dst.back().end > m.end ? dst.back().end : m.end;
    else
      dst.push_back(m);
  }
}

// Whether [begin, end) overlaps any of `ranges`.
inline bool overlaps(const TextRanges& ranges, uint32_t begin, uint32_t end) {
  for (const TextRange& r : ranges)
    if (r.begin < end && begin < r.end) return true;
  return false;
}

}  // namespace kvserve

// SentencePiece-style tokenization (tokenizer.ggml.model == "llama"), as llama.cpp does
// it: spaces become U+2581 "▁", the text is split into UTF-8 characters, and adjacent
// symbols are merged greedily, highest-scoring resulting token first (leftmost on ties),
// until no adjacent pair forms a vocabulary token. Symbols left that are not tokens are
// written as byte tokens <0xNN>.
#include <algorithm>
#include <array>
#include <cstdio>
#include <string>
#include <unordered_set>

#include "tokenizer/tokenizer_model.h"
#include "tokenizer/unicode.h"

namespace kvserve {

namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581

struct Symbol {
  int32_t prev;
  int32_t next;
  uint32_t start;  // byte offset into the escaped text
  uint32_t n;      // byte length; 0 once merged into its left neighbour
};

struct Bigram {
  int32_t left;
  int32_t right;
  float score;
  uint32_t size;  // byte length of the merged text, to detect stale entries
};

// Max-heap order: higher score first, then the leftmost pair.
struct BigramLess {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

class SpmModel final : public TokenizerModel {
 public:
  explicit SpmModel(const Vocab& v) : v_(v) {
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      int32_t id = v_.find(name);
      if (id < 0) id = v_.find(std::string_view(reinterpret_cast<const char*>(&b), 1));
      byte_token_[b] = id >= 0 ? id : v_.unk_id;
    }
    for (const std::string& t : v_.tokens) {
      const std::string_view tv = t;
      uint32_t prev = 0;
      for (size_t i = 0; i < tv.size();) {
        const size_t len = char_len(tv, i);
        const uint32_t cur = pack(tv.substr(i, len));
        if (i > 0) joinable_.insert(pair_key(prev, cur));
        prev = cur;
        i += len;
      }
    }
  }

  void encode(std::string_view text, bool after_special, std::vector<int32_t>& out) const override {
    thread_local std::string buf;
    buf.clear();
    buf.reserve(text.size() + text.size() / 4 + 3);
    if (v_.add_space_prefix && after_special) buf.append(kSpaceMark);
    for (char c : text) {
      if (c == ' ')
        buf.append(kSpaceMark);
      else
        buf.push_back(c);
    }

    // Cut the text between characters that no token has side by side: no merge can
    // cross such a cut, so each piece merges independently with the same result, and
    // the merge queues stay small (word-sized for ordinary prose).
    const std::string_view s = buf;
    size_t seg = 0;
    uint32_t prev = 0;
    for (size_t i = 0; i < s.size();) {
      const size_t len = char_len(s, i);
      const uint32_t cur = pack(s.substr(i, len));
      if (i > seg && !joinable_.contains(pair_key(prev, cur))) {
        merge_segment(s.substr(seg, i - seg), out);
        seg = i;
      }
      prev = cur;
      i += len;
    }
    if (seg < s.size()) merge_segment(s.substr(seg), out);
  }

 private:
  static size_t char_len(std::string_view s, size_t i) {
    return std::min(utf8::seq_len(static_cast<unsigned char>(s[i])), s.size() - i);
  }
  // A character's (1..4) bytes packed into one integer.
  static uint32_t pack(std::string_view ch) {
    uint32_t v = 0;
    for (unsigned char c : ch) v = (v << 8) | c;
    return v;
  }
  static uint64_t pair_key(uint32_t a, uint32_t b) { return (static_cast<uint64_t>(a) << 32) | b; }

  // Merges the symbols of one segment greedily (highest score first) and writes its ids.
  void merge_segment(std::string_view s, std::vector<int32_t>& out) const {
    thread_local std::vector<Symbol> syms;
    thread_local std::vector<Bigram> heap;
    syms.clear();
    for (size_t i = 0; i < s.size();) {
      const uint32_t len = static_cast<uint32_t>(char_len(s, i));
      const int32_t idx = static_cast<int32_t>(syms.size());
      syms.push_back({idx - 1, idx + 1, static_cast<uint32_t>(i), len});
      i += len;
    }
    if (syms.empty()) return;
    syms.back().next = -1;

    heap.clear();
    auto try_add = [&](int32_t l, int32_t r) {
      if (l < 0 || r < 0) return;
      const uint32_t size = syms[l].n + syms[r].n;
      const int32_t id = v_.find(s.substr(syms[l].start, size));
      if (id < 0) return;
      heap.push_back({l, r, v_.scores[id], size});
      std::push_heap(heap.begin(), heap.end(), BigramLess{});
    };
    for (int32_t i = 1; i < static_cast<int32_t>(syms.size()); ++i) try_add(i - 1, i);

    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), BigramLess{});
      const Bigram bg = heap.back();
      heap.pop_back();
      Symbol& l = syms[bg.left];
      Symbol& r = syms[bg.right];
      if (l.n == 0 || r.n == 0 || l.n + r.n != bg.size) continue;  // stale: a side merged since
      l.n += r.n;
      r.n = 0;
      l.next = r.next;
      if (r.next >= 0) syms[r.next].prev = bg.left;
      try_add(l.prev, bg.left);
      try_add(bg.left, l.next);
    }

    for (int32_t i = 0; i >= 0; i = syms[i].next) {
      const std::string_view piece = s.substr(syms[i].start, syms[i].n);
      const int32_t id = v_.find(piece);
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
      for (unsigned char b : piece)
        if (byte_token_[b] >= 0) out.push_back(byte_token_[b]);
    }
  }

  const Vocab& v_;
  // Character pairs that occur side by side inside some token (split the same way the
  // text is), i.e. the only places a merge can join two symbols.
  std::unordered_set<uint64_t> joinable_;
  std::array<int32_t, 256> byte_token_{};  // byte-fallback id per byte value (-1: none)
};

}  // namespace

std::unique_ptr<TokenizerModel> make_spm_model(const Vocab& vocab) {
  return std::make_unique<SpmModel>(vocab);
}

}  // namespace kvserve

// Byte-level BPE (tokenizer.ggml.model == "gpt2"), as llama.cpp does it: the text is
// split into words by the pre-tokenizer regexes, each byte of a word becomes the symbol
// for its GPT-2 byte-map character, and adjacent symbols are merged lowest merge rank
// first (leftmost on ties). A final symbol that is not a token is written byte by byte.
//
// Speed: every string that can appear as a symbol (tokens and both sides and result of
// each merge) gets an integer id up front, so merging looks up (left id, right id) in
// one hash map instead of hashing strings.
#include <algorithm>
#include <array>
#include <string>
#include <unordered_map>

#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer_model.h"
#include "tokenizer/unicode.h"

namespace kvserve {

namespace {

struct Symbol {
  int32_t prev;
  int32_t next;
  uint32_t start;  // byte offset into the word (original, un-mapped bytes)
  uint32_t n;      // byte length; 0 once merged into its left neighbour
  int32_t sid;     // string id of the symbol's text, -1 when it is no known string
};

struct Bigram {
  int32_t left;
  int32_t right;
  int32_t rank;
  int32_t result;  // string id of the merged text
  uint32_t size;
};

// Min-heap order for std::push_heap (which keeps the "largest" on top).
struct BigramGreater {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

struct Merge {
  int32_t rank;
  int32_t result;
};

inline uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

class BpeModel final : public TokenizerModel {
 public:
  BpeModel(const Vocab& v, std::unique_ptr<PreTokenizer> pre) : v_(v), pre_(std::move(pre)) {
    const auto& cps = utf8::byte_to_cp();
    for (int b = 0; b < 256; ++b) {
      byte_text_[b].clear();
      utf8::append_codepoint(cps[b], byte_text_[b]);
    }

    // String ids: tokens keep their id (the last id for duplicate texts, as lookups give).
    TokenIdMap sid(v_.token_to_id.begin(), v_.token_to_id.end());
    int32_t next_sid = v_.size();
    auto intern = [&](std::string s) {
      auto [it, inserted] = sid.try_emplace(std::move(s), next_sid);
      if (inserted) ++next_sid;
      return it->second;
    };
    merges_.reserve(v_.merges.size());
    for (size_t i = 0; i < v_.merges.size(); ++i) {
      const std::string& m = v_.merges[i];
      const size_t sp = m.find(' ', 1);
      if (sp == std::string::npos) continue;
      const int32_t a = intern(m.substr(0, sp));
      const int32_t b = intern(m.substr(sp + 1));
      const int32_t r = intern(m.substr(0, sp) + m.substr(sp + 1));
      merges_.try_emplace(pair_key(a, b), Merge{static_cast<int32_t>(i), r});  // first rank wins
    }

    for (int b = 0; b < 256; ++b) {
      auto it = sid.find(byte_text_[b]);
      byte_sid_[b] = it == sid.end() ? -1 : it->second;
      // Fallback for a symbol that is no token: each byte of its mapped text, looked up
      // as a one-byte token (llama.cpp's behaviour; usually only ASCII ones exist).
      for (unsigned char c : byte_text_[b]) {
        int32_t id = v_.find(std::string_view(reinterpret_cast<const char*>(&c), 1));
        if (id >= 0) byte_fallback_[b].push_back(id);
      }
    }
  }

  void encode(std::string_view text, bool /*after_special*/, std::vector<int32_t>& out) const override {
    thread_local std::string clean;
    thread_local std::vector<WordSpan> words;
    // Invalid UTF-8 becomes U+FFFD, one per bad byte, as llama.cpp's decoding does.
    std::string_view t = text;
    if (!utf8::sanitize(text, clean)) t = clean;
    words.clear();
    pre_->split(t, words);
    for (const WordSpan& w : words) encode_word(t.substr(w.begin, w.end - w.begin), out);
  }

 private:
  void encode_word(std::string_view word, std::vector<int32_t>& out) const {
    thread_local std::vector<Symbol> syms;
    thread_local std::vector<Bigram> heap;
    thread_local std::string mapped;

    if (pre_->ignore_merges()) {
      mapped.clear();
      for (unsigned char b : word) mapped += byte_text_[b];
      const int32_t id = v_.find(mapped);
      if (id >= 0) {
        out.push_back(id);
        return;
      }
    }

    syms.clear();
    for (uint32_t i = 0; i < word.size(); ++i) {
      const int32_t idx = static_cast<int32_t>(i);
      syms.push_back({idx - 1, idx + 1, i, 1, byte_sid_[static_cast<unsigned char>(word[i])]});
    }
    if (syms.empty()) return;
    syms.back().next = -1;

    heap.clear();
    auto try_add = [&](int32_t l, int32_t r) {
      if (l < 0 || r < 0 || syms[l].sid < 0 || syms[r].sid < 0) return;
      auto it = merges_.find(pair_key(syms[l].sid, syms[r].sid));
      if (it == merges_.end()) return;
      heap.push_back({l, r, it->second.rank, it->second.result, syms[l].n + syms[r].n});
      std::push_heap(heap.begin(), heap.end(), BigramGreater{});
    };
    for (int32_t i = 1; i < static_cast<int32_t>(syms.size()); ++i) try_add(i - 1, i);

    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), BigramGreater{});
      const Bigram bg = heap.back();
      heap.pop_back();
      Symbol& l = syms[bg.left];
      Symbol& r = syms[bg.right];
      if (l.n == 0 || r.n == 0 || l.n + r.n != bg.size) continue;  // stale: a side merged since
      l.n += r.n;
      l.sid = bg.result;
      r.n = 0;
      l.next = r.next;
      if (r.next >= 0) syms[r.next].prev = bg.left;
      try_add(l.prev, bg.left);
      try_add(bg.left, l.next);
    }

    const int32_t n_vocab = v_.size();
    for (int32_t i = 0; i >= 0; i = syms[i].next) {
      const Symbol& s = syms[i];
      if (s.sid >= 0 && s.sid < n_vocab) {
        out.push_back(s.sid);
        continue;
      }
      for (uint32_t k = s.start; k < s.start + s.n; ++k) {
        const auto& fb = byte_fallback_[static_cast<unsigned char>(word[k])];
        out.insert(out.end(), fb.begin(), fb.end());
      }
    }
  }

  const Vocab& v_;
  std::unique_ptr<PreTokenizer> pre_;
  std::unordered_map<uint64_t, Merge> merges_;  // (left sid, right sid) -> rank, result sid
  std::array<std::string, 256> byte_text_;      // byte -> UTF-8 of its byte-map character
  std::array<int32_t, 256> byte_sid_{};
  std::array<std::vector<int32_t>, 256> byte_fallback_;
};

}  // namespace

Result<std::unique_ptr<TokenizerModel>> make_bpe_model(const Vocab& vocab) {
  auto pre = PreTokenizer::create(vocab.pre);
  if (!pre) return pre.error();
  return std::unique_ptr<TokenizerModel>(std::make_unique<BpeModel>(vocab, std::move(*pre)));
}

}  // namespace kvserve

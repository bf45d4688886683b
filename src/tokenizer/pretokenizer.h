// Byte-level BPE pre-tokenization: splits text into words with the regex sequence that
// tokenizer.ggml.pre names (the Hugging Face pre-tokenizer of that model family).
// Each regex of a sequence splits every current word further; both the matches and the
// text between matches become words.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace kvserve {

struct WordSpan {
  uint32_t begin;
  uint32_t end;
};

class PreTokenizer {
 public:
  // Error for an unknown name; "" is treated as "default".
  static Result<std::unique_ptr<PreTokenizer>> create(std::string_view pre_name);
  ~PreTokenizer();

  // The regexes (PCRE2 syntax) used for a pre-tokenizer name; empty when unknown.
  static std::vector<std::string> patterns(std::string_view pre_name);

  // Appends the words of `text` (valid UTF-8) to `words`, in order, covering all of text.
  void split(std::string_view text, std::vector<WordSpan>& words) const;
  // Whole words found in the vocabulary skip merging (llama3, tekken).
  bool ignore_merges() const { return ignore_merges_; }

 private:
  struct Regex;
  PreTokenizer() = default;
  std::vector<std::unique_ptr<Regex>> regexes_;
  bool ignore_merges_ = false;
};

}  // namespace kvserve

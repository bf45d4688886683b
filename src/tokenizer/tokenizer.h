// Text <-> token ids for GGUF models, matching llama.cpp's tokenization exactly.
// Two model families: SentencePiece-style (`llama`: score-driven merges, byte fallback)
// and byte-level BPE (`gpt2`: merge ranks, pre-tokenizer regex chosen by
// tokenizer.ggml.pre). Immutable after construction, so one Tokenizer may be shared
// by threads; encode/decode are const and thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "core/text_range.h"
#include "gguf/gguf_file.h"
#include "tokenizer/vocab.h"

namespace kvserve {

class TokenizerModel;  // the algorithm (SPM or BPE); see tokenizer_model.h

class Tokenizer {
 public:
  static Result<std::unique_ptr<Tokenizer>> from_gguf(const GgufFile& file);
  static Result<std::unique_ptr<Tokenizer>> from_vocab(Vocab vocab);
  ~Tokenizer();

  // add_special: add BOS/EOS as the model's tokenizer.ggml.add_bos_token/add_eos_token say
  // (llama.cpp defaults when absent: SPM adds BOS, gpt2 BPE does not unless the flag says so);
  // parse_special: match control/user-defined tokens written in the text, but no control
  // token that overlaps `plain` (text from request data in a chat prompt: jinja/taint.h),
  // which is tokenized as if parse_special were false.
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special,
                              const TextRanges* plain = nullptr) const;
  // Exact bytes; control tokens render as their text unless skip_special (user-defined
  // tokens always render). With sequence_start, ids are a whole encoded sequence: SPM's
  // dummy-prefix space (add_space_prefix) is removed from the first text token, as
  // llama.cpp does; pass false for a continuation (e.g. generated tokens). The space
  // encode() adds after each special token is removed in either case.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false,
                     bool sequence_start = true) const;
  // One token of decode(): appends its bytes to out; strip_space carries decode's state
  // (drop a leading space of the next text token) from token to token.
  void decode_append(int32_t id, bool skip_special, bool& strip_space, std::string& out) const;
  // SPM with add_space_prefix: encode adds a space that decode removes.
  bool strips_prefix_space() const;
  // The bytes this token contributes (SPM `▁` -> ' ', `<0xNN>` -> byte, BPE byte map undone).
  std::string token_to_piece(int32_t id) const;
  // The token's text as stored in the vocabulary.
  const std::string& token_text(int32_t id) const;

  int32_t n_vocab() const { return static_cast<int32_t>(vocab_.tokens.size()); }
  int32_t bos_id() const { return vocab_.bos_id; }  // -1 if none
  int32_t eos_id() const { return vocab_.eos_id; }
  int32_t eot_id() const { return vocab_.eot_id; }
  int32_t pad_id() const { return vocab_.pad_id; }
  int32_t unk_id() const { return vocab_.unk_id; }
  bool add_bos() const { return vocab_.add_bos; }
  bool add_eos() const { return vocab_.add_eos; }
  // EOS, EOT and other end-of-generation tokens (<|im_end|>, <|eot_id|>, <|endoftext|>...).
  bool is_eog(int32_t id) const;
  bool is_control(int32_t id) const;
  std::optional<int32_t> find_token(std::string_view text) const;
  const std::string& model_type() const { return vocab_.model; }
  const std::string& pre_type() const { return vocab_.pre; }
  const Vocab& vocab() const { return vocab_; }

 private:
  // A span of text, or a special token matched in the text.
  struct Fragment {
    int32_t token;  // -1 for text
    uint32_t offset;
    uint32_t length;
  };
  Tokenizer() = default;
  std::vector<Fragment> partition(std::string_view text, bool parse_special, const TextRanges* plain) const;

  Vocab vocab_;
  std::unique_ptr<TokenizerModel> model_;
  std::vector<int32_t> special_by_length_;  // control/user-defined ids, longest text first
  std::vector<std::string> pieces_;         // token_to_piece for each id, precomputed
};

// Incremental detokenizer for streaming: push() returns only complete UTF-8 text,
// never a partial sequence; a held-back tail comes out with a later push or flush().
// Bytes that cannot form a character come out as U+FFFD, so the concatenated output is
// decode(all ids, skip_special, sequence_start) whenever that is valid UTF-8.
// sequence_start: the ids start an encoded sequence (see Tokenizer::decode); leave it
// false for generated tokens that continue a prompt.
class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(const Tokenizer& tok, bool skip_special = true, bool sequence_start = false);
  std::string push(int32_t id);
  std::string flush();  // remaining bytes (invalid UTF-8 replaced by U+FFFD)

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  bool strip_space_;     // decode state: drop a leading space of the next text token
  std::string pending_;  // bytes not yet emitted (an incomplete UTF-8 sequence)
};

}  // namespace kvserve

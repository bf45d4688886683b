// The segmentation algorithm behind a Tokenizer: turns a span of ordinary text (no
// special tokens in it) into token ids. Implementations are immutable and thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "tokenizer/vocab.h"

namespace kvserve {

class TokenizerModel {
 public:
  virtual ~TokenizerModel() = default;
  // Appends the ids of `text` to `out`. `after_special`: the text starts the sequence or
  // follows a special token (SPM then adds its dummy-prefix space).
  virtual void encode(std::string_view text, bool after_special, std::vector<int32_t>& out) const = 0;
};

// SentencePiece-style (tokenizer.ggml.model == "llama"); see spm_model.cpp.
std::unique_ptr<TokenizerModel> make_spm_model(const Vocab& vocab);
// Byte-level BPE (tokenizer.ggml.model == "gpt2"); see bpe_model.cpp.
Result<std::unique_ptr<TokenizerModel>> make_bpe_model(const Vocab& vocab);

}  // namespace kvserve

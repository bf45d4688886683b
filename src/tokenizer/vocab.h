// A tokenizer vocabulary as stored in GGUF metadata (tokenizer.ggml.*), with the
// special-token ids and flags resolved the way llama.cpp resolves them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/result.h"
#include "gguf/gguf_file.h"

namespace kvserve {

// tokenizer.ggml.token_type values.
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

// Transparent hashing so maps keyed by std::string can be probed with a string_view.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenIdMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

struct Vocab {
  std::string model;  // tokenizer.ggml.model: "llama" (SentencePiece) or "gpt2" (byte-level BPE)
  std::string pre;    // tokenizer.ggml.pre (BPE pre-tokenizer name; "default" when absent)
  std::string name;   // general.name, lower-cased (a few per-model quirks key on it)

  std::vector<std::string> tokens;  // [n_vocab]
  std::vector<float> scores;        // [n_vocab] (0 when absent)
  std::vector<TokenType> types;     // [n_vocab] (kNormal when absent)
  std::vector<std::string> merges;  // BPE merges "left right", rank = index
  TokenIdMap token_to_id;           // text -> id; for duplicate texts the last id wins

  int32_t bos_id = -1, eos_id = -1, eot_id = -1, eom_id = -1, unk_id = -1, pad_id = -1, sep_id = -1;
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = false;  // SPM: prefix a space to text at sequence start / after a special
  std::vector<int32_t> eog_ids;   // end-of-generation tokens (sorted)

  // Whitespace after/before these special tokens is dropped when splitting text on them.
  std::vector<uint8_t> rstrip;  // [n_vocab]
  std::vector<uint8_t> lstrip;  // [n_vocab]

  int32_t size() const { return static_cast<int32_t>(tokens.size()); }
  bool is_spm() const { return model == "llama"; }
  bool is_bpe() const { return model == "gpt2"; }
  int32_t find(std::string_view text) const {
    auto it = token_to_id.find(text);
    return it == token_to_id.end() ? -1 : it->second;
  }
};

// Reads tokenizer.ggml.* from a GGUF file. Errors name the offending key.
Result<Vocab> load_vocab(const GgufFile& file);

// Fills in derived fields (token_to_id, eot/eog detection, strip flags) once the raw
// arrays and ids are set; load_vocab calls it, and tests building a Vocab by hand may.
Status finalize_vocab(Vocab& vocab);

}  // namespace kvserve

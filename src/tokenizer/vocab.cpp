// Vocabulary loading from GGUF metadata, with llama.cpp's defaults and quirks so that
// token ids and special-token handling match it exactly.
#include "tokenizer/vocab.h"

#include <algorithm>
#include <cctype>
#include <string>

namespace kvserve {

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Reads an optional token-id key; out-of-range ids are ignored (as llama.cpp does).
Status read_id(const GgufFile& file, const char* key, int32_t n_vocab, int32_t& id) {
  const GgufValue* v = file.find(key);
  if (!v) return ok_status();
  auto i = v->as_int();
  if (!i) return Error{std::string("tokenizer: ") + key + " is not an integer"};
  if (*i >= 0 && *i < n_vocab) id = static_cast<int32_t>(*i);
  return ok_status();
}

Status read_flag(const GgufFile& file, const char* key, bool& flag) {
  const GgufValue* v = file.find(key);
  if (!v) return ok_status();
  auto b = v->as_bool();
  if (!b) return Error{std::string("tokenizer: ") + key + " is not a bool"};
  flag = *b;
  return ok_status();
}

// End-of-turn markers recognised by text (most GGUF files carry no eot id); the first
// one present becomes eot_id when the file gives none.
constexpr const char* kEotTexts[] = {"<|eot_id|>",        "<|im_end|>", "<|end|>", "<end_of_turn>",
                                     "<|endoftext|>",     "<EOT>",      "_<EOT>",  "<｜end▁of▁sentence｜>",
                                     "<end_of_utterance>"};
// Every token with one of these texts ends generation.
constexpr const char* kEogTexts[] = {"<|eot_id|>", "<|im_end|>",    "<|end|>",         "<|return|>",
                                     "<|call|>",   "<end_of_turn>", "<|endoftext|>",   "<|eom_id|>",
                                     "<EOT>",      "_<EOT>",        "<|end_of_text|>", "<end_of_utterance>"};

}  // namespace

Status finalize_vocab(Vocab& v) {
  const int32_t n = v.size();
  if (v.scores.empty()) v.scores.assign(n, 0.0f);
  if (v.types.empty()) v.types.assign(n, TokenType::kNormal);
  if (static_cast<int32_t>(v.scores.size()) != n)
    return Error{"tokenizer: scores and tokens differ in length"};
  if (static_cast<int32_t>(v.types.size()) != n)
    return Error{"tokenizer: token_type and tokens differ in length"};

  v.token_to_id.clear();
  v.token_to_id.reserve(n);
  for (int32_t i = 0; i < n; ++i) {
    if (v.tokens[i].empty()) v.tokens[i] = "[EMPTY_" + std::to_string(i) + "]";
    v.token_to_id[v.tokens[i]] = i;
  }

  auto mark_control = [&](int32_t id) {
    // An end-of-generation token must be a control token, or text could spell it.
    if (v.types[id] != TokenType::kControl) v.types[id] = TokenType::kControl;
  };
  if (v.eot_id < 0) {
    for (const char* t : kEotTexts) {
      int32_t id = v.find(t);
      if (id >= 0) {
        v.eot_id = id;
        mark_control(id);
        break;
      }
    }
  }
  if (v.eom_id < 0) v.eom_id = v.find("<|eom_id|>");

  v.eog_ids.clear();
  for (const char* t : kEogTexts) {
    int32_t id = v.find(t);
    if (id >= 0) {
      v.eog_ids.push_back(id);
      mark_control(id);
    }
  }
  for (int32_t id : {v.eos_id, v.eot_id, v.eom_id})
    if (id >= 0) v.eog_ids.push_back(id);
  std::sort(v.eog_ids.begin(), v.eog_ids.end());
  v.eog_ids.erase(std::unique(v.eog_ids.begin(), v.eog_ids.end()), v.eog_ids.end());

  // Phi-3's tokenizer strips whitespace to the right of its special tokens.
  v.rstrip.assign(n, 0);
  v.lstrip.assign(n, 0);
  if (v.name.find("phi-3") != std::string::npos || v.name.find("phi3") != std::string::npos) {
    for (int32_t i = 0; i < n; ++i) {
      TokenType t = v.types[i];
      if (t == TokenType::kControl || t == TokenType::kUserDefined || t == TokenType::kUnknown)
        v.rstrip[i] = 1;
    }
    for (const char* t : {"</s>"})
      if (int32_t id = v.find(t); id >= 0) v.rstrip[id] = 1;
    for (const char* t : {"<unk>", "<s>", "<|endoftext|>"})
      if (int32_t id = v.find(t); id >= 0) v.rstrip[id] = 0;
  }
  return ok_status();
}

Result<Vocab> load_vocab(const GgufFile& file) {
  Vocab v;
  auto model = file.get_string("tokenizer.ggml.model");
  if (!model) return Error{"tokenizer: tokenizer.ggml.model missing"};
  v.model = *model;
  if (!v.is_spm() && !v.is_bpe())
    return Error{"tokenizer: unsupported tokenizer.ggml.model '" + v.model + "' (supported: llama, gpt2)"};
  v.pre = file.get_string("tokenizer.ggml.pre").value_or("default");
  v.name = lower(file.get_string("general.name").value_or(""));

  auto tokens = file.get_string_array("tokenizer.ggml.tokens");
  if (!tokens || tokens->empty()) return Error{"tokenizer: tokenizer.ggml.tokens missing or empty"};
  v.tokens = std::move(*tokens);
  const int32_t n = v.size();

  if (file.find("tokenizer.ggml.scores")) {
    auto scores = file.get_float_array("tokenizer.ggml.scores");
    if (!scores) return Error{"tokenizer: tokenizer.ggml.scores is not a number array"};
    v.scores = std::move(*scores);
  }
  if (file.find("tokenizer.ggml.token_type")) {
    auto types = file.get_int_array("tokenizer.ggml.token_type");
    if (!types) return Error{"tokenizer: tokenizer.ggml.token_type is not an integer array"};
    v.types.reserve(types->size());
    for (int64_t t : *types) {
      if (t < 0 || t > 6) return Error{"tokenizer: token_type value " + std::to_string(t) + " out of range"};
      v.types.push_back(static_cast<TokenType>(t));
    }
  }

  if (v.is_spm()) {
    v.bos_id = 1;
    v.eos_id = 2;
    v.unk_id = 0;
    v.add_bos = true;
    v.add_space_prefix = true;
  } else {
    auto merges = file.get_string_array("tokenizer.ggml.merges");
    if (!merges) return Error{"tokenizer: tokenizer.ggml.merges missing (required for gpt2)"};
    v.merges = std::move(*merges);
    v.bos_id = 11;  // llama.cpp's BPE defaults, overridden by the file's ids
    v.eos_id = 11;
    // These pre-tokenizers' models expect BOS unless the file says otherwise.
    for (const char* p : {"llama3", "llama-v3", "llama-bpe", "falcon3", "tekken", "chameleon"})
      if (v.pre == p) v.add_bos = true;
  }
  if (v.bos_id >= n) v.bos_id = -1;
  if (v.eos_id >= n) v.eos_id = -1;
  if (v.unk_id >= n) v.unk_id = -1;

  for (auto [key, id] : {std::pair{"tokenizer.ggml.bos_token_id", &v.bos_id},
                         std::pair{"tokenizer.ggml.eos_token_id", &v.eos_id},
                         std::pair{"tokenizer.ggml.eot_token_id", &v.eot_id},
                         std::pair{"tokenizer.ggml.eom_token_id", &v.eom_id},
                         std::pair{"tokenizer.ggml.unknown_token_id", &v.unk_id},
                         std::pair{"tokenizer.ggml.padding_token_id", &v.pad_id},
                         std::pair{"tokenizer.ggml.seperator_token_id", &v.sep_id}}) {
    if (auto s = read_id(file, key, n, *id); !s) return s.error();
  }
  for (auto [key, flag] : {std::pair{"tokenizer.ggml.add_bos_token", &v.add_bos},
                           std::pair{"tokenizer.ggml.add_eos_token", &v.add_eos},
                           std::pair{"tokenizer.ggml.add_space_prefix", &v.add_space_prefix}}) {
    if (auto s = read_flag(file, key, *flag); !s) return s.error();
  }

  if (auto s = finalize_vocab(v); !s) return s.error();
  return v;
}

}  // namespace kvserve

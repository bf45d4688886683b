// A summary of a GGUF file for `kvserve info`: architecture, hyper-parameters,
// tokenizer, tensors and file layout. Built from metadata alone; works on any file
// GgufFile accepts (models and tokenizer-only files) and never fails: missing or
// mistyped keys are left empty.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gguf/gguf_file.h"

namespace kvserve {

struct TokenizerInfo {
  std::optional<std::string> model;   // tokenizer.ggml.model: "llama", "gpt2", ...
  std::optional<std::string> pre;     // tokenizer.ggml.pre: pre-tokenizer name
  std::optional<int64_t> vocab_size;  // tokens array size, else <arch>.vocab_size
  std::optional<int64_t> n_merges;
  std::optional<int64_t> bos_id, eos_id, pad_id, unk_id;
  std::optional<bool> add_bos, add_eos;
  bool has_chat_template = false;
};

struct TensorTypeCount {
  int64_t tensors = 0;
  int64_t elements = 0;
  uint64_t bytes = 0;
};

struct ModelInfo {
  // File layout.
  std::string path;
  uint64_t file_size = 0;
  uint32_t gguf_version = 0;
  uint64_t alignment = 0;
  uint64_t data_offset = 0;
  size_t n_metadata = 0;

  std::optional<std::string> architecture;  // general.architecture
  std::optional<std::string> name;          // general.name
  std::optional<int64_t> file_type;         // general.file_type (llama.cpp ftype id)
  std::optional<int64_t> context_length;    // <arch>.context_length
  // Every "<arch>.*" key in file order of keys (sorted), with its value.
  std::vector<std::pair<std::string, GgufValue>> hparams;
  TokenizerInfo tokenizer;

  int64_t n_tensors = 0;
  int64_t n_params = 0;  // total elements over all tensors
  uint64_t tensor_bytes = 0;
  std::map<std::string, TensorTypeCount> by_type;  // type name -> counts

  // Average stored bits per parameter; 0 when there are no tensors.
  double bits_per_weight() const {
    return n_params > 0 ? 8.0 * double(tensor_bytes) / double(n_params) : 0.0;
  }
};

ModelInfo build_model_info(const GgufFile& file);

// Name of a llama.cpp general.file_type id ("Q4_K_M"), "unknown" for others.
const char* llama_file_type_name(int64_t ftype);

// A short rendering of a metadata value: numbers, quoted strings, and arrays as
// "[a, b, c, ... (N items)]" showing at most max_items elements.
std::string format_gguf_value(const GgufValue& v, size_t max_items = 8);

// The human-readable report printed by `kvserve info`.
std::string format_model_info(const ModelInfo& info);

}  // namespace kvserve

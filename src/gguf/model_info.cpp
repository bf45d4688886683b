#include "gguf/model_info.h"

#include <fmt/format.h>

#include <cmath>

namespace kvserve {

namespace {

// Strings from files may hold anything: show control characters escaped and cut
// long ones (chat templates) short.
std::string quote(const std::string& s, size_t max_chars = 60) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < max_chars; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (c == '"' || c == '\\')
      out += {'\\', char(c)};
    else if (c < 0x20 || c == 0x7f)
      out += fmt::format("\\x{:02x}", c);
    else
      out += char(c);
  }
  out += "\"";
  if (s.size() > max_chars) out += fmt::format("... ({} bytes)", s.size());
  return out;
}

std::string human_count(int64_t n) {
  if (n >= 1'000'000'000) return fmt::format("{:.2f} B", double(n) / 1e9);
  if (n >= 1'000'000) return fmt::format("{:.2f} M", double(n) / 1e6);
  if (n >= 1'000) return fmt::format("{:.2f} K", double(n) / 1e3);
  return std::to_string(n);
}

std::string human_bytes(uint64_t n) {
  if (n >= (uint64_t(1) << 30)) return fmt::format("{:.2f} GiB", double(n) / double(uint64_t(1) << 30));
  if (n >= (uint64_t(1) << 20)) return fmt::format("{:.2f} MiB", double(n) / double(uint64_t(1) << 20));
  if (n >= (uint64_t(1) << 10)) return fmt::format("{:.2f} KiB", double(n) / 1024.0);
  return fmt::format("{} B", n);
}

template <class T>
std::string or_dash(const std::optional<T>& v) {
  if (!v) return "-";
  if constexpr (std::is_same_v<T, std::string>)
    return *v;
  else
    return fmt::format("{}", *v);
}

}  // namespace

const char* llama_file_type_name(int64_t ftype) {
  // llama.cpp's general.file_type ids (the predominant tensor type of the file).
  switch (ftype) {
    case 0: return "F32";
    case 1: return "F16";
    case 2: return "Q4_0";
    case 3: return "Q4_1";
    case 7: return "Q8_0";
    case 8: return "Q5_0";
    case 9: return "Q5_1";
    case 10: return "Q2_K";
    case 11: return "Q3_K_S";
    case 12: return "Q3_K_M";
    case 13: return "Q3_K_L";
    case 14: return "Q4_K_S";
    case 15: return "Q4_K_M";
    case 16: return "Q5_K_S";
    case 17: return "Q5_K_M";
    case 18: return "Q6_K";
    case 32: return "BF16";
    default: return "unknown";
  }
}

std::string format_gguf_value(const GgufValue& v, size_t max_items) {
  switch (v.type) {
    case GgufType::BOOL: return v.u64 ? "true" : "false";
    case GgufType::FLOAT32:
    case GgufType::FLOAT64: return fmt::format("{:g}", v.f64);
    case GgufType::STRING: return quote(v.str);
    case GgufType::ARRAY: {
      std::string out = "[";
      for (size_t i = 0; i < v.array.size() && i < max_items; ++i) {
        if (i) out += ", ";
        out += format_gguf_value(v.array[i], max_items);
      }
      if (v.array.size() > max_items) out += fmt::format(", ... ({} items)", v.array.size());
      return out + "]";
    }
    default:
      if (v.type == GgufType::UINT64 || v.type == GgufType::UINT32 || v.type == GgufType::UINT16 ||
          v.type == GgufType::UINT8)
        return std::to_string(v.u64);
      return std::to_string(v.i64);
  }
}

ModelInfo build_model_info(const GgufFile& f) {
  ModelInfo info;
  info.path = f.path();
  info.file_size = f.file_size();
  info.gguf_version = f.version();
  info.alignment = f.alignment();
  info.data_offset = f.data_offset();
  info.n_metadata = f.metadata().size();

  info.architecture = f.get_string("general.architecture");
  info.name = f.get_string("general.name");
  info.file_type = f.get_int("general.file_type");
  if (info.architecture && !info.architecture->empty()) {
    const std::string prefix = *info.architecture + ".";
    for (const auto& [key, value] : f.metadata())
      if (key.size() > prefix.size() && key.compare(0, prefix.size(), prefix) == 0)
        info.hparams.emplace_back(key, value);
    info.context_length = f.get_int(prefix + "context_length");
  }

  TokenizerInfo& t = info.tokenizer;
  t.model = f.get_string("tokenizer.ggml.model");
  t.pre = f.get_string("tokenizer.ggml.pre");
  if (const GgufValue* tokens = f.find("tokenizer.ggml.tokens"); tokens && tokens->type == GgufType::ARRAY)
    t.vocab_size = int64_t(tokens->array.size());
  else if (info.architecture)
    t.vocab_size = f.get_int(*info.architecture + ".vocab_size");
  if (const GgufValue* merges = f.find("tokenizer.ggml.merges"); merges && merges->type == GgufType::ARRAY)
    t.n_merges = int64_t(merges->array.size());
  t.bos_id = f.get_int("tokenizer.ggml.bos_token_id");
  t.eos_id = f.get_int("tokenizer.ggml.eos_token_id");
  t.pad_id = f.get_int("tokenizer.ggml.padding_token_id");
  t.unk_id = f.get_int("tokenizer.ggml.unknown_token_id");
  t.add_bos = f.get_bool("tokenizer.ggml.add_bos_token");
  t.add_eos = f.get_bool("tokenizer.ggml.add_eos_token");
  const auto tmpl = f.get_string("tokenizer.chat_template");
  t.has_chat_template = tmpl && !tmpl->empty();

  for (const GgufTensor& tensor : f.tensors()) {
    TensorTypeCount& c = info.by_type[ggml_type_name(tensor.type)];
    ++c.tensors;
    c.elements += tensor.n_elements;
    c.bytes += tensor.nbytes;
    ++info.n_tensors;
    info.n_params += tensor.n_elements;
    info.tensor_bytes += tensor.nbytes;
  }
  return info;
}

std::string format_model_info(const ModelInfo& m) {
  std::string out;
  auto line = [&out](std::string_view label, const std::string& value) {
    out += fmt::format("{:<18}{}\n", std::string(label) + ":", value);
  };
  line("file", fmt::format("{} ({}, {} bytes)", m.path, human_bytes(m.file_size), m.file_size));
  line("GGUF", fmt::format("version {}, alignment {}, data offset {}, {} metadata keys", m.gguf_version,
                           m.alignment, m.data_offset, m.n_metadata));
  line("architecture", or_dash(m.architecture));
  line("name", m.name ? quote(*m.name) : "-");
  if (m.file_type)
    line("file type", fmt::format("{} ({})", *m.file_type, llama_file_type_name(*m.file_type)));
  line("context length", or_dash(m.context_length));
  if (!m.hparams.empty()) {
    out += "hyper-parameters:\n";
    for (const auto& [key, value] : m.hparams)
      out += fmt::format("  {:<44} {}\n", key, format_gguf_value(value));
  }

  const TokenizerInfo& t = m.tokenizer;
  line("tokenizer",
       fmt::format("{} (pre-tokenizer {}), vocab {}{}", or_dash(t.model), or_dash(t.pre),
                   or_dash(t.vocab_size), t.n_merges ? fmt::format(", {} merges", *t.n_merges) : ""));
  line("special tokens", fmt::format("bos {}, eos {}, pad {}, unk {}", or_dash(t.bos_id), or_dash(t.eos_id),
                                     or_dash(t.pad_id), or_dash(t.unk_id)));
  if (t.add_bos || t.add_eos)
    line("adds", fmt::format("bos {}, eos {}", or_dash(t.add_bos), or_dash(t.add_eos)));
  line("chat template", t.has_chat_template ? "yes" : "no");

  std::string types;
  for (const auto& [name, c] : m.by_type)
    types += fmt::format("{}{}: {}", types.empty() ? "" : ", ", name, c.tensors);
  line("tensors", m.n_tensors ? fmt::format("{} ({})", m.n_tensors, types) : "0 (tokenizer-only file)");
  if (m.n_tensors) {
    line("parameters", fmt::format("{} ({})", human_count(m.n_params), m.n_params));
    line("tensor data",
         fmt::format("{}, {:.2f} bits per weight", human_bytes(m.tensor_bytes), m.bits_per_weight()));
  }
  return out;
}

}  // namespace kvserve

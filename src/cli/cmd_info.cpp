// `kvserve info --model FILE [--json]`: architecture, hyper-parameters, tokenizer,
// tensors and file layout of a GGUF file (report built in gguf/model_info).
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/command.h"
#include "gguf/gguf_file.h"
#include "gguf/model_info.h"
#include "kvserve/kv_dtype.h"
#include "model/arch/arch.h"
#include "model/model_config.h"

namespace {

using nlohmann::json;

struct InfoOptions {
  std::string path;
  bool json = false;
};

json value_json(const kvserve::GgufValue& v) {
  using kvserve::GgufType;
  switch (v.type) {
    case GgufType::BOOL: return v.u64 != 0;
    case GgufType::FLOAT32:
    case GgufType::FLOAT64: return std::isfinite(v.f64) ? json(v.f64) : json(nullptr);
    case GgufType::STRING: return v.str;
    case GgufType::ARRAY: {
      json a = json::array();
      for (const auto& e : v.array) a.push_back(value_json(e));
      return a;
    }
    case GgufType::UINT8:
    case GgufType::UINT16:
    case GgufType::UINT32:
    case GgufType::UINT64: return v.u64;
    default: return v.i64;
  }
}

template <class T>
json opt(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

json info_json(const kvserve::ModelInfo& m) {
  json hp = json::object();
  for (const auto& [key, value] : m.hparams) hp[key] = value_json(value);
  json types = json::object();
  for (const auto& [name, c] : m.by_type)
    types[name] = {{"tensors", c.tensors}, {"parameters", c.elements}, {"bytes", c.bytes}};
  const kvserve::TokenizerInfo& t = m.tokenizer;
  return {
      {"file", m.path},
      {"file_size", m.file_size},
      {"gguf_version", m.gguf_version},
      {"alignment", m.alignment},
      {"data_offset", m.data_offset},
      {"metadata_count", m.n_metadata},
      {"architecture", opt(m.architecture)},
      {"name", opt(m.name)},
      {"file_type", opt(m.file_type)},
      {"file_type_name", m.file_type ? json(kvserve::llama_file_type_name(*m.file_type)) : json(nullptr)},
      {"context_length", opt(m.context_length)},
      {"hyperparameters", hp},
      {"tokenizer",
       {{"model", opt(t.model)},
        {"pre", opt(t.pre)},
        {"vocab_size", opt(t.vocab_size)},
        {"merges", opt(t.n_merges)},
        {"bos_token_id", opt(t.bos_id)},
        {"eos_token_id", opt(t.eos_id)},
        {"padding_token_id", opt(t.pad_id)},
        {"unknown_token_id", opt(t.unk_id)},
        {"add_bos_token", opt(t.add_bos)},
        {"add_eos_token", opt(t.add_eos)},
        {"has_chat_template", t.has_chat_template}}},
      {"tensor_count", m.n_tensors},
      {"parameter_count", m.n_params},
      {"tensor_bytes", m.tensor_bytes},
      {"bits_per_weight", m.bits_per_weight()},
      {"tensor_types", types},
  };
}

// How kvserve runs the file, or why it cannot.
json runtime_json(const kvserve::Result<kvserve::ModelConfig>& c) {
  if (!c) return {{"error", c.error().message}};
  json layers = json::array();
  for (const auto& a : c->layer_attention)
    layers.push_back({{"window", a.window}, {"rope_table", a.rope_table}});
  // KV-cache bytes per token for each dtype (16-token blocks, int8 / fp8 scales included).
  json kv_bytes = json::object();
  for (auto t : {kvserve::KvDtype::F32, kvserve::KvDtype::F16, kvserve::KvDtype::BF16, kvserve::KvDtype::Int8,
                 kvserve::KvDtype::Fp8})
    kv_bytes[kvserve::kv_dtype_name(t)] = 2 * int64_t(c->n_layers) * c->n_kv_heads *
                                          kvserve::kv_head_elems(t, 16, c->head_dim) *
                                          int64_t(kvserve::kv_dtype_size(t)) / 16;
  return {{"architecture", c->arch_name},
          {"kv_cache_bytes_per_token", kv_bytes},
          {"families", std::string(c->arch->families)},
          {"head_dim", c->head_dim},
          {"sliding_window", c->sliding_window},
          {"rope_freq_base", c->rope_freq_base},
          {"rope_freq_base_local", c->rope_freq_base_local},
          {"attention_scale", c->attn_scale},
          {"embedding_scale", c->embed_scale},
          {"layers", layers}};
}

int run_info(const InfoOptions& o) {
  auto file = kvserve::GgufFile::open(o.path);
  if (!file) {
    std::fprintf(stderr, "kvserve info: %s\n", file.error().message.c_str());
    return 1;
  }
  const kvserve::ModelInfo info = kvserve::build_model_info(**file);
  const auto config = kvserve::ModelConfig::from_gguf(**file);
  if (o.json) {
    json j = info_json(info);
    j["kvserve"] = runtime_json(config);
    // Metadata strings are arbitrary bytes: invalid UTF-8 is replaced on output.
    std::printf("%s\n", j.dump(2, ' ', false, json::error_handler_t::replace).c_str());
  } else {
    std::fputs(kvserve::format_model_info(info).c_str(), stdout);
    std::printf("\nkvserve:\n");
    if (!config) {
      std::printf("  cannot run this file: %s\n", config.error().message.c_str());
    } else {
      const std::string s = config->summary();
      for (size_t at = 0, nl; at < s.size(); at = nl + 1) {
        nl = s.find('\n', at);
        std::printf("  %s\n", s.substr(at, nl - at).c_str());
      }
      std::string kv = "  KV cache per token:";
      const json runtime = runtime_json(config);
      for (const auto& [name, bytes] : runtime["kv_cache_bytes_per_token"].items())
        kv += " " + name + " " + std::to_string(bytes.get<int64_t>()) + " B,";
      kv.back() = '\n';
      std::fputs(kv.c_str(), stdout);
    }
  }
  return 0;
}

const kvserve::cli::Registrar reg{"info", "Print a GGUF model's architecture, hyper-parameters and tensors",
                                  [](CLI::App& app) {
                                    auto o = std::make_shared<InfoOptions>();
                                    app.add_option("-m,--model", o->path, "GGUF file")->required();
                                    app.add_flag("--json", o->json, "Print one JSON object");
                                    return [o] { return run_info(*o); };
                                  }};

}  // namespace

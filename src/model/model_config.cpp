#include "model/model_config.h"

#include <fmt/format.h>

#include <optional>

namespace kvserve {
namespace {

// Upper bound on any single size: far above real models, low enough that products of
// a few of them cannot overflow int64.
constexpr int64_t kMaxDim = 1 << 22;

Result<int> read_size(const GgufFile& f, const std::string& key, std::optional<int> fallback) {
  const GgufValue* v = f.find(key);
  if (!v) {
    if (fallback) return *fallback;
    return Error{fmt::format("missing metadata key '{}'", key)};
  }
  const auto i = v->as_int();
  if (!i) return Error{fmt::format("metadata key '{}' is not a single integer", key)};
  if (*i <= 0 || *i > kMaxDim) return Error{fmt::format("metadata key '{}' = {} is out of range", key, *i)};
  return int(*i);
}

Result<float> read_float(const GgufFile& f, const std::string& key, std::optional<float> fallback) {
  const GgufValue* v = f.find(key);
  if (!v) {
    if (fallback) return *fallback;
    return Error{fmt::format("missing metadata key '{}'", key)};
  }
  const auto x = v->as_float();
  if (!x) return Error{fmt::format("metadata key '{}' is not a number", key)};
  return float(*x);
}

// Assigns a Result's value to target, or returns its error.
#define KV_CAT2(a, b) a##b
#define KV_CAT(a, b) KV_CAT2(a, b)
#define KV_TRY(target, expr)                                      \
  auto KV_CAT(r_, __LINE__) = (expr);                             \
  if (!KV_CAT(r_, __LINE__)) return KV_CAT(r_, __LINE__).error(); \
  target = *KV_CAT(r_, __LINE__);

Status read_rope_scaling(const GgufFile& f, const std::string& a, ModelConfig& c) {
  const std::string type = f.get_string(a + ".rope.scaling.type").value_or("none");
  float factor = 1.0f;
  KV_TRY(factor, read_float(f, a + ".rope.scaling.factor", 1.0f));
  if (const auto linear = f.get_float(a + ".rope.scale_linear"); linear && type == "none") {
    // Older files name linear scaling this way.
    c.rope_scaling.type = RopeScaling::Type::Linear;
    c.rope_scaling.factor = float(*linear);
  } else if (type == "none") {
    c.rope_scaling.type = RopeScaling::Type::None;
  } else if (type == "linear") {
    c.rope_scaling.type = RopeScaling::Type::Linear;
    c.rope_scaling.factor = factor;
  } else if (type == "llama3") {
    c.rope_scaling.type = RopeScaling::Type::Llama3;
    c.rope_scaling.factor = factor;
    KV_TRY(c.rope_scaling.low_freq_factor, read_float(f, a + ".rope.scaling.low_freq_factor", 1.0f));
    KV_TRY(c.rope_scaling.high_freq_factor, read_float(f, a + ".rope.scaling.high_freq_factor", 4.0f));
    KV_TRY(c.rope_scaling.original_context, read_size(f, a + ".rope.scaling.original_context_length", 8192));
    if (!(c.rope_scaling.high_freq_factor > c.rope_scaling.low_freq_factor))
      return Error{"rope.scaling: high_freq_factor must exceed low_freq_factor"};
  } else {
    return Error{fmt::format("unsupported RoPE scaling type '{}' (supported: none, linear, llama3)", type)};
  }
  if (!(c.rope_scaling.factor > 0.0f)) return Error{fmt::format("{}.rope.scaling.factor must be > 0", a)};
  return ok_status();
}

}  // namespace

Result<ModelConfig> ModelConfig::from_gguf(const GgufFile& f) {
  ModelConfig c;
  const auto arch = f.get_string("general.architecture");
  if (!arch) return Error{"missing metadata key 'general.architecture'"};
  c.arch_name = *arch;
  if (*arch == "llama") {
    c.arch = Arch::Llama;
    c.rope_style = RopeStyle::Normal;
  } else if (*arch == "qwen2") {
    c.arch = Arch::Qwen2;
    c.rope_style = RopeStyle::Neox;
    c.qkv_bias = true;
  } else if (*arch == "qwen3") {
    c.arch = Arch::Qwen3;
    c.rope_style = RopeStyle::Neox;
    c.qk_norm = true;
  } else {
    return Error{fmt::format("unsupported architecture '{}' (supported: llama, qwen2, qwen3)", *arch)};
  }
  const std::string& a = *arch;

  KV_TRY(c.dim, read_size(f, a + ".embedding_length", std::nullopt));
  KV_TRY(c.n_layers, read_size(f, a + ".block_count", std::nullopt));
  KV_TRY(c.ffn_dim, read_size(f, a + ".feed_forward_length", std::nullopt));
  KV_TRY(c.n_heads, read_size(f, a + ".attention.head_count", std::nullopt));
  KV_TRY(c.n_kv_heads, read_size(f, a + ".attention.head_count_kv", c.n_heads));
  KV_TRY(c.n_ctx_train, read_size(f, a + ".context_length", 2048));
  KV_TRY(c.norm_eps, read_float(f, a + ".attention.layer_norm_rms_epsilon", std::nullopt));
  if (!(c.norm_eps > 0.0f && c.norm_eps < 1.0f))
    return Error{fmt::format("{}.attention.layer_norm_rms_epsilon = {} is out of range", a, c.norm_eps)};

  if (c.n_heads % c.n_kv_heads != 0)
    return Error{fmt::format("head_count {} is not a multiple of head_count_kv {}", c.n_heads, c.n_kv_heads)};
  if (!f.find(a + ".attention.key_length") && c.dim % c.n_heads != 0)
    return Error{fmt::format("embedding_length {} is not divisible by head_count {}", c.dim, c.n_heads)};
  KV_TRY(c.head_dim, read_size(f, a + ".attention.key_length", c.dim / c.n_heads));
  int value_length = 0;
  KV_TRY(value_length, read_size(f, a + ".attention.value_length", c.head_dim));
  if (value_length != c.head_dim)
    return Error{
        fmt::format("attention.value_length {} != key_length {} is not supported", value_length, c.head_dim)};
  KV_TRY(c.n_rot, read_size(f, a + ".rope.dimension_count", c.head_dim));
  if (c.n_rot > c.head_dim || c.n_rot % 2 != 0)
    return Error{fmt::format("rope.dimension_count {} must be even and <= head dim {}", c.n_rot, c.head_dim)};
  KV_TRY(c.rope_freq_base, read_float(f, a + ".rope.freq_base", 10000.0f));
  if (!(c.rope_freq_base > 1.0f)) return Error{fmt::format("{}.rope.freq_base must be > 1", a)};
  if (auto st = read_rope_scaling(f, a, c); !st) return st.error();

  // Vocabulary size from the embedding matrix, cross-checked with the metadata.
  const GgufTensor* emb = f.tensor("token_embd.weight");
  if (!emb) return Error{"missing tensor 'token_embd.weight'"};
  if (emb->shape.size() != 2 || emb->ne(0) != c.dim || emb->ne(1) <= 0 || emb->ne(1) > kMaxDim)
    return Error{fmt::format("tensor 'token_embd.weight' has shape [{}, {}], expected [{}, n_vocab]",
                             emb->ne(0), emb->ne(1), c.dim)};
  c.n_vocab = int(emb->ne(1));
  if (const auto vs = f.get_int(a + ".vocab_size"); vs && *vs != c.n_vocab)
    return Error{fmt::format("{}.vocab_size {} != token_embd.weight rows {}", a, *vs, c.n_vocab)};
  c.tied_output = f.tensor("output.weight") == nullptr;
  return c;
}

}  // namespace kvserve

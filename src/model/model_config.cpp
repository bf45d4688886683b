#include "model/model_config.h"

#include <fmt/format.h>

#include <cmath>
#include <optional>

#include "core/try.h"
#include "model/arch/arch.h"
#include "model/gguf_metadata.h"

namespace kvserve {
namespace {

Status read_rope_scaling(const GgufFile& f, const std::string& a, ModelConfig& c) {
  const std::string type = f.get_string(a + ".rope.scaling.type").value_or("none");
  float factor = 1.0f;
  KVSERVE_TRY(factor, meta_float(f, a + ".rope.scaling.factor", 1.0f));
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
    KVSERVE_TRY(c.rope_scaling.low_freq_factor, meta_float(f, a + ".rope.scaling.low_freq_factor", 1.0f));
    KVSERVE_TRY(c.rope_scaling.high_freq_factor, meta_float(f, a + ".rope.scaling.high_freq_factor", 4.0f));
    KVSERVE_TRY(c.rope_scaling.original_context,
                meta_size(f, a + ".rope.scaling.original_context_length", 8192));
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
  c.arch = find_arch(*arch);
  if (!c.arch)
    return Error{fmt::format("unsupported architecture '{}' (supported: {})", *arch, supported_arch_names())};
  const std::string& a = *arch;

  KVSERVE_TRY(c.dim, meta_size(f, a + ".embedding_length", std::nullopt));
  KVSERVE_TRY(c.n_layers, meta_size(f, a + ".block_count", std::nullopt));
  KVSERVE_TRY(c.ffn_dim, meta_size(f, a + ".feed_forward_length", std::nullopt));
  KVSERVE_TRY(c.n_heads, meta_size(f, a + ".attention.head_count", std::nullopt));
  KVSERVE_TRY(c.n_kv_heads, meta_size(f, a + ".attention.head_count_kv", c.n_heads));
  KVSERVE_TRY(c.n_ctx_train, meta_size(f, a + ".context_length", 2048));
  KVSERVE_TRY(c.norm_eps, meta_float(f, a + ".attention.layer_norm_rms_epsilon", std::nullopt));
  if (!(c.norm_eps > 0.0f && c.norm_eps < 1.0f))
    return Error{fmt::format("{}.attention.layer_norm_rms_epsilon = {} is out of range", a, c.norm_eps)};

  if (c.n_heads % c.n_kv_heads != 0)
    return Error{fmt::format("head_count {} is not a multiple of head_count_kv {}", c.n_heads, c.n_kv_heads)};
  if (!f.find(a + ".attention.key_length") && c.dim % c.n_heads != 0)
    return Error{fmt::format("embedding_length {} is not divisible by head_count {}", c.dim, c.n_heads)};
  KVSERVE_TRY(c.head_dim, meta_size(f, a + ".attention.key_length", c.dim / c.n_heads));
  int value_length = 0;
  KVSERVE_TRY(value_length, meta_size(f, a + ".attention.value_length", c.head_dim));
  if (value_length != c.head_dim)
    return Error{
        fmt::format("attention.value_length {} != key_length {} is not supported", value_length, c.head_dim)};
  KVSERVE_TRY(c.n_rot, meta_size(f, a + ".rope.dimension_count", c.head_dim));
  if (c.n_rot > c.head_dim || c.n_rot % 2 != 0)
    return Error{fmt::format("rope.dimension_count {} must be even and <= head dim {}", c.n_rot, c.head_dim)};
  KVSERVE_TRY(c.rope_freq_base, meta_float(f, a + ".rope.freq_base", 10000.0f));
  if (!(c.rope_freq_base > 1.0f)) return Error{fmt::format("{}.rope.freq_base must be > 1", a)};
  if (auto st = read_rope_scaling(f, a, c); !st) return st.error();

  KVSERVE_TRY(c.n_expert, meta_optional_size(f, a + ".expert_count"));
  if (c.n_expert > 0) {
    KVSERVE_TRY(c.n_expert_used, meta_size(f, a + ".expert_used_count", std::nullopt));
    if (c.n_expert_used > c.n_expert)
      return Error{
          fmt::format("{}.expert_used_count {} exceeds expert_count {}", a, c.n_expert_used, c.n_expert)};
    KVSERVE_TRY(c.expert_ffn_dim, meta_size(f, a + ".expert_feed_forward_length", c.ffn_dim));
  }

  // Vocabulary size from the embedding matrix, cross-checked with the metadata.
  const GgufTensor* emb = f.tensor("token_embd.weight");
  if (!emb) return Error{"missing tensor 'token_embd.weight'"};
  if (emb->shape.size() != 2 || emb->ne(0) != c.dim || emb->ne(1) <= 0 || emb->ne(1) > kMaxModelDim)
    return Error{fmt::format("tensor 'token_embd.weight' has shape [{}, {}], expected [{}, n_vocab]",
                             emb->ne(0), emb->ne(1), c.dim)};
  c.n_vocab = int(emb->ne(1));
  if (const auto vs = f.get_int(a + ".vocab_size"); vs && *vs != c.n_vocab)
    return Error{fmt::format("{}.vocab_size {} != token_embd.weight rows {}", a, *vs, c.n_vocab)};
  c.tied_output = f.tensor("output.weight") == nullptr;
  c.layer_attention.assign(size_t(c.n_layers), LayerAttention{});
  if (auto st = c.arch->configure(f, c); !st) return st.error();
  if (c.attn_scale == 0.0f) c.attn_scale = 1.0f / std::sqrt(float(c.head_dim));
  return c;
}

std::string ModelConfig::summary() const {
  std::string s = fmt::format("runs as: {} ({})\n", arch_name, arch->families);
  s += fmt::format("shape: {} layers, dim {}, {} heads ({} KV) of {}, ffn {}, vocab {}\n", n_layers, dim,
                   n_heads, n_kv_heads, head_dim, ffn_dim, n_vocab);
  int local = 0;
  for (const LayerAttention& a : layer_attention) local += a.window > 0;
  if (local == 0)
    s += "attention: full causal on every layer\n";
  else if (local == n_layers)
    s += fmt::format("attention: sliding window of {} keys on every layer\n", sliding_window);
  else
    s += fmt::format("attention: sliding window of {} keys on {} of {} layers (every {}th layer global)\n",
                     sliding_window, local, n_layers, sliding_window_pattern);
  s += fmt::format("rotary: {} on {} dims, base {:g}{}", rope_style == RopeStyle::Neox ? "neox" : "normal",
                   n_rot, rope_freq_base, rope_scaling.type == RopeScaling::Type::None ? "" : " (scaled)");
  if (rope_freq_base_local > 0.0f) s += fmt::format(", local layers base {:g}", rope_freq_base_local);
  s += "\n";
  if (embed_scale != 1.0f) s += fmt::format("embeddings scaled by {:g}\n", embed_scale);
  if (n_expert > 0)
    s += fmt::format("mixture of experts: {} of {} experts per token, each {} wide\n", n_expert_used,
                     n_expert, expert_ffn_dim);
  return s;
}

}  // namespace kvserve

// gemma3: Gemma 3 (text). Local layers attend within a sliding window and use their own
// rotary base (10 000); every `sliding_window_pattern`-th layer (default 6: layers 5,
// 11, ...) is global, with the file's base and scaling. Q and K heads are RMS-normed
// before the half-split rotary, queries are scaled by 1/sqrt(head_dim) (the 27B:
// 1/sqrt(dim / n_heads)), the attention and MLP outputs are RMS-normed before their
// residual adds, the MLP is GeGLU (tanh GELU), and embeddings are scaled by sqrt(dim).
// Norm weights in GGUF already include Gemma's +1.
#include <cmath>

#include "core/try.h"
#include "model/arch/arch.h"
#include "model/arch/common_tensors.h"
#include "model/gguf_metadata.h"
#include "model/model_config.h"
#include "model/weight_binder.h"

namespace kvserve {
namespace {

constexpr float kLocalRopeBase = 10000.0f;

Status configure(const GgufFile& f, ModelConfig& c) {
  c.rope_style = RopeStyle::Neox;
  KVSERVE_TRY(c.sliding_window, meta_size(f, "gemma3.attention.sliding_window", std::nullopt));
  KVSERVE_TRY(c.sliding_window_pattern, meta_size(f, "gemma3.attention.sliding_window_pattern", 6));
  c.rope_freq_base_local = kLocalRopeBase;
  c.embed_scale = std::sqrt(float(c.dim));
  const bool is_27b = c.n_layers == 62;  // as Google's reference configuration
  c.attn_scale = 1.0f / std::sqrt(float(is_27b ? c.dim / c.n_heads : c.head_dim));
  for (int l = 0; l < c.n_layers; ++l) {
    const bool local = l % c.sliding_window_pattern < c.sliding_window_pattern - 1;
    c.layer_attention[size_t(l)] = local ? LayerAttention{c.sliding_window, 1} : LayerAttention{0, 0};
  }
  return ok_status();
}

Status bind_layer(const WeightBinder& w, const ModelConfig& c, int layer, LayerWeights& L) {
  const std::string p = "blk." + std::to_string(layer) + ".";
  if (auto st = bind_attention(w, c, p, L); !st) return st;
  if (auto st = bind_qk_norm(w, c, p, L); !st) return st;
  KVSERVE_TRY(L.attn_post_norm, w.vector(p + "post_attention_norm.weight", c.dim));
  if (auto st = bind_gated_mlp(w, c, p, L); !st) return st;
  KVSERVE_TRY(L.ffn_post_norm, w.vector(p + "post_ffw_norm.weight", c.dim));
  return ok_status();
}

void forward_layer(LayerBlocks& b, int layer, const LayerWeights& L) {
  b.qkv(L);
  b.prepare_qk(L, {.qk_norm = true});
  b.attention(layer, L);
  b.attention_out(L.wo, L.attn_post_norm);
  b.mlp(L, Activation::GeluTanh, L.ffn_post_norm);
}

}  // namespace

extern const ArchDef kArchGemma3{"gemma3", "Gemma 3 (text)", configure, bind_layer, forward_layer};

}  // namespace kvserve

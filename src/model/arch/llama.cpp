// llama: Llama 2/3, TinyLlama, SmolLM, Mistral, Mixtral. Pre-norm layers of grouped-query
// attention with adjacent-pair ("normal") rotary and a SwiGLU MLP, or (Mixtral, files
// with llama.expert_count) a mixture of SwiGLU experts. Mistral's files may carry a
// sliding window, which then applies to every layer.
#include "core/try.h"
#include "model/arch/arch.h"
#include "model/arch/common_tensors.h"
#include "model/gguf_metadata.h"
#include "model/model_config.h"
#include "model/weight_binder.h"

namespace kvserve {
namespace {

Status configure(const GgufFile& f, ModelConfig& c) {
  c.rope_style = RopeStyle::Normal;
  KVSERVE_TRY(c.sliding_window, meta_optional_size(f, "llama.attention.sliding_window"));
  for (LayerAttention& a : c.layer_attention) a.window = c.sliding_window;
  return ok_status();
}

Status bind_layer(const WeightBinder& w, const ModelConfig& c, int layer, LayerWeights& L) {
  const std::string p = "blk." + std::to_string(layer) + ".";
  if (auto st = bind_attention(w, c, p, L); !st) return st;
  return c.n_expert > 0 ? bind_moe(w, c, p, L) : bind_gated_mlp(w, c, p, L);
}

void forward_layer(LayerBlocks& b, int layer, const LayerWeights& L) {
  b.qkv(L);
  b.prepare_qk(L, {});
  b.attention(layer, L);
  b.attention_out(L.wo, nullptr);
  if (L.is_moe())
    b.moe(L, Activation::Silu, nullptr);
  else
    b.mlp(L, Activation::Silu, nullptr);
}

}  // namespace

extern const ArchDef kArchLlama{"llama", "Llama 2/3, TinyLlama, SmolLM, Mistral, Mixtral", configure,
                                bind_layer, forward_layer};

}  // namespace kvserve

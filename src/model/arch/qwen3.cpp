// qwen3: Qwen3 (dense). As llama, plus an RMSNorm of each head of Q and K before the
// half-split (NeoX) rotary; head_dim may differ from dim / n_heads.
#include "model/arch/arch.h"
#include "model/arch/common_tensors.h"
#include "model/model_config.h"
#include "model/weight_binder.h"

namespace kvserve {
namespace {

Status configure(const GgufFile&, ModelConfig& c) {
  c.rope_style = RopeStyle::Neox;
  return ok_status();
}

Status bind_layer(const WeightBinder& w, const ModelConfig& c, int layer, LayerWeights& L) {
  const std::string p = "blk." + std::to_string(layer) + ".";
  if (auto st = bind_attention(w, c, p, L); !st) return st;
  if (auto st = bind_qk_norm(w, c, p, L); !st) return st;
  return bind_gated_mlp(w, c, p, L);
}

void forward_layer(LayerBlocks& b, int layer, const LayerWeights& L) {
  b.qkv(L);
  b.prepare_qk(L, {.qk_norm = true});
  b.attention(layer, L);
  b.attention_out(L.wo, nullptr);
  b.mlp(L, Activation::Silu, nullptr);
}

}  // namespace

extern const ArchDef kArchQwen3{"qwen3", "Qwen3", configure, bind_layer, forward_layer};

}  // namespace kvserve

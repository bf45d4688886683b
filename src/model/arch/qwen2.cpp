// qwen2: Qwen2 / Qwen2.5. As llama, plus biases on Q, K and V and half-split (NeoX) rotary.
#include "core/try.h"
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
  KVSERVE_TRY(L.bq, w.vector(p + "attn_q.bias", c.q_dim()));
  KVSERVE_TRY(L.bk, w.vector(p + "attn_k.bias", c.kv_dim()));
  KVSERVE_TRY(L.bv, w.vector(p + "attn_v.bias", c.kv_dim()));
  return bind_gated_mlp(w, c, p, L);
}

void forward_layer(LayerBlocks& b, int layer, const LayerWeights& L) {
  b.qkv(L);
  b.prepare_qk(L, {.bias = true});
  b.attention(layer, L);
  b.attention_out(L.wo, nullptr);
  b.mlp(L, Activation::Silu, nullptr);
}

}  // namespace

extern const ArchDef kArchQwen2{"qwen2", "Qwen2, Qwen2.5", configure, bind_layer, forward_layer};

}  // namespace kvserve

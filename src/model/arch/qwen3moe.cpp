// qwen3moe: Qwen3 mixture-of-experts (Qwen3-30B-A3B, ...). Qwen3's attention (per-head
// Q/K RMSNorm, NeoX rotary) with a mixture of SwiGLU experts in every layer; the top-k
// router weights are renormalized (norm_topk_prob).
#include "model/arch/arch.h"
#include "model/arch/common_tensors.h"
#include "model/model_config.h"
#include "model/weight_binder.h"

namespace kvserve {
namespace {

Status configure(const GgufFile&, ModelConfig& c) {
  c.rope_style = RopeStyle::Neox;
  if (c.n_expert == 0) return Error{"missing metadata key 'qwen3moe.expert_count'"};
  return ok_status();
}

Status bind_layer(const WeightBinder& w, const ModelConfig& c, int layer, LayerWeights& L) {
  const std::string p = "blk." + std::to_string(layer) + ".";
  if (auto st = bind_attention(w, c, p, L); !st) return st;
  if (auto st = bind_qk_norm(w, c, p, L); !st) return st;
  return bind_moe(w, c, p, L);
}

void forward_layer(LayerBlocks& b, int layer, const LayerWeights& L) {
  b.qkv(L);
  b.prepare_qk(L, {.qk_norm = true});
  b.attention(layer, L);
  b.attention_out(L.wo, nullptr);
  b.moe(L, Activation::Silu, nullptr);
}

}  // namespace

extern const ArchDef kArchQwen3Moe{"qwen3moe", "Qwen3 mixture of experts", configure, bind_layer,
                                   forward_layer};

}  // namespace kvserve

// phi3: Phi-3 / Phi-3.5 (mini, medium; 4k context). Llama's layer with Q, K and V fused
// in one matrix (attn_qkv) and gate and up fused in another (ffn_up: gate rows, then up
// rows), half-split (NeoX) rotary. Files for 128k contexts carry LongRoPE factors
// (rope_factors_long/short), which are refused by name. Their sliding window is not
// applied, as llama.cpp does not (the converters do not write it reliably).
#include "core/try.h"
#include "model/arch/arch.h"
#include "model/model_config.h"
#include "model/weight_binder.h"

namespace kvserve {
namespace {

Status configure(const GgufFile&, ModelConfig& c) {
  c.rope_style = RopeStyle::Neox;
  return ok_status();
}

Status bind_layer(const WeightBinder& w, const ModelConfig& c, int layer, LayerWeights& L) {
  if (layer == 0 && (w.has("rope_factors_long.weight") || w.has("rope_factors_short.weight")))
    return Error{"phi3 LongRoPE (rope_factors_long/short, 128k-context files) is not supported"};
  const std::string p = "blk." + std::to_string(layer) + ".";
  KVSERVE_TRY(L.attn_norm, w.vector(p + "attn_norm.weight", c.dim));
  KVSERVE_TRY(L.wqkv, w.matrix(p + "attn_qkv.weight", c.dim, c.q_dim() + 2 * c.kv_dim()));
  KVSERVE_TRY(L.wo, w.matrix(p + "attn_output.weight", c.q_dim(), c.dim));
  KVSERVE_TRY(L.ffn_norm, w.vector(p + "ffn_norm.weight", c.dim));
  KVSERVE_TRY(L.w_gate_up, w.matrix(p + "ffn_up.weight", c.dim, 2 * c.ffn_dim));
  KVSERVE_TRY(L.w_down, w.matrix(p + "ffn_down.weight", c.ffn_dim, c.dim));
  return ok_status();
}

void forward_layer(LayerBlocks& b, int layer, const LayerWeights& L) {
  b.qkv_fused(L);
  b.prepare_qk(L, {});
  b.attention(layer, L);
  b.attention_out(L.wo, nullptr);
  b.mlp_fused(L, Activation::Silu, nullptr);
}

}  // namespace

extern const ArchDef kArchPhi3{"phi3", "Phi-3, Phi-3.5 (4k context)", configure, bind_layer, forward_layer};

}  // namespace kvserve

// Tensor groups several architectures share, bound under GGUF's names for layer `p`
// ("blk.N."): errors name the tensor.
#pragma once

#include <string>

#include "core/result.h"
#include "model/layer_weights.h"

namespace kvserve {

class WeightBinder;
struct ModelConfig;

// attn_norm, attn_q, attn_k, attn_v, attn_output.
Status bind_attention(const WeightBinder& w, const ModelConfig& c, const std::string& p, LayerWeights& L);
// attn_q_norm, attn_k_norm ([head_dim] each).
Status bind_qk_norm(const WeightBinder& w, const ModelConfig& c, const std::string& p, LayerWeights& L);
// ffn_norm, ffn_gate, ffn_up, ffn_down.
Status bind_gated_mlp(const WeightBinder& w, const ModelConfig& c, const std::string& p, LayerWeights& L);
// ffn_norm, the router ffn_gate_inp and the experts ffn_gate_exps, ffn_up_exps,
// ffn_down_exps (one 3-D tensor each; files with one tensor per expert are refused).
Status bind_moe(const WeightBinder& w, const ModelConfig& c, const std::string& p, LayerWeights& L);

}  // namespace kvserve

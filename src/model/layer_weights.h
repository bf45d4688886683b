// One decoder layer's weights and attention settings, as an architecture binds them
// (src/model/arch/). Absent optional tensors are null; the architecture's layer function
// decides which blocks use which, so no shared code branches on them.
#pragma once

#include <vector>

#include "kernels/cpu/matmul.h"

namespace kvserve {

struct LayerWeights {
  // Attention.
  const float* attn_norm = nullptr;       // [dim]
  WeightView wq, wk, wv, wo;              // [dim -> q_dim], [dim -> kv_dim] x2, [q_dim -> dim]
  WeightView wqkv;                        // [dim -> q_dim + 2 kv_dim]: q, k, v fused (phi3)
  const float* bq = nullptr;              // [q_dim]  Q/K/V biases (qwen2)
  const float* bk = nullptr;              // [kv_dim]
  const float* bv = nullptr;              // [kv_dim]
  const float* q_norm = nullptr;          // [head_dim] per-head RMSNorm of q and k (qwen3, gemma3)
  const float* k_norm = nullptr;          // [head_dim]
  const float* attn_post_norm = nullptr;  // [dim] RMSNorm of the attention output (gemma3)
  int window = 0;                         // ModelConfig::layer_attention's sliding window in keys
  int rope_table = 0;                     // and rotary table (Model::rope_table)

  // Feed-forward.
  const float* ffn_norm = nullptr;       // [dim]
  WeightView w_gate, w_up, w_down;       // [dim -> ffn] x2, [ffn -> dim]
  WeightView w_gate_up;                  // [dim -> 2 ffn]: gate then up, fused (phi3)
  const float* ffn_post_norm = nullptr;  // [dim] RMSNorm of the MLP output (gemma3)

  // Mixture of experts: the router and, per expert, its gate, up and down matrices.
  WeightView w_router;                             // [dim -> n_expert]
  std::vector<WeightView> expert_gate, expert_up;  // [n_expert] x [dim -> expert_ffn]
  std::vector<WeightView> expert_down;             // [n_expert] x [expert_ffn -> dim]
  bool is_moe() const { return !expert_down.empty(); }
};

}  // namespace kvserve

#include "model/arch/common_tensors.h"

#include <fmt/format.h>

#include "core/try.h"
#include "model/model_config.h"
#include "model/weight_binder.h"

namespace kvserve {

Status bind_attention(const WeightBinder& w, const ModelConfig& c, const std::string& p, LayerWeights& L) {
  KVSERVE_TRY(L.attn_norm, w.vector(p + "attn_norm.weight", c.dim));
  KVSERVE_TRY(L.wq, w.matrix(p + "attn_q.weight", c.dim, c.q_dim()));
  KVSERVE_TRY(L.wk, w.matrix(p + "attn_k.weight", c.dim, c.kv_dim()));
  KVSERVE_TRY(L.wv, w.matrix(p + "attn_v.weight", c.dim, c.kv_dim()));
  KVSERVE_TRY(L.wo, w.matrix(p + "attn_output.weight", c.q_dim(), c.dim));
  return ok_status();
}

Status bind_qk_norm(const WeightBinder& w, const ModelConfig& c, const std::string& p, LayerWeights& L) {
  KVSERVE_TRY(L.q_norm, w.vector(p + "attn_q_norm.weight", c.head_dim));
  KVSERVE_TRY(L.k_norm, w.vector(p + "attn_k_norm.weight", c.head_dim));
  return ok_status();
}

Status bind_gated_mlp(const WeightBinder& w, const ModelConfig& c, const std::string& p, LayerWeights& L) {
  KVSERVE_TRY(L.ffn_norm, w.vector(p + "ffn_norm.weight", c.dim));
  KVSERVE_TRY(L.w_gate, w.matrix(p + "ffn_gate.weight", c.dim, c.ffn_dim));
  KVSERVE_TRY(L.w_up, w.matrix(p + "ffn_up.weight", c.dim, c.ffn_dim));
  KVSERVE_TRY(L.w_down, w.matrix(p + "ffn_down.weight", c.ffn_dim, c.dim));
  return ok_status();
}

Status bind_moe(const WeightBinder& w, const ModelConfig& c, const std::string& p, LayerWeights& L) {
  if (w.has(p + "ffn_gate.0.weight"))
    return Error{
        fmt::format("tensor '{}ffn_gate.0.weight': experts stored one tensor each (an old conversion) "
                    "are not supported; convert the model again",
                    p)};
  KVSERVE_TRY(L.ffn_norm, w.vector(p + "ffn_norm.weight", c.dim));
  KVSERVE_TRY(L.w_router, w.matrix(p + "ffn_gate_inp.weight", c.dim, c.n_expert));
  KVSERVE_TRY(L.expert_gate,
              w.expert_matrices(p + "ffn_gate_exps.weight", c.dim, c.expert_ffn_dim, c.n_expert));
  KVSERVE_TRY(L.expert_up, w.expert_matrices(p + "ffn_up_exps.weight", c.dim, c.expert_ffn_dim, c.n_expert));
  KVSERVE_TRY(L.expert_down,
              w.expert_matrices(p + "ffn_down_exps.weight", c.expert_ffn_dim, c.dim, c.n_expert));
  return ok_status();
}

}  // namespace kvserve

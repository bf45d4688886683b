// A loaded model: hyper-parameters plus weight views into the memory-mapped GGUF file.
// Nothing is inflated at load (some matrices are repacked into a same-size layout, see
// matmul_pack.h); matmul dequantizes blocks on the fly, and the token embedding
// dequantizes one row per token (from the packed copy when a tied output was packed).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/result.h"
#include "gguf/gguf_file.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_pack.h"
#include "model/model_config.h"

namespace kvserve {

struct LayerWeights {
  const float* attn_norm = nullptr;  // [dim]
  WeightView wq, wk, wv, wo;         // [dim -> q_dim], [dim -> kv_dim] x2, [q_dim -> dim]
  const float* bq = nullptr;         // [q_dim]  (qwen2)
  const float* bk = nullptr;         // [kv_dim] (qwen2)
  const float* bv = nullptr;         // [kv_dim] (qwen2)
  const float* q_norm = nullptr;     // [head_dim] (qwen3)
  const float* k_norm = nullptr;     // [head_dim] (qwen3)
  const float* ffn_norm = nullptr;   // [dim]
  WeightView w_gate, w_up, w_down;   // [dim -> ffn] x2, [ffn -> dim]
};

class Model {
 public:
  static Result<std::unique_ptr<Model>> load(const std::string& path);
  // Builds a model over an already opened file (tests, tools).
  static Result<std::unique_ptr<Model>> from_gguf(std::unique_ptr<GgufFile> file);

  const ModelConfig& config() const { return config_; }
  const GgufFile& gguf() const { return *file_; }
  const LayerWeights& layer(int i) const { return layers_[size_t(i)]; }
  // .packed is set when the tied output was packed: then embed() reads rows from it.
  const WeightView& token_embd() const { return token_embd_; }
  const WeightView& output() const { return output_; }  // token_embd when tied
  const float* output_norm() const { return output_norm_; }
  // RoPE inverse frequencies [n_rot / 2], scaling and rope_freqs folded in.
  const std::vector<float>& rope_inv_freq() const { return rope_inv_freq_; }

  // out: [dim], the embedding of `token` (0 <= token < n_vocab, asserted).
  void embed(int32_t token, float* out) const;

 private:
  Model() = default;
  Status bind_weights();

  std::unique_ptr<GgufFile> file_;
  ModelConfig config_;
  std::vector<LayerWeights> layers_;
  WeightView token_embd_;
  WeightView output_;
  const float* output_norm_ = nullptr;
  std::vector<float> rope_inv_freq_;
  PackedWeights packed_;  // packed copies the layer / output views point into
};

}  // namespace kvserve

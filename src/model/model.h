// A loaded model: hyper-parameters plus weight views into the memory-mapped GGUF file,
// bound by its architecture's definition (src/model/arch/) through a WeightSource.
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
#include "model/layer_weights.h"
#include "model/model_config.h"
#include "model/weight_source.h"

namespace kvserve {

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
  // Rotary inverse frequencies [n_rot / 2] of table t (LayerWeights::rope_table): table 0
  // has the file's base with scaling and rope_freqs folded in; table 1, when the
  // architecture has local layers with their own base (gemma3), that base unscaled.
  int n_rope_tables() const { return int(rope_tables_.size()); }
  const std::vector<float>& rope_table(int t) const { return rope_tables_[size_t(t)]; }

  // out: [dim], the embedding of `token` (0 <= token < n_vocab, asserted).
  void embed(int32_t token, float* out) const;

 private:
  Model() = default;
  Status bind_weights(const WeightSource& source);

  std::unique_ptr<GgufFile> file_;
  ModelConfig config_;
  std::vector<LayerWeights> layers_;
  WeightView token_embd_;
  WeightView output_;
  const float* output_norm_ = nullptr;
  std::vector<std::vector<float>> rope_tables_;
  PackedWeights packed_;  // packed copies the layer / output views point into
};

}  // namespace kvserve

#include "model/model.h"

#include <fmt/format.h>

#include <cassert>

#include "core/try.h"
#include "gguf/dequantize.h"
#include "kernels/cpu/matmul_pack.h"
#include "model/arch/arch.h"
#include "model/weight_binder.h"

namespace kvserve {

Result<std::unique_ptr<Model>> Model::load(const std::string& path) {
  auto file = GgufFile::open(path);
  if (!file) return Error{fmt::format("{}: {}", path, file.error().message)};
  auto model = from_gguf(std::move(*file));
  if (!model) return Error{fmt::format("{}: {}", path, model.error().message)};
  return model;
}

Result<std::unique_ptr<Model>> Model::from_gguf(std::unique_ptr<GgufFile> file) {
  std::unique_ptr<Model> m(new Model());
  m->file_ = std::move(file);
  auto cfg = ModelConfig::from_gguf(*m->file_);
  if (!cfg) return cfg.error();
  m->config_ = std::move(*cfg);
  if (auto st = m->bind_weights(GgufWeightSource(*m->file_)); !st) return st.error();
  return m;
}

Status Model::bind_weights(const WeightSource& source) {
  const WeightBinder w(source);
  const ModelConfig& c = config_;
  {
    // The embedding is read a row at a time by dequantize_row, so only its type matters.
    const auto t = source.find("token_embd.weight");  // its shape was checked with the config
    token_embd_ = WeightView{t->type, t->data, c.dim, c.n_vocab};
    if (c.dim % ggml_traits(t->type).block_size != 0)
      return Error{fmt::format(
          "tensor 'token_embd.weight': row length {} is not a multiple of the block size", c.dim)};
  }
  if (c.tied_output) {
    if (!matmul_supports(token_embd_.type))
      return Error{fmt::format("tied output 'token_embd.weight' has type {}, which matmul does not support",
                               ggml_type_name(token_embd_.type))};
    output_ = token_embd_;
  } else {
    KVSERVE_TRY(output_, w.matrix("output.weight", c.dim, c.n_vocab));
  }
  KVSERVE_TRY(output_norm_, w.vector("output_norm.weight", c.dim));

  layers_.resize(size_t(c.n_layers));
  for (int i = 0; i < c.n_layers; ++i) {
    LayerWeights& L = layers_[size_t(i)];
    if (auto st = c.arch->bind_layer(w, c, i, L); !st) return st;
    L.window = c.layer_attention[size_t(i)].window;
    L.rope_table = c.layer_attention[size_t(i)].rope_table;
  }

  // Weights the CPU kernels read faster in their packed layout (matmul_pack.h) are
  // repacked once. A tied output is packed too and embed() then reads its rows from the
  // packed copy (dequantize_packed_row), so the file's pages can be dropped for it as well.
  const bool release = source.file_backed();
  for (LayerWeights& L : layers_)
    for (WeightView* v : {&L.wq, &L.wk, &L.wv, &L.wqkv, &L.wo, &L.w_gate, &L.w_up, &L.w_gate_up, &L.w_down})
      packed_.pack(*v, release);  // absent (null) views are not packable
  for (LayerWeights& L : layers_)
    for (auto* experts : {&L.expert_gate, &L.expert_up, &L.expert_down})
      for (WeightView& v : *experts) packed_.pack(v, release);
  if (packed_.pack(output_, release) && c.tied_output) token_embd_.packed = output_.packed;

  // Llama 3 style files carry precomputed per-pair frequency divisors.
  const float* freq_factors = nullptr;
  KVSERVE_TRY(freq_factors, w.optional_vector("rope_freqs.weight", c.n_rot / 2));
  rope_tables_.push_back(rope_inv_freq(c.n_rot, c.rope_freq_base, c.rope_scaling, freq_factors));
  if (c.rope_freq_base_local > 0.0f)
    rope_tables_.push_back(rope_inv_freq(c.n_rot, c.rope_freq_base_local, RopeScaling{}, nullptr));
  for (const LayerWeights& L : layers_)
    if (L.rope_table < 0 || L.rope_table >= n_rope_tables())
      return Error{fmt::format("layer rotary table {} does not exist", L.rope_table)};
  return ok_status();
}

void Model::embed(int32_t token, float* out) const {
  assert(token >= 0 && token < config_.n_vocab);
  if (token_embd_.packed) return dequantize_packed_row(token_embd_, token, out);
  const size_t row_bytes = ggml_row_bytes(token_embd_.type, config_.dim);
  const auto* row = static_cast<const uint8_t*>(token_embd_.data) + size_t(token) * row_bytes;
  dequantize_row(token_embd_.type, row, out, config_.dim);
}

}  // namespace kvserve

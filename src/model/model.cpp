#include "model/model.h"

#include <fmt/format.h>

#include <cassert>

#include "gguf/dequantize.h"
#include "kernels/cpu/matmul_pack.h"

namespace kvserve {
namespace {

std::string shape_str(const GgufTensor& t) {
  std::string s = "[";
  for (size_t i = 0; i < t.shape.size(); ++i) s += (i ? ", " : "") + std::to_string(t.shape[i]);
  return s + "]";
}

// A matrix mapping n_in -> n_out features: ggml shape [n_in, n_out].
Result<WeightView> matrix(const GgufFile& f, const std::string& name, int64_t n_in, int64_t n_out) {
  const GgufTensor* t = f.tensor(name);
  if (!t) return Error{fmt::format("missing tensor '{}'", name)};
  if (t->shape.size() != 2 || t->ne(0) != n_in || t->ne(1) != n_out)
    return Error{
        fmt::format("tensor '{}' has shape {}, expected [{}, {}]", name, shape_str(*t), n_in, n_out)};
  if (!matmul_supports(t->type))
    return Error{
        fmt::format("tensor '{}' has type {}, which matmul does not support", name, ggml_type_name(t->type))};
  if (n_in % ggml_traits(t->type).block_size != 0)
    return Error{fmt::format("tensor '{}': row length {} is not a multiple of the {} block size", name, n_in,
                             ggml_type_name(t->type))};
  return WeightView{t->type, t->data, n_in, n_out};
}

// A 1-D float vector (norm weights, biases); converters always store these as F32.
Result<const float*> vector(const GgufFile& f, const std::string& name, int64_t n, bool required = true) {
  const GgufTensor* t = f.tensor(name);
  if (!t) {
    if (!required) return static_cast<const float*>(nullptr);
    return Error{fmt::format("missing tensor '{}'", name)};
  }
  if (t->shape.size() != 1 || t->ne(0) != n)
    return Error{fmt::format("tensor '{}' has shape {}, expected [{}]", name, shape_str(*t), n)};
  if (t->type != GgmlType::F32)
    return Error{fmt::format("tensor '{}' has type {}, expected f32", name, ggml_type_name(t->type))};
  return reinterpret_cast<const float*>(t->data);
}

#define MODEL_TRY(target, expr) \
  do {                          \
    auto r_ = (expr);           \
    if (!r_) return r_.error(); \
    target = *r_;               \
  } while (0)

}  // namespace

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
  if (auto st = m->bind_weights(); !st) return st.error();
  return m;
}

Status Model::bind_weights() {
  const GgufFile& f = *file_;
  const ModelConfig& c = config_;
  {
    // The embedding is read a row at a time by dequantize_row, so only its type matters.
    const GgufTensor* t = f.tensor("token_embd.weight");
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
    MODEL_TRY(output_, matrix(f, "output.weight", c.dim, c.n_vocab));
  }
  MODEL_TRY(output_norm_, vector(f, "output_norm.weight", c.dim));

  layers_.resize(size_t(c.n_layers));
  for (int i = 0; i < c.n_layers; ++i) {
    LayerWeights& L = layers_[size_t(i)];
    const std::string p = fmt::format("blk.{}.", i);
    MODEL_TRY(L.attn_norm, vector(f, p + "attn_norm.weight", c.dim));
    MODEL_TRY(L.wq, matrix(f, p + "attn_q.weight", c.dim, c.q_dim()));
    MODEL_TRY(L.wk, matrix(f, p + "attn_k.weight", c.dim, c.kv_dim()));
    MODEL_TRY(L.wv, matrix(f, p + "attn_v.weight", c.dim, c.kv_dim()));
    MODEL_TRY(L.wo, matrix(f, p + "attn_output.weight", c.q_dim(), c.dim));
    if (c.qkv_bias) {
      MODEL_TRY(L.bq, vector(f, p + "attn_q.bias", c.q_dim()));
      MODEL_TRY(L.bk, vector(f, p + "attn_k.bias", c.kv_dim()));
      MODEL_TRY(L.bv, vector(f, p + "attn_v.bias", c.kv_dim()));
    }
    if (c.qk_norm) {
      MODEL_TRY(L.q_norm, vector(f, p + "attn_q_norm.weight", c.head_dim));
      MODEL_TRY(L.k_norm, vector(f, p + "attn_k_norm.weight", c.head_dim));
    }
    MODEL_TRY(L.ffn_norm, vector(f, p + "ffn_norm.weight", c.dim));
    MODEL_TRY(L.w_gate, matrix(f, p + "ffn_gate.weight", c.dim, c.ffn_dim));
    MODEL_TRY(L.w_up, matrix(f, p + "ffn_up.weight", c.dim, c.ffn_dim));
    MODEL_TRY(L.w_down, matrix(f, p + "ffn_down.weight", c.ffn_dim, c.dim));
  }

  // Weights the CPU kernels read faster in their packed layout (matmul_pack.h) are
  // repacked once. A tied output is packed too and embed() then reads its rows from the
  // packed copy (dequantize_packed_row), so the file's pages can be dropped for it as well.
  const bool from_file = !f.path().empty();  // a read-only mapping (not a caller's buffer)
  for (LayerWeights& L : layers_)
    for (WeightView* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
      packed_.pack(*w, from_file);
  if (packed_.pack(output_, from_file) && c.tied_output) token_embd_.packed = output_.packed;

  // Llama 3 style files carry precomputed per-pair frequency divisors.
  const float* freq_factors = nullptr;
  MODEL_TRY(freq_factors, vector(f, "rope_freqs.weight", c.n_rot / 2, /*required=*/false));
  rope_inv_freq_ = kvserve::rope_inv_freq(c.n_rot, c.rope_freq_base, c.rope_scaling, freq_factors);
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

// A decoder architecture, defined in one file of src/model/arch/: its hyper-parameters
// (configure), its tensors (bind_layer: shapes and types checked) and its
// layer as a composition of the shared blocks every runner implements (LayerBlocks).
// Adding an architecture is one new file plus its line in registry.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"
#include "model/layer_weights.h"

namespace kvserve {

class GgufFile;
class WeightBinder;
struct ModelConfig;

enum class Activation : uint8_t {
  Silu,      // SwiGLU: silu(gate) * up
  GeluTanh,  // GeGLU: gelu(gate) * up, tanh approximation
};

// What prepare_qk does to the fresh q and k rows before the rotary embedding.
struct QkSteps {
  bool bias = false;     // add bq, bk (and bv to v)
  bool qk_norm = false;  // RMSNorm of each head of q and k (q_norm, k_norm)
};

// The blocks a layer is made of, over the runner's activations: the residual stream x,
// this step's q, k, v and the attention output. Implemented by each backend's runner.
class LayerBlocks {
 public:
  // q, k, v = RMSNorm(x; attn_norm) · wq, wk, wv.
  virtual void qkv(const LayerWeights& L) = 0;
  // The same from one fused matrix: [q | k | v] = RMSNorm(x; attn_norm) · wqkv.
  virtual void qkv_fused(const LayerWeights& L) = 0;
  // The steps `s` names, then rotary with the layer's table (L.rope_table).
  virtual void prepare_qk(const LayerWeights& L, QkSteps s) = 0;
  // Stores this step's k, v in the layer's cache and attends (sliding window L.window).
  virtual void attention(int layer, const LayerWeights& L) = 0;
  // x += post_norm(attention · wo); no norm when post_norm is null.
  virtual void attention_out(const WeightView& wo, const float* post_norm) = 0;
  // x += post_norm(act(n · w_gate) * (n · w_up)) · w_down), n = RMSNorm(x; ffn_norm).
  virtual void mlp(const LayerWeights& L, Activation act, const float* post_norm) = 0;
  // The same with gate and up fused: [gate | up] = n · w_gate_up.
  virtual void mlp_fused(const LayerWeights& L, Activation act, const float* post_norm) = 0;
  // Mixture of experts: x += post_norm(sum over the token's top-k experts e of w_e *
  // mlp_e(n)), n = RMSNorm(x; ffn_norm); the router's softmax over all experts gives the
  // k best (lower id first on ties), their weights renormalized to sum to 1.
  virtual void moe(const LayerWeights& L, Activation act, const float* post_norm) = 0;

 protected:
  ~LayerBlocks() = default;
};

struct ArchDef {
  std::string_view name;      // GGUF general.architecture
  std::string_view families;  // the model families it runs, for `kvserve info` and errors
  // The architecture's own hyper-parameters and conventions (the common ones are read
  // already), and each layer's attention (ModelConfig::layer_attention: windows,
  // rotary tables); errors name the metadata key.
  Status (*configure)(const GgufFile& file, ModelConfig& c);
  // One layer's tensors.
  Status (*bind_layer)(const WeightBinder& w, const ModelConfig& c, int layer, LayerWeights& L);
  // One layer's forward pass.
  void (*forward_layer)(LayerBlocks& blocks, int layer, const LayerWeights& L);
};

// The definition of a GGUF architecture name, or null when unsupported.
const ArchDef* find_arch(std::string_view name);
// "llama, qwen2, ..." for messages.
std::string supported_arch_names();

}  // namespace kvserve

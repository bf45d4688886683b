// Hyper-parameters of a decoder-only transformer, read from GGUF metadata. One place
// knows each supported architecture's conventions:
//   llama (Llama 2/3, TinyLlama, SmolLM, Mistral): GQA/MQA, Normal (adjacent-pair) RoPE,
//         optional linear or llama3 RoPE scaling, tied or separate output embedding;
//   qwen2: as llama plus Q/K/V biases, NeoX (half-split) RoPE;
//   qwen3: as llama plus per-head RMSNorm of Q and K, NeoX RoPE.
#pragma once

#include <cstdint>
#include <string>

#include "core/result.h"
#include "gguf/gguf_file.h"
#include "kernels/cpu/rope.h"

namespace kvserve {

enum class Arch : uint8_t { Llama, Qwen2, Qwen3 };

struct ModelConfig {
  Arch arch = Arch::Llama;
  std::string arch_name;  // GGUF general.architecture
  int n_vocab = 0;
  int dim = 0;  // embedding (residual stream) width
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;  // may differ from dim / n_heads (qwen3)
  int ffn_dim = 0;
  int n_ctx_train = 0;
  float norm_eps = 1e-5f;

  RopeStyle rope_style = RopeStyle::Normal;
  int n_rot = 0;  // rotated dims per head (<= head_dim)
  float rope_freq_base = 10000.0f;
  RopeScaling rope_scaling;

  bool qkv_bias = false;     // qwen2
  bool qk_norm = false;      // qwen3
  bool tied_output = false;  // no output.weight: logits use token_embd.weight

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }

  // Reads and validates the metadata (and the shapes of token_embd / output); errors
  // name the key or tensor at fault.
  static Result<ModelConfig> from_gguf(const GgufFile& file);
};

}  // namespace kvserve

// Hyper-parameters of a decoder-only transformer, read from GGUF metadata: the keys every
// architecture shares here, its own conventions and extras in its definition
// (src/model/arch/<name>.cpp, configure).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/result.h"
#include "gguf/gguf_file.h"
#include "kernels/cpu/rope.h"

namespace kvserve {

struct ArchDef;

// How one layer attends: its window and rotary table (set by the architecture).
struct LayerAttention {
  int window = 0;      // sliding window in keys; 0 = full causal attention
  int rope_table = 0;  // 0: the file's base and scaling; 1: rope_freq_base_local, unscaled
};

struct ModelConfig {
  const ArchDef* arch = nullptr;
  std::string arch_name;  // GGUF general.architecture
  int n_vocab = 0;
  int dim = 0;  // embedding (residual stream) width
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;  // may differ from dim / n_heads (qwen3, gemma3)
  int ffn_dim = 0;
  int n_ctx_train = 0;
  float norm_eps = 1e-5f;

  RopeStyle rope_style = RopeStyle::Normal;
  int n_rot = 0;  // rotated dims per head (<= head_dim)
  float rope_freq_base = 10000.0f;
  RopeScaling rope_scaling;
  // > 0: a second rotary table with this base and no scaling, for sliding-window layers (gemma3).
  float rope_freq_base_local = 0.0f;

  float attn_scale = 0.0f;   // attention logits scale; from_gguf sets 1/sqrt(head_dim) unless the arch did
  float embed_scale = 1.0f;  // embeddings are multiplied by it (gemma3: sqrt(dim))
  int sliding_window = 0;    // keys a sliding-window layer attends to (0: none)
  int sliding_window_pattern = 0;               // gemma3: every pattern-th layer is global
  std::vector<LayerAttention> layer_attention;  // [n_layers]

  // Mixture of experts (Mixtral-style llama, qwen3moe): each token's MLP is the weighted
  // sum of the n_expert_used experts its router ranks highest.
  int n_expert = 0;          // 0: a dense MLP
  int n_expert_used = 0;     // top-k
  int expert_ffn_dim = 0;    // each expert's hidden width
  bool tied_output = false;  // no output.weight: logits use token_embd.weight

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }

  // Reads and validates the metadata (and the shapes of token_embd / output); errors
  // name the key or tensor at fault.
  static Result<ModelConfig> from_gguf(const GgufFile& file);

  // What `kvserve info` prints about how kvserve runs the model: the architecture, the
  // shapes, and the attention layout (windows, rotary tables), one fact per line.
  std::string summary() const;
};

}  // namespace kvserve

// Rotary position embedding. Two pairings, as llama.cpp names them:
//   Normal (GGUF `llama`): rotates adjacent pairs (x[2i], x[2i+1]) by theta_i;
//   Neox (qwen2, qwen3):   rotates halves (x[i], x[i + n_rot/2]) by theta_i;
// with theta_i = pos * inv_freq[i], i < n_rot / 2. Dims past n_rot are left alone.
#pragma once

#include <cstdint>
#include <vector>

namespace kvserve {

enum class RopeStyle : uint8_t { Normal, Neox };

struct RopeScaling {
  enum class Type : uint8_t { None, Linear, Llama3 };
  Type type = Type::None;
  float factor = 1.0f;            // Linear: positions divided by factor; Llama3: low freqs divided
  float low_freq_factor = 1.0f;   // Llama3 only
  float high_freq_factor = 4.0f;  // Llama3 only
  int original_context = 8192;    // Llama3 only
};

// Per-pair inverse frequencies [n_rot / 2]: base^(-2i / n_rot), with the scaling folded in.
// freq_factors (the optional `rope_freqs` tensor, [n_rot / 2]) divides them, as llama.cpp
// does for llama3-style files that carry the factors precomputed; it replaces Llama3
// scaling computed from the metadata.
std::vector<float> rope_inv_freq(int n_rot, float base, const RopeScaling& scaling,
                                 const float* freq_factors);

// cos/sin of one position: cs: [n_rot / 2][2] = {cos(theta_i), sin(theta_i)}.
void rope_cos_sin(int64_t pos, const float* inv_freq, int n_rot, float* cs);

// Rotates each head of x: [n_heads, head_dim] in place, using cs from rope_cos_sin.
void rope_apply(float* x, int n_heads, int head_dim, int n_rot, const float* cs, RopeStyle style);

}  // namespace kvserve

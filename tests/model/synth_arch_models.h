// Small random models of the architectures no real file here represents (Phi-3, Mixtral,
// Qwen3-MoE), built deterministically (a fixed splitmix64 stream, no std:: distribution,
// so every platform writes the same bytes). The golden test (synth_golden_test.cpp)
// builds them in memory; scripts/make_synth_golden.sh writes them to files with
// synth_arch_writer and has llama.cpp compute the reference logits in
// tests/model/golden/<name>.jsonl.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "gguf_builder.h"

namespace kvserve::test {

struct SynthArch {
  std::string name, arch;
  int dim, n_layers, n_heads, n_kv_heads, head_dim, ffn, vocab;
  int n_expert = 0, n_expert_used = 0, expert_ffn = 0;
};

inline std::vector<SynthArch> synth_archs() {
  return {
      {"synth-phi3", "phi3", 64, 2, 4, 2, 16, 96, 96},
      {"synth-mixtral", "llama", 64, 2, 4, 2, 16, 64, 96, 4, 2, 0},
      {"synth-qwen3moe", "qwen3moe", 64, 2, 4, 2, 32, 64, 96, 8, 2, 32},
  };
}

// Uniform weights of standard deviation sd around mean, from a splitmix64 stream.
class SynthRng {
 public:
  explicit SynthRng(uint64_t seed) : s_(seed) {}
  float next(float sd, float mean) {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const double u = double(z >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
    return mean + sd * float((2.0 * u - 1.0) * std::sqrt(3.0));
  }

 private:
  uint64_t s_;
};

inline std::vector<uint8_t> synth_arch_gguf(const SynthArch& s, uint64_t seed = 1) {
  SynthRng rng(seed);
  GgufBuilder g;
  const std::string& a = s.arch;
  g.kv_str("general.architecture", a);
  g.kv_str("general.name", s.name);
  g.kv_u32(a + ".context_length", 512);
  g.kv_u32(a + ".embedding_length", uint32_t(s.dim));
  g.kv_u32(a + ".block_count", uint32_t(s.n_layers));
  g.kv_u32(a + ".feed_forward_length", uint32_t(s.ffn));
  g.kv_u32(a + ".attention.head_count", uint32_t(s.n_heads));
  g.kv_u32(a + ".attention.head_count_kv", uint32_t(s.n_kv_heads));
  g.kv_f32(a + ".attention.layer_norm_rms_epsilon", 1e-6f);
  g.kv_f32(a + ".rope.freq_base", 10000.0f);
  g.kv_u32(a + ".rope.dimension_count", uint32_t(s.head_dim));
  if (s.head_dim * s.n_heads != s.dim) {
    g.kv_u32(a + ".attention.key_length", uint32_t(s.head_dim));
    g.kv_u32(a + ".attention.value_length", uint32_t(s.head_dim));
  }
  if (s.n_expert) {
    g.kv_u32(a + ".expert_count", uint32_t(s.n_expert));
    g.kv_u32(a + ".expert_used_count", uint32_t(s.n_expert_used));
    if (s.expert_ffn) g.kv_u32(a + ".expert_feed_forward_length", uint32_t(s.expert_ffn));
  }
  // No tokenizer: llama.cpp takes the vocabulary size alone ("no_vocab"); tests feed ids.
  g.kv_str("tokenizer.ggml.model", "no_vocab");
  g.kv_u32(a + ".vocab_size", uint32_t(s.vocab));
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float sd, float mean = 0.0f) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = rng.next(sd, mean);
    g.tensor_f32(name, shape, v);
  };
  const int qd = s.n_heads * s.head_dim, kvd = s.n_kv_heads * s.head_dim;
  const float in = 1.0f / std::sqrt(float(s.dim));
  add("token_embd.weight", {s.dim, s.vocab}, 1.0f);
  add("output.weight", {s.dim, s.vocab}, in);
  add("output_norm.weight", {s.dim}, 0.1f, 1.0f);
  for (int l = 0; l < s.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_norm.weight", {s.dim}, 0.1f, 1.0f);
    if (a == "phi3") {
      add(p + "attn_qkv.weight", {s.dim, qd + 2 * kvd}, 1.5f * in);
    } else {
      add(p + "attn_q.weight", {s.dim, qd}, 1.5f * in);
      add(p + "attn_k.weight", {s.dim, kvd}, 1.5f * in);
      add(p + "attn_v.weight", {s.dim, kvd}, in);
    }
    add(p + "attn_output.weight", {qd, s.dim}, 1.0f / std::sqrt(float(qd)));
    if (a == "qwen3moe") {
      add(p + "attn_q_norm.weight", {s.head_dim}, 0.1f, 1.0f);
      add(p + "attn_k_norm.weight", {s.head_dim}, 0.1f, 1.0f);
    }
    add(p + "ffn_norm.weight", {s.dim}, 0.1f, 1.0f);
    const int eff = s.expert_ffn ? s.expert_ffn : s.ffn;
    if (s.n_expert) {
      add(p + "ffn_gate_inp.weight", {s.dim, s.n_expert}, in);
      add(p + "ffn_gate_exps.weight", {s.dim, eff, s.n_expert}, in);
      add(p + "ffn_up_exps.weight", {s.dim, eff, s.n_expert}, in);
      add(p + "ffn_down_exps.weight", {eff, s.dim, s.n_expert}, 1.0f / std::sqrt(float(eff)));
    } else if (a == "phi3") {  // gate rows, then up rows
      add(p + "ffn_up.weight", {s.dim, 2 * s.ffn}, in);
      add(p + "ffn_down.weight", {s.ffn, s.dim}, 1.0f / std::sqrt(float(s.ffn)));
    }
  }
  return g.build();
}

// The token ids the golden files start from: three prompts of 5, 11 and 23 ids.
inline std::vector<std::vector<int32_t>> synth_golden_prompts(int vocab) {
  std::vector<std::vector<int32_t>> out;
  uint32_t x = 12345;
  for (int len : {5, 11, 23}) {
    std::vector<int32_t> p;
    for (int i = 0; i < len; ++i) {
      x = x * 1103515245u + 12345u;
      p.push_back(int32_t((x >> 16) % uint32_t(vocab)));
    }
    out.push_back(p);
  }
  return out;
}

}  // namespace kvserve::test

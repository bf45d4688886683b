// Tiny random models of every supported architecture, written as GGUF in memory, run
// through the CpuRunner and checked against a plain double-precision reference
// forward pass written independently here: llama (GQA, MQA, tied output, partial
// rotary dims, linear scaling, rope_freqs, Mistral's sliding window), qwen2 (QKV bias,
// NeoX RoPE), qwen3 (Q/K norm, NeoX RoPE, head_dim != dim / n_heads), gemma3 (local
// sliding-window layers with their own rotary base between global ones, post norms,
// GeGLU, scaled embeddings) and phi3 (fused QKV and gate/up matrices). Also: config
// validation errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "gguf/quantize.h"
#include "gguf_builder.h"
#include "kernels/cpu/attention.h"
#include "model_test_util.h"

namespace kvserve {
namespace {

struct Spec {
  std::string arch = "llama";
  int dim = 32, n_layers = 2, n_heads = 4, n_kv_heads = 2, head_dim = 8, ffn = 48, vocab = 40;
  int n_rot = 0;  // 0: not written (= head_dim)
  bool tied = false;
  float linear_factor = 0.0f;  // > 0: rope.scaling.type = linear
  bool rope_freqs = false;
  float freq_base = 10000.0f;
  int window = 0;   // > 0: sliding window (llama: every layer; gemma3: the local ones)
  int pattern = 0;  // gemma3: every pattern-th layer is global (0: not written, 6)
  int n_expert = 0, n_expert_used = 0, expert_ffn = 0;  // mixture of experts (expert_ffn 0: = ffn)
  GgmlType matrix_type = GgmlType::F32;                 // 2-D and 3-D weights stored as this type
};

bool gemma(const Spec& s) {
  return s.arch == "gemma3";
}
// gemma3's local layers: all but every pattern-th.
bool local_layer(const Spec& s, int l) {
  const int p = s.pattern ? s.pattern : 6;
  return gemma(s) && l % p < p - 1;
}

using Tensors = std::map<std::string, std::vector<float>>;

struct Built {
  std::vector<uint8_t> bytes;
  Tensors w;
};

Built build(const Spec& s, uint32_t seed, const std::string& bad_tensor = "") {
  std::mt19937 rng(seed);
  Built b;
  test::GgufBuilder g;
  const std::string a = s.arch;
  g.kv_str("general.architecture", a);
  g.kv_u32(a + ".embedding_length", uint32_t(s.dim));
  g.kv_u32(a + ".block_count", uint32_t(s.n_layers));
  g.kv_u32(a + ".feed_forward_length", uint32_t(s.ffn));
  g.kv_u32(a + ".attention.head_count", uint32_t(s.n_heads));
  g.kv_u32(a + ".attention.head_count_kv", uint32_t(s.n_kv_heads));
  g.kv_f32(a + ".attention.layer_norm_rms_epsilon", 1e-6f);
  g.kv_f32(a + ".rope.freq_base", s.freq_base);
  if (s.head_dim * s.n_heads != s.dim) g.kv_u32(a + ".attention.key_length", uint32_t(s.head_dim));
  if (s.n_rot) g.kv_u32(a + ".rope.dimension_count", uint32_t(s.n_rot));
  if (s.window) g.kv_u32(a + ".attention.sliding_window", uint32_t(s.window));
  if (s.pattern) g.kv_u32(a + ".attention.sliding_window_pattern", uint32_t(s.pattern));
  if (s.n_expert) {
    g.kv_u32(a + ".expert_count", uint32_t(s.n_expert));
    g.kv_u32(a + ".expert_used_count", uint32_t(s.n_expert_used));
    if (s.expert_ffn) g.kv_u32(a + ".expert_feed_forward_length", uint32_t(s.expert_ffn));
  }
  if (s.linear_factor > 0) {
    g.kv_str(a + ".rope.scaling.type", "linear");
    g.kv_f32(a + ".rope.scaling.factor", s.linear_factor);
  }
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float sd, float mean = 0.0f) {
    std::normal_distribution<float> nd(mean, sd);
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = nd(rng);
    if (name == bad_tensor) shape[0] += 1, v.resize(v.size() + size_t(n / shape[0] + 1));
    if (s.matrix_type != GgmlType::F32 && shape.size() >= 2) {  // quantized rows (the reference is not used)
      std::vector<uint8_t> q(ggml_row_bytes(s.matrix_type, shape[0]) * size_t(n / shape[0]));
      for (int64_t r = 0; r < n / shape[0]; ++r)
        quantize_row(s.matrix_type, v.data() + r * shape[0],
                     q.data() + size_t(r) * ggml_row_bytes(s.matrix_type, shape[0]), shape[0]);
      g.tensor_raw(name, shape, uint32_t(s.matrix_type), std::move(q));
    } else {
      g.tensor_f32(name, shape, v);
    }
    b.w[name] = std::move(v);
  };
  const int qd = s.n_heads * s.head_dim, kvd = s.n_kv_heads * s.head_dim;
  add("token_embd.weight", {s.dim, s.vocab}, 1.0f);
  if (!s.tied) add("output.weight", {s.dim, s.vocab}, 1.0f / std::sqrt(float(s.dim)));
  add("output_norm.weight", {s.dim}, 0.1f, 1.0f);
  if (s.rope_freqs) add("rope_freqs.weight", {(s.n_rot ? s.n_rot : s.head_dim) / 2}, 0.5f, 2.0f);
  for (int l = 0; l < s.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_norm.weight", {s.dim}, 0.1f, 1.0f);
    if (a == "phi3") {  // one [dim, q | k | v] matrix; the reference reads its row ranges
      add(p + "attn_qkv.weight", {s.dim, qd + 2 * kvd}, 1.5f / std::sqrt(float(s.dim)));
      const auto& f = b.w[p + "attn_qkv.weight"];
      b.w[p + "attn_q.weight"].assign(f.begin(), f.begin() + qd * s.dim);
      b.w[p + "attn_k.weight"].assign(f.begin() + qd * s.dim, f.begin() + (qd + kvd) * s.dim);
      b.w[p + "attn_v.weight"].assign(f.begin() + (qd + kvd) * s.dim, f.end());
    } else {
      add(p + "attn_q.weight", {s.dim, qd}, 1.5f / std::sqrt(float(s.dim)));
      add(p + "attn_k.weight", {s.dim, kvd}, 1.5f / std::sqrt(float(s.dim)));
      add(p + "attn_v.weight", {s.dim, kvd}, 1.0f / std::sqrt(float(s.dim)));
    }
    add(p + "attn_output.weight", {qd, s.dim}, 1.0f / std::sqrt(float(qd)));
    if (a == "qwen2") {
      add(p + "attn_q.bias", {qd}, 0.3f);
      add(p + "attn_k.bias", {kvd}, 0.3f);
      add(p + "attn_v.bias", {kvd}, 0.3f);
    }
    if (a == "qwen3" || a == "qwen3moe" || gemma(s)) {
      add(p + "attn_q_norm.weight", {s.head_dim}, 0.1f, 1.0f);
      add(p + "attn_k_norm.weight", {s.head_dim}, 0.1f, 1.0f);
    }
    if (gemma(s)) {
      add(p + "post_attention_norm.weight", {s.dim}, 0.1f, 1.0f);
      add(p + "post_ffw_norm.weight", {s.dim}, 0.1f, 1.0f);
    }
    add(p + "ffn_norm.weight", {s.dim}, 0.1f, 1.0f);
    const int eff = s.expert_ffn ? s.expert_ffn : s.ffn;
    if (s.n_expert) {  // router [dim -> E]; experts [dim, eff, E] and [eff, dim, E]
      add(p + "ffn_gate_inp.weight", {s.dim, s.n_expert}, 1.0f);
      add(p + "ffn_gate_exps.weight", {s.dim, eff, s.n_expert}, 1.0f / std::sqrt(float(s.dim)));
      add(p + "ffn_up_exps.weight", {s.dim, eff, s.n_expert}, 1.0f / std::sqrt(float(s.dim)));
      add(p + "ffn_down_exps.weight", {eff, s.dim, s.n_expert}, 1.0f / std::sqrt(float(eff)));
    } else if (a == "phi3") {  // ffn_up holds gate rows, then up rows
      add(p + "ffn_up.weight", {s.dim, 2 * s.ffn}, 1.0f / std::sqrt(float(s.dim)));
      const auto f = b.w[p + "ffn_up.weight"];
      b.w[p + "ffn_gate.weight"].assign(f.begin(), f.begin() + s.ffn * s.dim);
      b.w[p + "ffn_up.weight"].assign(f.begin() + s.ffn * s.dim, f.end());
    } else {
      add(p + "ffn_gate.weight", {s.dim, s.ffn}, 1.0f / std::sqrt(float(s.dim)));
      add(p + "ffn_up.weight", {s.dim, s.ffn}, 1.0f / std::sqrt(float(s.dim)));
    }
    add(p + "ffn_down.weight", {s.ffn, s.dim}, 1.0f / std::sqrt(float(s.ffn)));
  }
  b.bytes = g.build();
  return b;
}

using Vec = std::vector<double>;

Vec matvec(const std::vector<float>& w, const Vec& x, int n_out) {  // w: [n_out][n_in]
  const size_t n_in = x.size();
  Vec y(static_cast<size_t>(n_out), 0.0);
  for (size_t o = 0; o < y.size(); ++o)
    for (size_t i = 0; i < n_in; ++i) y[o] += double(w[o * n_in + i]) * x[i];
  return y;
}

Vec rmsnorm_ref(const Vec& x, const float* w, size_t off, size_t n) {
  double ss = 0;
  for (size_t i = 0; i < n; ++i) ss += x[off + i] * x[off + i];
  const double inv = 1.0 / std::sqrt(ss / double(n) + 1e-6);
  Vec y(x);
  for (size_t i = 0; i < n; ++i) y[off + i] = x[off + i] * inv * w[i];
  return y;
}

// Reference logits for every position of `tokens`: [n][vocab].
std::vector<Vec> reference(const Spec& s, const Tensors& w, const std::vector<int32_t>& tokens) {
  const bool neox = s.arch != "llama";
  const int hd = s.head_dim, n_rot = s.n_rot ? s.n_rot : hd, group = s.n_heads / s.n_kv_heads;
  std::vector<std::vector<Vec>> kc(size_t(s.n_layers)), vc(size_t(s.n_layers));  // [layer][pos] -> kv
  std::vector<Vec> logits;
  auto rope = [&](Vec& x, int n_heads, int pos, bool local) {
    for (int h = 0; h < n_heads; ++h)
      for (int i = 0; i < n_rot / 2; ++i) {
        // gemma3's local layers: base 10 000, no scaling.
        double f = std::pow(local ? 10000.0 : double(s.freq_base), -2.0 * i / n_rot);
        if (s.linear_factor > 0 && !local) f /= s.linear_factor;
        if (s.rope_freqs) f /= w.at("rope_freqs.weight")[size_t(i)];
        const double th = pos * f;
        const size_t ia = size_t(h * hd + (neox ? i : 2 * i)),
                     ib = size_t(h * hd + (neox ? i + n_rot / 2 : 2 * i + 1));
        const double a = x[ia], b = x[ib];
        x[ia] = a * std::cos(th) - b * std::sin(th);
        x[ib] = a * std::sin(th) + b * std::cos(th);
      }
  };
  for (size_t pos = 0; pos < tokens.size(); ++pos) {
    const auto& emb = w.at("token_embd.weight");
    Vec x(emb.begin() + tokens[pos] * s.dim, emb.begin() + (tokens[pos] + 1) * s.dim);
    if (gemma(s))
      for (double& e : x) e *= std::sqrt(double(s.dim));
    for (int l = 0; l < s.n_layers; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      const Vec xn = rmsnorm_ref(x, w.at(p + "attn_norm.weight").data(), 0, size_t(s.dim));
      Vec q = matvec(w.at(p + "attn_q.weight"), xn, s.n_heads * hd);
      Vec k = matvec(w.at(p + "attn_k.weight"), xn, s.n_kv_heads * hd);
      Vec v = matvec(w.at(p + "attn_v.weight"), xn, s.n_kv_heads * hd);
      if (s.arch == "qwen2") {
        for (size_t i = 0; i < q.size(); ++i) q[i] += w.at(p + "attn_q.bias")[i];
        for (size_t i = 0; i < k.size(); ++i) k[i] += w.at(p + "attn_k.bias")[i];
        for (size_t i = 0; i < v.size(); ++i) v[i] += w.at(p + "attn_v.bias")[i];
      }
      if (s.arch == "qwen3" || s.arch == "qwen3moe" || gemma(s)) {
        for (int h = 0; h < s.n_heads; ++h)
          q = rmsnorm_ref(q, w.at(p + "attn_q_norm.weight").data(), size_t(h * hd), size_t(hd));
        for (int h = 0; h < s.n_kv_heads; ++h)
          k = rmsnorm_ref(k, w.at(p + "attn_k_norm.weight").data(), size_t(h * hd), size_t(hd));
      }
      const bool local = local_layer(s, l);
      rope(q, s.n_heads, int(pos), local);
      rope(k, s.n_kv_heads, int(pos), local);
      // Keys a row sees: all before it, or the last `window` with a sliding window.
      const int window = s.arch == "llama" || local ? s.window : 0;
      const size_t first = window > 0 && pos + 1 > size_t(window) ? pos + 1 - size_t(window) : 0;
      kc[size_t(l)].push_back(k);
      vc[size_t(l)].push_back(v);
      Vec att(q.size(), 0.0);
      for (int h = 0; h < s.n_heads; ++h) {
        const int kvh = h / group;
        Vec sc(pos + 1, 0.0);
        double mx = -1e300;
        for (size_t j = first; j <= pos; ++j) {
          double d = 0;
          for (int i = 0; i < hd; ++i) d += q[size_t(h * hd + i)] * kc[size_t(l)][j][size_t(kvh * hd + i)];
          sc[j] = d / std::sqrt(double(hd));
          mx = std::max(mx, sc[j]);
        }
        double sum = 0;
        for (size_t j = first; j <= pos; ++j) sum += (sc[j] = std::exp(sc[j] - mx));
        for (size_t j = first; j <= pos; ++j)
          for (int i = 0; i < hd; ++i)
            att[size_t(h * hd + i)] += sc[j] / sum * vc[size_t(l)][j][size_t(kvh * hd + i)];
      }
      Vec o = matvec(w.at(p + "attn_output.weight"), att, s.dim);
      if (gemma(s)) o = rmsnorm_ref(o, w.at(p + "post_attention_norm.weight").data(), 0, size_t(s.dim));
      for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
      const Vec xf = rmsnorm_ref(x, w.at(p + "ffn_norm.weight").data(), 0, size_t(s.dim));
      if (s.n_expert) {  // softmax over the router, top-k renormalized, SwiGLU experts
        const int eff = s.expert_ffn ? s.expert_ffn : s.ffn;
        Vec pr = matvec(w.at(p + "ffn_gate_inp.weight"), xf, s.n_expert);
        const double mxr = *std::max_element(pr.begin(), pr.end());
        for (double& e : pr) e = std::exp(e - mxr);
        std::vector<int> order(static_cast<size_t>(s.n_expert));
        for (int e = 0; e < s.n_expert; ++e) order[size_t(e)] = e;
        std::stable_sort(order.begin(), order.end(),
                         [&](int i, int j) { return pr[size_t(i)] > pr[size_t(j)]; });
        double sum = 0;
        for (int k = 0; k < s.n_expert_used; ++k) sum += pr[size_t(order[size_t(k)])];
        auto slice = [&](const std::string& name, int e, size_t n) {
          const auto& t = w.at(name);
          return std::vector<float>(t.begin() + long(size_t(e) * n), t.begin() + long(size_t(e + 1) * n));
        };
        for (int k = 0; k < s.n_expert_used; ++k) {
          const int e = order[size_t(k)];
          const size_t n = size_t(eff) * size_t(s.dim);
          const Vec gt = matvec(slice(p + "ffn_gate_exps.weight", e, n), xf, eff),
                    up = matvec(slice(p + "ffn_up_exps.weight", e, n), xf, eff);
          Vec act(gt.size());
          for (size_t i = 0; i < act.size(); ++i) act[i] = gt[i] / (1.0 + std::exp(-gt[i])) * up[i];
          const Vec d = matvec(slice(p + "ffn_down_exps.weight", e, n), act, s.dim);
          for (size_t i = 0; i < x.size(); ++i) x[i] += pr[size_t(e)] / sum * d[i];
        }
        continue;
      }
      const Vec gt = matvec(w.at(p + "ffn_gate.weight"), xf, s.ffn),
                up = matvec(w.at(p + "ffn_up.weight"), xf, s.ffn);
      Vec act(gt.size());
      for (size_t i = 0; i < act.size(); ++i)
        act[i] =
            gemma(s)
                ? 0.5 * gt[i] *
                      (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (gt[i] + 0.044715 * gt[i] * gt[i] * gt[i]))) *
                      up[i]
                : gt[i] / (1.0 + std::exp(-gt[i])) * up[i];
      Vec d = matvec(w.at(p + "ffn_down.weight"), act, s.dim);
      if (gemma(s)) d = rmsnorm_ref(d, w.at(p + "post_ffw_norm.weight").data(), 0, size_t(s.dim));
      for (size_t i = 0; i < x.size(); ++i) x[i] += d[i];
    }
    const Vec xo = rmsnorm_ref(x, w.at("output_norm.weight").data(), 0, size_t(s.dim));
    logits.push_back(matvec(w.at(s.tied ? "token_embd.weight" : "output.weight"), xo, s.vocab));
  }
  return logits;
}

Result<std::unique_ptr<Model>> load(const Built& b) {
  auto f = GgufFile::parse(b.bytes.data(), b.bytes.size());
  if (!f) return f.error();
  return Model::from_gguf(std::move(*f));
}

// Tokens [p0, p0 + n) through the paged cache: the last one's logits.
const float* forward_last(CpuRunner& runner, KvCacheStorage& kv, const std::vector<int32_t>& tokens,
                          size_t p0, size_t n, std::span<const int32_t> table) {
  SeqSlice sl;
  sl.n_past = int32_t(p0);
  sl.tokens = std::span<const int32_t>(tokens.data() + p0, n);
  sl.block_table = table;
  sl.logits = LogitsMode::Last;
  return runner.forward(ForwardBatch{std::span<const SeqSlice>(&sl, 1)}, kv);
}

// The hybrid KV layout (RunnerOptions::hybrid_kv): sliding layers in KV groups of their
// own, each group's table row with its own blocks, and the entries of blocks wholly
// before the window released (-1, as the block manager leaves them) as decoding goes.
void check_hybrid_cache(const Spec& s, const Model& model, const std::vector<int32_t>& tokens,
                        const std::vector<Vec>& ref) {
  RunnerOptions opt;
  opt.max_batch_tokens = 16;
  opt.max_seqs = 1;
  opt.n_threads = 2;
  opt.hybrid_kv = true;
  CpuRunner runner(model, opt);
  const auto windows = runner.kv_group_windows();
  const int G = int(windows.size()), bs = 4, width = 4;
  ASSERT_EQ(G, gemma(s) ? 2 : 1);  // gemma: global and local layers apart; llama: one sliding group
  EXPECT_EQ(windows[size_t(G - 1)], s.window);
  KvCacheStorage kv(runner.kv_config(G * width, bs, KvDtype::F32));
  EXPECT_EQ(kv.config().n_layers, s.n_layers / G);
  std::vector<int32_t> table;
  for (int g = 0; g < G; ++g)
    for (int b = 0; b < width; ++b) table.push_back((g * width + b * 3 + 1) % (G * width));  // scattered
  int released = 0;
  for (size_t p0 = 0; p0 < tokens.size();) {
    for (int g = 0; g < G; ++g)
      for (int b = 0; b < attention_first_key(int64_t(p0), windows[size_t(g)]) / bs; ++b) {
        released += table[size_t(g * width + b)] != -1;
        table[size_t(g * width + b)] = -1;
      }
    const size_t n = p0 == 0 ? 6 : 1;
    const float* lg = forward_last(runner, kv, tokens, p0, n, table);
    p0 += n;
    for (int v = 0; v < s.vocab; ++v)
      ASSERT_NEAR(lg[v], ref[p0 - 1][size_t(v)], 1e-3) << "hybrid decode pos " << p0 - 1;
  }
  EXPECT_GT(released, 0);
}

void check_against_reference(const Spec& s) {
  const Built b = build(s, 42);
  auto model = load(b);
  ASSERT_TRUE(model) << model.error().message;
  std::vector<int32_t> tokens;
  for (int i = 0; i < 13; ++i) tokens.push_back((i * 7 + 3) % s.vocab);
  const auto ref = reference(s, b.w, tokens);

  RunnerOptions opt;
  opt.max_batch_tokens = 16;
  opt.max_seqs = 1;
  opt.n_threads = 2;
  CpuRunner runner(**model, opt);
  // f32 KV keeps the projections exact; f16 KV (the default) rounds K/V once, ~1e-3 off.
  for (const KvDtype dt : {KvDtype::F32, KvDtype::F16}) {
    SCOPED_TRACE(kv_dtype_name(dt));
    const double tol = dt == KvDtype::F32 ? 1e-3 : 1e-2;
    // Whole prompt in one forward.
    const auto all = test::run_prefill(runner, tokens, LogitsMode::All, 4, dt);
    for (size_t p = 0; p < tokens.size(); ++p)
      for (int v = 0; v < s.vocab; ++v)
        ASSERT_NEAR(all[p * size_t(s.vocab) + size_t(v)], ref[p][size_t(v)], tol) << "prefill pos " << p;
    // A 6-token prefill chunk, then decode steps through the paged cache.
    KvCacheStorage kv(runner.kv_config(9, 4, dt));
    const std::vector<int32_t> table = {8, 2, 5, 0};
    for (size_t p0 = 0; p0 < tokens.size();) {
      const size_t n = p0 == 0 ? 6 : 1;
      const float* lg = forward_last(runner, kv, tokens, p0, n, table);
      p0 += n;
      for (int v = 0; v < s.vocab; ++v)
        ASSERT_NEAR(lg[v], ref[p0 - 1][size_t(v)], tol) << "decode pos " << p0 - 1;
    }
  }
  if (s.window > 0) check_hybrid_cache(s, **model, tokens, ref);
}

TEST(SyntheticModel, LlamaGqa) {
  check_against_reference(Spec{});
}

TEST(SyntheticModel, LlamaMqaTiedPartialRotaryLinearScaling) {
  Spec s;
  s.n_kv_heads = 1;
  s.tied = true;
  s.n_rot = 4;
  s.linear_factor = 4.0f;
  check_against_reference(s);
}

TEST(SyntheticModel, LlamaRopeFreqsTensor) {
  Spec s;
  s.rope_freqs = true;
  s.freq_base = 500000.0f;
  check_against_reference(s);
}

TEST(SyntheticModel, Qwen2BiasNeox) {
  Spec s;
  s.arch = "qwen2";
  s.freq_base = 1000000.0f;
  check_against_reference(s);
}

TEST(SyntheticModel, Qwen3QkNormWideHeads) {
  Spec s;
  s.arch = "qwen3";
  s.head_dim = 16;  // q_dim 64 != dim 32, as in Qwen3
  s.tied = true;
  check_against_reference(s);
}

// Mistral: a llama file with a sliding window, here 5 keys over 13 positions.
TEST(SyntheticModel, LlamaSlidingWindow) {
  Spec s;
  s.window = 5;
  check_against_reference(s);
}

// Layers 0 and 2 local (window 4, base 10 000), 1 and 3 global (base 1e6, linear scaling
// that the local layers must not apply); wide heads as the real model's.
TEST(SyntheticModel, Gemma3LocalAndGlobalLayers) {
  Spec s;
  s.arch = "gemma3";
  s.n_layers = 4;
  s.pattern = 2;
  s.window = 4;
  s.head_dim = 16;
  s.n_kv_heads = 1;
  s.tied = true;
  s.freq_base = 1000000.0f;
  s.linear_factor = 2.0f;
  check_against_reference(s);
}

TEST(SyntheticModel, Phi3FusedQkvAndGateUp) {
  Spec s;
  s.arch = "phi3";
  s.freq_base = 10000.0f;
  check_against_reference(s);
}

// Mixtral: a llama file with 4 experts, 2 per token.
TEST(SyntheticModel, MixtralExperts) {
  Spec s;
  s.n_expert = 4;
  s.n_expert_used = 2;
  check_against_reference(s);
}

// Qwen3-MoE: Q/K norms, 8 experts narrower than the dense width, 3 per token.
TEST(SyntheticModel, Qwen3MoeExperts) {
  Spec s;
  s.arch = "qwen3moe";
  s.n_expert = 8;
  s.n_expert_used = 3;
  s.expert_ffn = 16;
  check_against_reference(s);
}

// Experts batched: prompts of four sequences and their decode steps run together on two
// threads give each sequence the bits it gets alone on one thread, for every weight type
// the dense path reads; and a batch runs each chosen expert once over all its tokens.
TEST(SyntheticModel, ExpertsBatchedEqualAloneOnQuantizedWeights) {
  for (GgmlType t : {GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q6_K}) {
    SCOPED_TRACE(ggml_type_name(t));
    Spec s;
    s.arch = "qwen3moe";
    s.dim = 256, s.n_heads = 4, s.n_kv_heads = 2, s.head_dim = 64, s.ffn = 256, s.vocab = 64;
    s.n_expert = 8, s.n_expert_used = 2, s.expert_ffn = 256;
    s.matrix_type = t;
    const Built b = build(s, 7);  // the model reads its weights from these bytes
    auto model = load(b);
    ASSERT_TRUE(model) << model.error().message;
    RunnerOptions opt;
    opt.max_batch_tokens = 64;
    opt.max_seqs = 4;
    opt.n_threads = 2;
    CpuRunner batched(**model, opt);
    opt.n_threads = 1;
    CpuRunner alone(**model, opt);
    const int V = s.vocab, n_blocks = 4, kSteps = 4;
    std::vector<std::vector<int32_t>> tokens;
    std::vector<std::vector<int32_t>> tables;
    for (int q = 0; q < 4; ++q) {
      std::vector<int32_t> tk;
      for (int i = 0; i < 6 + 5 * q + kSteps; ++i) tk.push_back((i * (q + 3) + q) % V);
      tokens.push_back(tk);
      std::vector<int32_t> tb;
      for (int b = 0; b < n_blocks; ++b) tb.push_back(4 * b + q);
      tables.push_back(tb);
    }
    KvCacheStorage kv_batch(batched.kv_config(16, 16));
    std::vector<std::unique_ptr<KvCacheStorage>> kv_alone;
    for (int q = 0; q < 4; ++q) kv_alone.push_back(std::make_unique<KvCacheStorage>(alone.kv_config(16, 16)));
    for (int step = 0; step <= kSteps; ++step) {
      std::vector<SeqSlice> batch;
      for (int q = 0; q < 4; ++q) {
        const int32_t prompt = int32_t(tokens[size_t(q)].size()) - kSteps;
        SeqSlice sl;
        sl.n_past = step == 0 ? 0 : prompt + step - 1;
        sl.tokens =
            std::span<const int32_t>(tokens[size_t(q)].data() + sl.n_past, step == 0 ? size_t(prompt) : 1);
        sl.block_table = tables[size_t(q)];
        batch.push_back(sl);
      }
      const int64_t runs_before = batched.stats().expert_runs;
      const float* lg = batched.forward(ForwardBatch{batch}, kv_batch);
      const std::vector<float> got(lg, lg + 4 * V);
      const int64_t batched_runs = batched.stats().expert_runs - runs_before;
      int64_t alone_runs = 0;
      for (int q = 0; q < 4; ++q) {
        const int64_t before = alone.stats().expert_runs;
        const float* want = alone.forward(ForwardBatch{std::span<const SeqSlice>(&batch[size_t(q)], 1)},
                                          *kv_alone[size_t(q)]);
        alone_runs += alone.stats().expert_runs - before;
        for (int v = 0; v < V; ++v)
          ASSERT_EQ(got[size_t(q * V + v)], want[v])
              << "step " << step << " sequence " << q << " logit " << v;
      }
      EXPECT_LE(batched_runs, 2 * s.n_expert);  // at most each expert once per layer
      EXPECT_LT(batched_runs, alone_runs);      // experts shared between sequences ran once
    }
  }
}

// A gemma3 file without its sliding window cannot run: the error names the key.
TEST(SyntheticModel, Gemma3NeedsItsWindow) {
  Spec s;
  s.arch = "gemma3";
  auto m = load(build(s, 1));
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().message.find("gemma3.attention.sliding_window"), std::string::npos)
      << m.error().message;
}

TEST(SyntheticModel, ConfigErrorsNameTheProblem) {
  {
    Spec s;
    s.arch = "gpt2";
    auto m = load(build(s, 1));
    ASSERT_FALSE(m);
    EXPECT_NE(m.error().message.find("unsupported architecture 'gpt2'"), std::string::npos)
        << m.error().message;
  }
  {
    auto m = load(build(Spec{}, 1, "blk.1.attn_k.weight"));
    ASSERT_FALSE(m);
    EXPECT_NE(m.error().message.find("blk.1.attn_k.weight"), std::string::npos) << m.error().message;
  }
  {
    Spec s;
    s.n_kv_heads = 3;  // 4 heads not divisible into 3 groups
    auto m = load(build(s, 1));
    ASSERT_FALSE(m);
    EXPECT_NE(m.error().message.find("head_count_kv"), std::string::npos) << m.error().message;
  }
  {
    Spec s;
    s.arch = "qwen2";
    Built b = build(s, 1);
    // qwen2 needs Q/K/V biases: a llama-shaped file relabelled qwen2 must fail naming one.
    Built llama = build(Spec{}, 1);
    std::string bytes(llama.bytes.begin(), llama.bytes.end());
    const std::string from = "llama", to = "qwen2";
    for (size_t at = bytes.find(from); at != std::string::npos; at = bytes.find(from, at + 1))
      bytes.replace(at, from.size(), to);
    llama.bytes.assign(bytes.begin(), bytes.end());
    auto m = load(llama);
    ASSERT_FALSE(m);
    EXPECT_NE(m.error().message.find("attn_q.bias"), std::string::npos) << m.error().message;
    EXPECT_TRUE(load(b));
  }
}

}  // namespace
}  // namespace kvserve

// A quantized token embedding tied as the LM head is packed once (matmul_pack.h) and
// serves both uses from the packed copy: embed() returns exactly the file row's
// dequantization and the output matmul gives exactly the file layout's logits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "gguf/dequantize.h"
#include "gguf/quant_blocks.h"
#include "gguf_builder.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/matmul_pack.h"
#include "model/model.h"

namespace kvserve {
namespace {

constexpr int kDim = 256, kVocab = 48, kHeads = 4, kFfn = 64;

// Random blocks of type t with sane fp16 scales (random bytes elsewhere).
std::vector<uint8_t> random_blocks(GgmlType t, int64_t n_rows, int64_t n_in, std::mt19937& rng) {
  std::vector<uint8_t> w(ggml_row_bytes(t, n_in) * size_t(n_rows));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : w) b = uint8_t(byte(rng));
  std::uniform_real_distribution<float> mag(0.002f, 0.05f);
  const size_t blk = ggml_traits(t).block_bytes;
  std::vector<size_t> scale_fields;  // offsets of fp16 scales in a block
  switch (t) {
    case GgmlType::Q8_0: scale_fields = {offsetof(BlockQ8_0, d)}; break;
    case GgmlType::Q4_K: scale_fields = {offsetof(BlockQ4_K, d), offsetof(BlockQ4_K, dmin)}; break;
    case GgmlType::Q6_K: scale_fields = {offsetof(BlockQ6_K, d)}; break;
    default: ADD_FAILURE() << "no scale fields for " << ggml_type_name(t);
  }
  for (size_t b = 0; b < w.size(); b += blk)
    for (size_t off : scale_fields) {
      const uint16_t h = fp32_to_fp16(mag(rng));
      std::memcpy(&w[b + off], &h, 2);
    }
  return w;
}

struct TiedModel {
  std::vector<uint8_t> embd;   // [kVocab rows] in the file layout
  std::vector<uint8_t> bytes;  // the GGUF file (the model's views point into it)
};

TiedModel build(GgmlType t) {
  std::mt19937 rng(7 + int(t));
  TiedModel m;
  m.embd = random_blocks(t, kVocab, kDim, rng);
  test::GgufBuilder g;
  g.kv_str("general.architecture", "llama");
  g.kv_u32("llama.embedding_length", kDim);
  g.kv_u32("llama.block_count", 1);
  g.kv_u32("llama.feed_forward_length", kFfn);
  g.kv_u32("llama.attention.head_count", kHeads);
  g.kv_u32("llama.attention.head_count_kv", kHeads);
  g.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-6f);
  g.kv_f32("llama.rope.freq_base", 10000.0f);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    std::vector<float> v(size_t(shape[0] * (shape.size() > 1 ? shape[1] : 1)));
    for (float& x : v) x = nd(rng);
    g.tensor_f32(name, shape, v);
  };
  g.tensor_raw("token_embd.weight", {kDim, kVocab}, uint32_t(t), m.embd);  // no output.weight: tied
  add("output_norm.weight", {kDim});
  add("blk.0.attn_norm.weight", {kDim});
  add("blk.0.attn_q.weight", {kDim, kDim});
  add("blk.0.attn_k.weight", {kDim, kDim});
  add("blk.0.attn_v.weight", {kDim, kDim});
  add("blk.0.attn_output.weight", {kDim, kDim});
  add("blk.0.ffn_norm.weight", {kDim});
  add("blk.0.ffn_gate.weight", {kDim, kFfn});
  add("blk.0.ffn_up.weight", {kDim, kFfn});
  add("blk.0.ffn_down.weight", {kFfn, kDim});
  m.bytes = g.build();
  return m;
}

class TiedEmbedding : public ::testing::TestWithParam<GgmlType> {};

TEST_P(TiedEmbedding, PackedCopyServesEmbedAndOutput) {
  const GgmlType t = GetParam();
  const TiedModel tm = build(t);
  auto f = GgufFile::parse(tm.bytes.data(), tm.bytes.size());
  ASSERT_TRUE(f) << f.error().message;
  auto model = Model::from_gguf(std::move(*f));
  ASSERT_TRUE(model) << model.error().message;
  const Model& m = **model;
  ASSERT_TRUE(m.config().tied_output);
  const WeightView file_view{t, m.token_embd().data, kDim, kVocab};  // no packed copy
  if (matmul_packable(file_view)) {
    EXPECT_NE(m.output().packed, nullptr);
    EXPECT_EQ(m.token_embd().packed, m.output().packed);  // one copy for both uses
  }

  // embed() == the file row, for every token.
  const size_t row_bytes = ggml_row_bytes(t, kDim);
  std::vector<float> want(kDim), got(kDim);
  for (int32_t tok = 0; tok < kVocab; ++tok) {
    dequantize_row(t, tm.embd.data() + size_t(tok) * row_bytes, want.data(), kDim);
    m.embed(tok, got.data());
    ASSERT_EQ(std::memcmp(got.data(), want.data(), sizeof(float) * kDim), 0) << "token " << tok;
  }

  // The LM head gives the file layout's logits, bit for bit, for 1 and several tokens:
  // the AVX-512 packed kernels do the file-layout kernels' arithmetic. The AVX2 packed
  // kernels do the AVX-512 arithmetic (not the AVX2 file-layout kernels'): they agree
  // with the AVX2 file layout up to rounding, and bit for bit with the AVX-512 file
  // layout where the CPU has it (KVSERVE_ISA=avx2 runs this part on an AVX-512 CPU).
  const bool avx2_packed = m.output().packed && best_isa() == Isa::Avx2;
  ThreadPool pool(2);
  std::mt19937 rng(99);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int64_t n_tokens : {1, 5}) {
    std::vector<float> x(size_t(n_tokens * kDim));  // [n_tokens, kDim]
    for (float& v : x) v = nd(rng);
    std::vector<float> y_model(size_t(n_tokens * kVocab)), y_file(y_model.size());  // [n_tokens, kVocab]
    matmul(m.output(), x.data(), n_tokens, y_model.data(), pool);
    matmul_isa(best_isa(), file_view, x.data(), n_tokens, y_file.data(), pool);
    if (!avx2_packed) {
      ASSERT_EQ(std::memcmp(y_model.data(), y_file.data(), sizeof(float) * y_file.size()), 0)
          << n_tokens << " tokens";
      continue;
    }
    for (size_t i = 0; i < y_file.size(); ++i)
      ASSERT_NEAR(y_model[i], y_file[i], 2e-2f * (1.0f + std::fabs(y_file[i]))) << n_tokens << " tokens";
    if (cpu_isa() == Isa::Avx512) {
      matmul_isa(Isa::Avx512, file_view, x.data(), n_tokens, y_file.data(), pool);
      ASSERT_EQ(std::memcmp(y_model.data(), y_file.data(), sizeof(float) * y_file.size()), 0)
          << n_tokens << " tokens, AVX-512 reference";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, TiedEmbedding,
                         ::testing::Values(GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K),
                         [](const auto& info) { return std::string(ggml_type_name(info.param)); });

}  // namespace
}  // namespace kvserve

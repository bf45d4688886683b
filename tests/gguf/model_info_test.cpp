#include "gguf/model_info.h"

#include <gtest/gtest.h>

#include "common/test_paths.h"

namespace kvserve {
namespace {

ModelInfo info_of(const std::string& path) {
  auto f = GgufFile::open(path);
  EXPECT_TRUE(f) << f.error().message;
  return f ? build_model_info(**f) : ModelInfo{};
}

const GgufValue* hparam(const ModelInfo& m, const std::string& key) {
  for (const auto& [k, v] : m.hparams)
    if (k == key) return &v;
  return nullptr;
}

TEST(ModelInfo, SynthQ4KM) {
  const ModelInfo m = info_of(test::shared_path("models/synth-3m-q4_k_m.gguf"));
  EXPECT_EQ(m.architecture, "llama");
  EXPECT_EQ(m.gguf_version, 3u);
  EXPECT_EQ(m.alignment, 32u);
  EXPECT_EQ(m.context_length, 4096);
  EXPECT_EQ(m.file_type, 15);
  EXPECT_STREQ(llama_file_type_name(*m.file_type), "Q4_K_M");
  ASSERT_NE(hparam(m, "llama.embedding_length"), nullptr);
  EXPECT_EQ(hparam(m, "llama.embedding_length")->as_int(), 256);
  EXPECT_EQ(hparam(m, "llama.block_count")->as_int(), 4);
  EXPECT_EQ(hparam(m, "llama.attention.head_count_kv")->as_int(), 2);
  for (const auto& [k, v] : m.hparams) EXPECT_EQ(k.rfind("llama.", 0), 0u) << k;
  EXPECT_EQ(m.tokenizer.model, "llama");
  EXPECT_EQ(m.tokenizer.vocab_size, 512);
  EXPECT_EQ(m.tokenizer.bos_id, 1);
  EXPECT_EQ(m.tokenizer.eos_id, 2);
  EXPECT_FALSE(m.tokenizer.has_chat_template);
  // 4 layers x 7 matrices + output, token_embd (25 q4_k + 5 q6_k), 9 norms in f32.
  EXPECT_EQ(m.n_tensors, 39);
  EXPECT_EQ(m.by_type.at("q4_k").tensors, 25);
  EXPECT_EQ(m.by_type.at("q6_k").tensors, 5);
  EXPECT_EQ(m.by_type.at("f32").tensors, 9);
  // dim 256, ffn 768, kv dim 64, vocab 512: embeddings + output + 4 layers + norms.
  const int64_t layer = 256 * 256 * 2 + 256 * 64 * 2 + 3 * 256 * 768 + 2 * 256;
  EXPECT_EQ(m.n_params, 2 * 512 * 256 + 4 * layer + 256);
  EXPECT_GT(m.bits_per_weight(), 4.5);
  EXPECT_LT(m.bits_per_weight(), 5.5);

  const std::string text = format_model_info(m);
  for (const char* s : {"architecture:     llama", "context length:   4096", "llama.feed_forward_length",
                        "q4_k: 25", "chat template:    no", "file type:        15 (Q4_K_M)"})
    EXPECT_NE(text.find(s), std::string::npos) << s << "\n" << text;
}

TEST(ModelInfo, VocabOnlyFile) {
  const ModelInfo m = info_of(test::shared_path("vocab/ggml-vocab-phi-3.gguf"));
  EXPECT_EQ(m.architecture, "phi3");
  EXPECT_EQ(m.n_tensors, 0);
  EXPECT_EQ(m.n_params, 0);
  EXPECT_EQ(m.bits_per_weight(), 0.0);
  EXPECT_EQ(m.tokenizer.vocab_size, 32064);
  EXPECT_EQ(m.tokenizer.eos_id, 32000);
  EXPECT_EQ(m.tokenizer.add_bos, true);
  EXPECT_TRUE(m.tokenizer.has_chat_template);
  EXPECT_NE(format_model_info(m).find("tokenizer-only"), std::string::npos);
}

TEST(ModelInfo, GptTwoMerges) {
  const ModelInfo m = info_of(test::shared_path("vocab/ggml-vocab-gpt-2.gguf"));
  EXPECT_EQ(m.tokenizer.model, "gpt2");
  EXPECT_TRUE(m.tokenizer.pre.has_value());
  ASSERT_TRUE(m.tokenizer.n_merges.has_value());
  EXPECT_GT(*m.tokenizer.n_merges, 40000);
}

TEST(ModelInfo, SmolLM2) {
  if (!test::file_exists(test::smollm2_path()))
    KVSERVE_MISSING_ASSET(test::smollm2_path() << " (run scripts/fetch_model.sh)");
  const ModelInfo m = info_of(test::smollm2_path());
  EXPECT_EQ(m.tokenizer.pre, "smollm");
  EXPECT_EQ(m.tokenizer.vocab_size, 49152);
  EXPECT_TRUE(m.tokenizer.has_chat_template);
  EXPECT_EQ(m.context_length, 8192);
  EXPECT_EQ(m.by_type.at("q8_0").tensors, 1);  // tied embedding
  EXPECT_EQ(m.n_params, 134515008);
}

TEST(ModelInfo, FormatsValues) {
  GgufValue s;
  s.type = GgufType::STRING;
  s.str = "a\n\"b\"\x01";
  EXPECT_EQ(format_gguf_value(s), "\"a\\n\\\"b\\\"\\x01\"");
  s.str = std::string(100, 'x');
  EXPECT_NE(format_gguf_value(s).find("(100 bytes)"), std::string::npos);
  GgufValue a;
  a.type = GgufType::ARRAY;
  a.array_type = GgufType::INT32;
  for (int i = 0; i < 10; ++i) {
    GgufValue e;
    e.type = GgufType::INT32;
    e.i64 = -i;
    a.array.push_back(e);
  }
  EXPECT_EQ(format_gguf_value(a, 3), "[0, -1, -2, ... (10 items)]");
  GgufValue f;
  f.type = GgufType::FLOAT32;
  f.f64 = 0.5;
  EXPECT_EQ(format_gguf_value(f), "0.5");
  GgufValue b;
  b.type = GgufType::BOOL;
  b.u64 = 1;
  EXPECT_EQ(format_gguf_value(b), "true");
}

}  // namespace
}  // namespace kvserve

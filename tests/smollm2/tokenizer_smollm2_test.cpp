// Tokenizer on the real SmolLM2-135M-Instruct model (gpt2 BPE, smollm pre-tokenizer,
// ChatML special tokens). Needs models/SmolLM2-135M-Instruct.Q4_1.gguf
// (scripts/fetch_model.sh); skipped when it is absent.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "common/test_paths.h"
#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace kvserve {
namespace {

const Tokenizer* smollm2() {
  static std::unique_ptr<Tokenizer> tok = [] {
    std::unique_ptr<Tokenizer> t;
    const std::string path = test::smollm2_path();
    if (!test::file_exists(path)) return t;
    auto file = GgufFile::open(path);
    if (!file) return t;
    auto r = Tokenizer::from_gguf(**file);
    if (r) t = std::move(*r);
    return t;
  }();
  return tok.get();
}

#define SMOLLM2_OR_SKIP(var)        \
  const Tokenizer* var = smollm2(); \
  if (!var) KVSERVE_MISSING_ASSET("the SmolLM2 model (run scripts/fetch_model.sh)");

TEST(SmolLM2Tokenizer, Metadata) {
  SMOLLM2_OR_SKIP(tok);
  EXPECT_EQ(tok->model_type(), "gpt2");
  EXPECT_EQ(tok->pre_type(), "smollm");
  EXPECT_EQ(tok->n_vocab(), 49152);
  EXPECT_EQ(tok->bos_id(), 1);  // <|im_start|>
  EXPECT_EQ(tok->eos_id(), 2);  // <|im_end|>
  EXPECT_EQ(tok->eot_id(), 2);
  EXPECT_EQ(tok->pad_id(), 2);
  EXPECT_FALSE(tok->add_bos());  // the file says add_bos_token = false
  EXPECT_TRUE(tok->is_eog(2));
  EXPECT_TRUE(tok->is_eog(0));  // <|endoftext|>
  EXPECT_FALSE(tok->is_eog(1));
  EXPECT_TRUE(tok->is_control(1));
  EXPECT_EQ(tok->find_token("<|im_start|>"), 1);
}

TEST(SmolLM2Tokenizer, KnownIds) {
  SMOLLM2_OR_SKIP(tok);
  // Words "Hello" "," " world" "!" are whole tokens: Hello=19556 ,=28 Ġworld=905 !=17.
  EXPECT_EQ(tok->encode("Hello, world!", true, false), (std::vector<int32_t>{19556, 28, 905, 17}));
  // The smollm pre-tokenizer splits digits one by one (1=33 2=34 3=35).
  EXPECT_EQ(tok->encode("123", false, false), (std::vector<int32_t>{33, 34, 35}));
  EXPECT_EQ(tok->token_to_piece(905), " world");
}

TEST(SmolLM2Tokenizer, ChatMlSpecialTokens) {
  SMOLLM2_OR_SKIP(tok);
  const std::string chat = "<|im_start|>user\nHi<|im_end|>\n";
  // user=4093 Ċ=198 Hi=26843
  EXPECT_EQ(tok->encode(chat, false, true), (std::vector<int32_t>{1, 4093, 198, 26843, 2, 198}));
  const auto literal = tok->encode(chat, false, false);
  EXPECT_EQ(std::count(literal.begin(), literal.end(), 1), 0);
  EXPECT_EQ(std::count(literal.begin(), literal.end(), 2), 0);
  EXPECT_EQ(tok->decode(literal), chat);
  EXPECT_EQ(tok->decode(tok->encode(chat, false, true)), chat);
  EXPECT_EQ(tok->decode(tok->encode(chat, false, true), /*skip_special=*/true), "user\nHi\n");
}

TEST(SmolLM2Tokenizer, MultilingualAndEmojiRoundTrip) {
  SMOLLM2_OR_SKIP(tok);
  for (const char* text :
       {"Grüße aus Köln, naïve café", "大语言模型的推理过程分为两个核心阶段", "Привет, мир! Как дела?",
        "مرحبا بالعالم", "🦙🚀👨‍👩‍👧‍👦 emoji", "日本語のテキスト and 한국어",
        "tabs\tand\r\nnewlines\n\n\n", "    indented code:\n        return x ** 2  # comment"}) {
    const auto ids = tok->encode(text, false, false);
    EXPECT_EQ(tok->decode(ids), text);
    StreamingDetokenizer detok(*tok);
    std::string streamed;
    for (int32_t id : ids) {
      std::string part = detok.push(id), clean;
      EXPECT_TRUE(utf8::sanitize(part, clean)) << "partial UTF-8 from push()";
      streamed += part;
    }
    streamed += detok.flush();
    EXPECT_EQ(streamed, text);
  }
}

}  // namespace
}  // namespace kvserve

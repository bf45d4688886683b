// Gemma-3-270M's tokenizer: SentencePiece-style vocabulary of 262,144 tokens with byte
// fallback, no dummy-prefix space (add_space_prefix = false), user-defined tokens for
// runs of spaces, tabs and newlines and for HTML tags, and <start_of_turn>/<end_of_turn>
// control tokens. Checked against llama.cpp's tokenization of the golden prompts.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gemma3/gemma3_assets.h"
#include "tokenizer/unicode.h"

namespace kvserve {
namespace {

TEST(Gemma3Tokenizer, Metadata) {
  GEMMA3_OR_SKIP(tok);
  EXPECT_EQ(tok->model_type(), "llama");
  EXPECT_EQ(tok->n_vocab(), 262144);
  EXPECT_EQ(tok->bos_id(), 2);  // <bos>
  EXPECT_EQ(tok->eos_id(), 1);  // <eos>
  EXPECT_EQ(tok->unk_id(), 3);
  EXPECT_EQ(tok->pad_id(), 0);
  EXPECT_TRUE(tok->add_bos());
  EXPECT_FALSE(tok->add_eos());
  EXPECT_FALSE(tok->strips_prefix_space());  // add_space_prefix = false
  EXPECT_EQ(tok->find_token("<start_of_turn>"), 105);
  EXPECT_EQ(tok->find_token("<end_of_turn>"), 106);
  EXPECT_EQ(tok->eot_id(), 106);
  EXPECT_TRUE(tok->is_eog(1));
  EXPECT_TRUE(tok->is_eog(106));
  EXPECT_FALSE(tok->is_eog(105));
  EXPECT_TRUE(tok->is_control(105));
  EXPECT_EQ(tok->token_to_piece(248), "\n");    // <0x0A>, a byte token
  EXPECT_EQ(tok->token_to_piece(140), "    ");  // user-defined, stored with spaces
}

// Every prompt of the golden file tokenizes as llama.cpp did (with BOS, special tokens
// parsed), and every greedy continuation detokenizes to its text.
TEST(Gemma3Tokenizer, GoldenPromptsAndGreedyText) {
  GEMMA3_OR_SKIP(tok);
  const std::string golden = test::shared_path("golden/gemma-3-270m-q4_k_m.shared.jsonl");
  std::ifstream in(golden);
  if (!in) KVSERVE_MISSING_ASSET(golden);
  int prompts = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    const std::string prompt = j.at("prompt");
    const auto want = j.at("prompt_tokens").get<std::vector<int32_t>>();
    const auto ids = tok->encode(prompt, /*add_special=*/true, /*parse_special=*/true);
    EXPECT_EQ(ids, want) << prompt;
    EXPECT_EQ(tok->decode(ids), "<bos>" + prompt);  // nothing to strip: no prefix space

    const auto greedy = j.at("greedy_tokens").get<std::vector<int32_t>>();
    StreamingDetokenizer detok(*tok, /*skip_special=*/true);
    std::string text;
    for (int32_t id : greedy) text += detok.push(id);
    text += detok.flush();
    EXPECT_EQ(text, j.at("greedy_text").get<std::string>()) << prompt;
    ++prompts;
  }
  EXPECT_EQ(prompts, 5);
}

TEST(Gemma3Tokenizer, ChatMarkersOnlyWhenParsingSpecial) {
  GEMMA3_OR_SKIP(tok);
  const std::string chat = "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n";
  // 107 is the user-defined "\n", 2364 "user", 4368 "model".
  EXPECT_EQ(tok->encode(chat, false, true),
            (std::vector<int32_t>{105, 2364, 107, 10979, 106, 107, 105, 4368, 107}));
  const auto literal = tok->encode(chat, false, false);
  EXPECT_EQ(std::count(literal.begin(), literal.end(), 105), 0);
  EXPECT_EQ(std::count(literal.begin(), literal.end(), 106), 0);
  EXPECT_EQ(tok->decode(literal), chat);
  EXPECT_EQ(tok->decode(tok->encode(chat, false, true), /*skip_special=*/true), "user\nHi\nmodel\n");
}

// Ids from SentencePiece (Python) on a model rebuilt from this GGUF's vocabulary, which
// agrees with llama.cpp's merge order here. Whitespace runs and HTML tags are
// user-defined tokens, matched before merging; no space is prefixed to the text.
TEST(Gemma3Tokenizer, KnownIds) {
  GEMMA3_OR_SKIP(tok);
  const std::pair<std::string, std::vector<int32_t>> cases[] = {
      {"Hello, world!", {9259, 236764, 1902, 236888}},
      {"Grüße aus Köln, naïve café", {9322, 236959, 16756, 5581, 115362, 236764, 120362, 33443}},
      {"大语言模型的推理过程分为两个核心阶段",
       {237110, 37557, 139919, 198749, 23967, 73608, 22213, 43173, 52582}},
      {"Привет, мир! Как дела?", {116130, 236764, 58562, 236888, 30478, 22633, 236881}},
      {"    indented code:\n        return x ** 2  # comment",
       {140, 724, 16764, 3393, 236787, 107, 144, 2060, 1123, 5213, 236743, 236778, 138, 236865, 5739}},
      {"tabs\tand\nnewlines\n\n", {39218, 255968, 624, 107, 208697, 108}},
      {"a\t\tb\t\t\tc", {236746, 255969, 236763, 255970, 236755}},
      {" leading space and trailing space ", {5830, 2557, 532, 45330, 2557, 236743}},
      {"<table><tr><td>cell</td></tr></table>", {168, 173, 175, 5447, 183, 181, 176}},
      {"   ", {139}},
  };
  for (const auto& [text, want] : cases) {
    EXPECT_EQ(tok->encode(text, false, false), want) << text;
    EXPECT_EQ(tok->decode(want), text);
  }
}

TEST(Gemma3Tokenizer, RoundTripsAndStreams) {
  GEMMA3_OR_SKIP(tok);
  for (const char* text :
       {"مرحبا بالعالم", "🦙🚀👨‍👩‍👧‍👦 emoji", "日本語のテキスト and 한국어",
        "\xF0\x9F\xAB\xA0 new emoji", "def f(x):\n\tif x:\n\t\treturn [i for i in range(10)]  \n",
        "x = {\"a\": 1}; // std::vector<int> v{1,2};", "\n\n\n\n trailing\r\n", "$1,234.56 (approx. 12%)"}) {
    const auto ids = tok->encode(text, true, false);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids[0], 2);
    EXPECT_EQ(tok->decode(ids, /*skip_special=*/true), text);
    StreamingDetokenizer detok(*tok, /*skip_special=*/true, /*sequence_start=*/true);
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

// The vocabulary is 5x SmolLM2's: loading it must stay well under a second (about
// 0.2-0.3 s on a 2-core machine; the bound only catches a quadratic regression).
TEST(Gemma3Tokenizer, LoadsQuickly) {
  const GgufFile* file = test::gemma3_gguf();
  if (!file) KVSERVE_MISSING_ASSET(test::gemma3_path() << " (run scripts/fetch_model.sh gemma3)");
  const auto t0 = std::chrono::steady_clock::now();
  auto tok = Tokenizer::from_gguf(*file);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(tok) << tok.error().message;
  RecordProperty("load_seconds", std::to_string(s));
  EXPECT_LT(s, 5.0);
}

}  // namespace
}  // namespace kvserve

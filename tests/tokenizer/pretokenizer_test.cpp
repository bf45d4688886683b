// Pre-tokenizer regex sequences: every supported name compiles, words cover the text,
// and a few characteristic splits per family.
#include "tokenizer/pretokenizer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kvserve {
namespace {

std::vector<std::string> words(std::string_view pre, std::string_view text) {
  auto pt = PreTokenizer::create(pre);
  EXPECT_TRUE(pt) << pt.error().message;
  if (!pt) return {};
  std::vector<WordSpan> spans;
  (*pt)->split(text, spans);
  std::vector<std::string> out;
  for (const WordSpan& w : spans) out.emplace_back(text.substr(w.begin, w.end - w.begin));
  return out;
}

using W = std::vector<std::string>;

TEST(PreTokenizer, AllNamesCompileAndCoverText) {
  const std::string text = "Hello, World! It's 2024-12-31\r\n\n   x  ÄÖÜ 你好世界 🦙\u0085end  ";
  for (const char* name : {"default", "llama3", "llama-bpe", "qwen2", "gpt-2", "starcoder", "smollm",
                           "refact", "deepseek-llm", "deepseek-coder", "deepseek-v3", "deepseek3-llm",
                           "falcon", "mpt", "tekken", "gpt-4o", "bloom", "viking"}) {
    std::string joined;
    for (const auto& w : words(name, text)) {
      EXPECT_FALSE(w.empty()) << name;
      joined += w;
    }
    EXPECT_EQ(joined, text) << name;
  }
  EXPECT_FALSE(PreTokenizer::create("no-such-pre"));
  EXPECT_TRUE(PreTokenizer::create(""));  // absent: default
}

TEST(PreTokenizer, Gpt2) {
  EXPECT_EQ(words("gpt-2", "Hello world's  end 123"), (W{"Hello", " world", "'s", " ", " end", " 123"}));
  EXPECT_EQ(words("gpt-2", "a\n\nb"), (W{"a", "\n", "\n", "b"}));
}

TEST(PreTokenizer, DigitsPerFamily) {
  EXPECT_EQ(words("llama3", "12345"), (W{"123", "45"}));
  EXPECT_EQ(words("qwen2", "123"), (W{"1", "2", "3"}));
  EXPECT_EQ(words("smollm", "x 123"), (W{"x", " ", "1", "2", "3"}));
  EXPECT_EQ(words("deepseek-v3", "12345"), (W{"123", "45"}));
}

TEST(PreTokenizer, Llama3ContractionsAndNewlines) {
  EXPECT_EQ(words("llama3", "I'M here\n\n  ok"), (W{"I", "'M", " here", "\n\n", " ", " ok"}));
  // Only ASCII letters fold: "'ſ" (long s) is no contraction.
  EXPECT_EQ(words("llama3", "x'S"), (W{"x", "'S"}));
}

TEST(PreTokenizer, NelIsWhitespace) {
  // U+0085 counts as white space (Unicode White_Space), as in llama.cpp.
  EXPECT_EQ(words("gpt-2", "a\u0085\u0085b"), (W{"a", "\u0085", "\u0085", "b"}));
}

TEST(PreTokenizer, DeepseekCoderSplitsCjkAndNewlines) {
  EXPECT_EQ(words("deepseek-coder", "ab\n你好 12"), (W{"ab", "\n", "你好", " ", "1", "2"}));
}

}  // namespace
}  // namespace kvserve

// Tokenizer behaviour beyond the conformance vectors: special tokens, BOS/EOS, byte
// fallback, decoding rules, streaming, errors.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/test_paths.h"
#include "gguf/gguf_file.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"

namespace kvserve {
namespace {

// Tokenizers are loaded once per file for the whole test binary.
const Tokenizer* load(const std::string& relative) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto it = cache.find(relative);
  if (it != cache.end()) return it->second.get();
  const std::string path = test::shared_path(relative);
  if (!test::file_exists(path)) return nullptr;
  auto file = GgufFile::open(path);
  if (!file) return nullptr;
  auto tok = Tokenizer::from_gguf(**file);
  EXPECT_TRUE(tok) << tok.error().message;
  if (!tok) return nullptr;
  return (cache[relative] = std::move(*tok)).get();
}

#define LOAD_OR_SKIP(var, rel)      \
  const Tokenizer* var = load(rel); \
  if (!var) KVSERVE_MISSING_ASSET("shared/" << rel);

std::vector<int32_t> cat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

const char* const kMultilingual[] = {
    "Hello world",
    "  leading spaces and trailing  ",
    "line one\nline two\r\n\ttabbed",
    "大语言模型的推理过程分为两个核心阶段",
    "Emoji test 🦙🚀 and accents: café naïve",
    "Русский текст, ελληνικά, العربية, हिन्दी, 日本語のテキスト, 한국어",
    "numbers 1234567890 and 3.14159, symbols <>&^%$#@!~`|\\",
    "contractions: don't, I'm, we've, they'll, she'd, IT'S",
    "🏳️‍🌈 👨‍👩‍👧‍👦 zero\u200bwidth",
};

TEST(SpmTokenizer, MetadataAndDefaults) {
  LOAD_OR_SKIP(tok, "models/stories260K.gguf");
  EXPECT_EQ(tok->model_type(), "llama");
  EXPECT_EQ(tok->n_vocab(), 512);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_TRUE(tok->add_bos());  // SPM default when the file does not say
  EXPECT_FALSE(tok->add_eos());
  EXPECT_TRUE(tok->is_eog(2));
  EXPECT_FALSE(tok->is_eog(1));
  EXPECT_TRUE(tok->is_control(1));
  EXPECT_FALSE(tok->is_control(300));
  EXPECT_EQ(tok->find_token("<s>"), 1);
  EXPECT_EQ(tok->find_token("no such token"), std::nullopt);
}

TEST(SpmTokenizer, BosAndDummyPrefix) {
  LOAD_OR_SKIP(tok, "models/stories260K.gguf");
  const auto plain = tok->encode("Once upon a time", false, false);
  const auto with_bos = tok->encode("Once upon a time", true, false);
  EXPECT_EQ(with_bos, cat({{1}, plain}));
  EXPECT_EQ(with_bos, (std::vector<int32_t>{1, 403, 407, 261, 378}));
  // The dummy prefix makes "Once" and " Once" differ only by one extra space token.
  EXPECT_EQ(tok->decode(with_bos, true), "Once upon a time");
  EXPECT_EQ(tok->decode(with_bos, false), "<s>Once upon a time");
  EXPECT_EQ(tok->decode(plain), "Once upon a time");
  // A continuation keeps its leading space.
  EXPECT_EQ(tok->decode(plain, true, /*sequence_start=*/false), " Once upon a time");
  EXPECT_TRUE(tok->encode("", false, false).empty());
  EXPECT_EQ(tok->encode("", true, false), (std::vector<int32_t>{1}));
}

TEST(SpmTokenizer, ByteFallbackRoundTrips) {
  LOAD_OR_SKIP(tok, "models/stories260K.gguf");
  // The 512-token vocabulary has no "ℤ": it is written as its three UTF-8 bytes.
  ASSERT_EQ(tok->find_token("ℤ"), std::nullopt);
  const auto ids = tok->encode("ℤ", false, false);
  ASSERT_GE(ids.size(), 3u);
  const std::vector<int32_t> tail(ids.end() - 3, ids.end());
  EXPECT_EQ(tail, (std::vector<int32_t>{3 + 0xE2, 3 + 0x84, 3 + 0xA4}));  // <0xE2> <0x84> <0xA4>
  EXPECT_EQ(tok->token_to_piece(3 + 0xE2), "\xE2");
  EXPECT_EQ(tok->token_text(3 + 0xE2), "<0xE2>");
  for (const char* t : kMultilingual) EXPECT_EQ(tok->decode(tok->encode(t, true, false), true), t);
}

TEST(SpmTokenizer, Llama2VocabMatchesKnownIds) {
  LOAD_OR_SKIP(tok, "models/llama-2-tiny-random.gguf");
  EXPECT_EQ(tok->encode("Hello world", true, false), (std::vector<int32_t>{1, 15043, 3186}));
  EXPECT_EQ(tok->token_to_piece(15043), " Hello");
  for (const char* t : kMultilingual) EXPECT_EQ(tok->decode(tok->encode(t, true, false), true), t);
}

// Straightforward SPM: merge the best-scoring adjacent pair (leftmost on ties) until
// none forms a token; symbols that are no token become byte tokens.
std::vector<int32_t> reference_spm(const Vocab& v, const std::string& text) {
  std::string s = "\xE2\x96\x81";
  for (char c : text) s += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
  std::vector<std::string> sym;
  for (size_t i = 0; i < s.size();) {
    size_t n = std::min(utf8::seq_len(static_cast<unsigned char>(s[i])), s.size() - i);
    sym.push_back(s.substr(i, n));
    i += n;
  }
  while (true) {
    int best = -1;
    float best_score = 0;
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      int32_t id = v.find(sym[i] + sym[i + 1]);
      if (id >= 0 && (best < 0 || v.scores[id] > best_score)) {
        best = static_cast<int>(i);
        best_score = v.scores[id];
      }
    }
    if (best < 0) break;
    sym[best] += sym[best + 1];
    sym.erase(sym.begin() + best + 1);
  }
  std::vector<int32_t> ids;
  for (const std::string& p : sym) {
    if (int32_t id = v.find(p); id >= 0) {
      ids.push_back(id);
      continue;
    }
    for (unsigned char b : p) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      ids.push_back(v.find(name));
    }
  }
  return ids;
}

TEST(SpmTokenizer, MatchesStraightforwardReferenceOnRandomText) {
  const char* const parts[] = {
      "the",    " quick",  "HELLO",  "don't",  " ",    "  ",     "\t",    "\n",
      "\n\n",   "123",     "3.14",   "!!",     "...",  "(x)",    "<|x|>", "é",
      "café",   "Straße",  "Привет", "日本語", "中文", "한국어", "🦙",  "👨‍👩‍👧",
      "\u00a0", "x\u0301", "ﬁ",      "½",      "__",   "::",     "==",    "ing",
      "tion"};
  std::mt19937 rng(1234);
  for (const char* rel : {"models/stories260K.gguf", "models/llama-2-tiny-random.gguf"}) {
    const Tokenizer* tok = load(rel);
    if (!tok) continue;
    for (int n = 0; n < 400; ++n) {
      std::string text;
      const int k = 1 + static_cast<int>(rng() % 10);
      for (int i = 0; i < k; ++i) text += parts[rng() % std::size(parts)];
      ASSERT_EQ(tok->encode(text, false, false), reference_spm(tok->vocab(), text)) << rel << ": " << text;
    }
  }
}

TEST(SpecialTokens, ParsedOnlyWhenAsked) {
  LOAD_OR_SKIP(tok, "vocab/ggml-vocab-phi-3.gguf");
  const int32_t user = *tok->find_token("<|user|>");
  const int32_t end = *tok->find_token("<|end|>");
  const auto parsed = tok->encode("<|user|>\nHi<|end|>", false, true);
  // Phi-3 strips whitespace right of its special tokens; text after a special token gets
  // the dummy-prefix space like text at the start.
  EXPECT_EQ(parsed, cat({{user}, tok->encode("Hi", false, false), {end}}));
  const auto literal = tok->encode("<|user|>\nHi<|end|>", false, false);
  EXPECT_EQ(std::count(literal.begin(), literal.end(), user), 0);
  EXPECT_GT(literal.size(), parsed.size());
  EXPECT_EQ(tok->decode(literal), "<|user|>\nHi<|end|>");
  EXPECT_EQ(tok->decode(parsed, false), "<|user|>Hi<|end|>");
  EXPECT_EQ(tok->decode(parsed, true), "Hi");
  EXPECT_TRUE(tok->is_eog(end));
  EXPECT_TRUE(tok->is_eog(tok->eos_id()));
}

TEST(SpecialTokens, UserDefinedAlwaysMatched) {
  LOAD_OR_SKIP(tok, "vocab/ggml-vocab-deepseek-coder.gguf");
  // deepseek-coder declares a few accented letters as user-defined tokens.
  const int32_t o_uml = *tok->find_token("ö");
  EXPECT_EQ(tok->encode("ö", false, false), (std::vector<int32_t>{o_uml}));
  const auto ids = tok->encode("schön", false, false);
  EXPECT_NE(std::find(ids.begin(), ids.end(), o_uml), ids.end());
  EXPECT_EQ(tok->decode(ids), "schön");
  // Control tokens in text stay text unless parse_special.
  const int32_t bos = tok->bos_id();
  const std::string bos_text = tok->token_text(bos);
  EXPECT_EQ(tok->encode(bos_text + "x", false, true), cat({{bos}, tok->encode("x", false, false)}));
  const auto literal = tok->encode(bos_text + "x", false, false);
  EXPECT_EQ(std::count(literal.begin(), literal.end(), bos), 0);
  // deepseek-coder's file asks for BOS.
  EXPECT_EQ(tok->encode("x", true, false).front(), bos);
}

TEST(SpecialTokens, LongestMatchWins) {
  LOAD_OR_SKIP(tok, "vocab/ggml-vocab-starcoder.gguf");
  // "<fim_prefix>" must not be cut into a shorter special token plus text.
  const int32_t fim = *tok->find_token("<fim_prefix>");
  EXPECT_EQ(tok->encode("<fim_prefix>", false, true), (std::vector<int32_t>{fim}));
  EXPECT_EQ(tok->encode("a<|endoftext|><fim_prefix>b", false, true),
            cat({tok->encode("a", false, false), {0, fim}, tok->encode("b", false, false)}));
}

TEST(BpeTokenizer, Gpt2KnownIdsAndByteMap) {
  LOAD_OR_SKIP(tok, "vocab/ggml-vocab-gpt-2.gguf");
  EXPECT_EQ(tok->model_type(), "gpt2");
  EXPECT_EQ(tok->pre_type(), "gpt-2");
  EXPECT_FALSE(tok->add_bos());
  EXPECT_EQ(tok->encode("Hello world", true, false), (std::vector<int32_t>{15496, 995}));
  EXPECT_EQ(tok->token_text(995), "\xC4\xA0world");  // "Ġworld"
  EXPECT_EQ(tok->token_to_piece(995), " world");
  EXPECT_EQ(tok->eos_id(), 50256);
  EXPECT_TRUE(tok->is_eog(50256));
  for (const char* t : kMultilingual) EXPECT_EQ(tok->decode(tok->encode(t, false, false)), t);
  // Every byte value survives a round trip.
  std::string all;
  for (int b = 1; b < 128; ++b) all.push_back(static_cast<char>(b));
  EXPECT_EQ(tok->decode(tok->encode(all, false, false)), all);
}

TEST(BpeTokenizer, InvalidUtf8BecomesReplacementCharacter) {
  LOAD_OR_SKIP(tok, "vocab/ggml-vocab-gpt-2.gguf");
  EXPECT_EQ(tok->decode(tok->encode("a\xFF"
                                    "b",
                                    false, false)),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(tok->encode("a\xFF"
                        "b",
                        false, false),
            tok->encode("a\xEF\xBF\xBD"
                        "b",
                        false, false));
}

TEST(BpeTokenizer, UnknownPreTokenizerIsAnError) {
  const std::string path = test::shared_path("vocab/ggml-vocab-gpt-2.gguf");
  if (!test::file_exists(path)) KVSERVE_MISSING_ASSET(path);
  auto file = GgufFile::open(path);
  ASSERT_TRUE(file);
  auto vocab = load_vocab(**file);
  ASSERT_TRUE(vocab);
  vocab->pre = "no-such-pre";
  auto tok = Tokenizer::from_vocab(std::move(*vocab));
  ASSERT_FALSE(tok);
  EXPECT_NE(tok.error().message.find("no-such-pre"), std::string::npos);
}

TEST(Vocab, RejectsUnsupportedModelAndBadMetadata) {
  Vocab v;
  v.model = "bert";
  v.tokens = {"a", "b"};
  ASSERT_TRUE(finalize_vocab(v));
  EXPECT_FALSE(Tokenizer::from_vocab(v));

  Vocab w;
  w.model = "llama";
  w.tokens = {"a", "b"};
  w.scores = {0.0f};  // wrong length
  EXPECT_FALSE(finalize_vocab(w));
}

// An SPM byte token spelled <0x..> without two hex digits (a corrupt file) is a clear
// error, not an exception out of the loader; well-formed ones render as their byte.
TEST(Vocab, MalformedSpmByteTokenIsAnError) {
  for (const char* spelling : {"<0xZZ>", "<0x4g>", "<0x41>"}) {
    Vocab v;
    v.model = "llama";
    v.tokens = {"<unk>", "<s>", "</s>", spelling};
    v.scores = {0, 0, 0, 0};
    v.types = {TokenType::kUnknown, TokenType::kControl, TokenType::kControl, TokenType::kByte};
    v.bos_id = 1;
    v.eos_id = 2;
    v.unk_id = 0;
    ASSERT_TRUE(finalize_vocab(v));
    auto tok = Tokenizer::from_vocab(std::move(v));
    if (std::string(spelling) == "<0x41>") {
      ASSERT_TRUE(tok) << tok.error().message;
      EXPECT_EQ((*tok)->decode(std::vector<int32_t>{3}), "A");
    } else {
      ASSERT_FALSE(tok) << spelling;
      EXPECT_NE(tok.error().message.find(std::string("byte token 3 is '") + spelling), std::string::npos)
          << tok.error().message;
    }
  }
}

TEST(Vocab, HandBuiltSpmMergesByScore) {
  // "▁ab" wins over "▁a" + "b" because the merge order follows scores.
  Vocab v;
  v.model = "llama";
  v.tokens = {"<unk>",
              "<s>",
              "</s>",
              "\xE2\x96\x81",
              "a",
              "b",
              "\xE2\x96\x81"
              "a",
              "ab",
              "\xE2\x96\x81"
              "ab"};
  v.scores = {0, 0, 0, -1, -1, -1, -3, -2, -4};
  v.types = {TokenType::kUnknown, TokenType::kControl, TokenType::kControl,
             TokenType::kNormal,  TokenType::kNormal,  TokenType::kNormal,
             TokenType::kNormal,  TokenType::kNormal,  TokenType::kNormal};
  v.bos_id = 1;
  v.eos_id = 2;
  v.unk_id = 0;
  v.add_bos = true;
  v.add_space_prefix = true;
  ASSERT_TRUE(finalize_vocab(v));
  auto tok = Tokenizer::from_vocab(std::move(v));
  ASSERT_TRUE(tok) << tok.error().message;
  // "ab" (-2) merges before "▁a" (-3); then "▁"+"ab" -> "▁ab".
  EXPECT_EQ((*tok)->encode("ab", true, false), (std::vector<int32_t>{1, 8}));
  // "c" is unknown and there are no byte tokens: it becomes <unk>.
  EXPECT_EQ((*tok)->encode("c", false, false), (std::vector<int32_t>{3, 0}));
}

TEST(Streaming, ConcatenationEqualsDecodeAndNeverSplitsCharacters) {
  for (const char* rel :
       {"models/stories260K.gguf", "models/llama-2-tiny-random.gguf", "vocab/ggml-vocab-gpt-2.gguf",
        "vocab/ggml-vocab-deepseek-coder.gguf", "vocab/ggml-vocab-phi-3.gguf"}) {
    const Tokenizer* tok = load(rel);
    if (!tok) continue;
    for (const char* text : kMultilingual) {
      const auto ids = tok->encode(text, true, false);
      StreamingDetokenizer detok(*tok, /*skip_special=*/true, /*sequence_start=*/true);
      std::string streamed;
      for (int32_t id : ids) {
        const std::string part = detok.push(id);
        std::string clean;
        EXPECT_TRUE(utf8::sanitize(part, clean)) << rel << ": partial UTF-8 emitted";
        streamed += part;
      }
      streamed += detok.flush();
      EXPECT_EQ(streamed, tok->decode(ids, true)) << rel;
      EXPECT_EQ(streamed, text) << rel;
    }
  }
}

TEST(Streaming, HoldsBackSplitCharacter) {
  LOAD_OR_SKIP(tok, "models/stories260K.gguf");
  // "🦙" is four byte tokens here; nothing comes out until the last one.
  const auto ids = tok->encode("🦙", false, false);
  ASSERT_EQ(ids.size(), 5u);  // "▁" then 4 bytes
  StreamingDetokenizer detok(*tok);
  EXPECT_EQ(detok.push(ids[0]), " ");
  EXPECT_EQ(detok.push(ids[1]), "");
  EXPECT_EQ(detok.push(ids[2]), "");
  EXPECT_EQ(detok.push(ids[3]), "");
  EXPECT_EQ(detok.push(ids[4]), "🦙");
  // A truncated sequence is flushed as U+FFFD.
  EXPECT_EQ(detok.push(ids[1]), "");
  EXPECT_EQ(detok.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(detok.flush(), "");
}

TEST(Tokenizer, LongRunsAndConcurrentUse) {
  for (const char* rel : {"vocab/ggml-vocab-gpt-2.gguf", "vocab/ggml-vocab-llama-spm.gguf"}) {
    const Tokenizer* tok = load(rel);
    if (!tok) continue;
    // Long runs exercise the regex matcher's stack and the merge queues.
    for (const std::string& text : {std::string(200000, ' ') + "x", std::string(200000, 'a'),
                                    std::string(50000, '\n') + "y", std::string(30000, '7')}) {
      EXPECT_EQ(tok->decode(tok->encode(text, false, false)), text) << rel;
    }
    // One tokenizer, several threads: same ids as a single-threaded run.
    std::vector<std::string> texts;
    for (const char* t : kMultilingual) texts.emplace_back(t);
    std::vector<std::vector<int32_t>> want;
    for (const auto& t : texts) want.push_back(tok->encode(t, true, true));
    std::vector<std::thread> threads;
    std::atomic<int> bad{0};
    for (int th = 0; th < 4; ++th) {
      threads.emplace_back([&] {
        for (int rep = 0; rep < 50; ++rep)
          for (size_t i = 0; i < texts.size(); ++i)
            if (tok->encode(texts[i], true, true) != want[i]) ++bad;
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(bad.load(), 0) << rel;
  }
}

TEST(Utf8, HelpersFollowTheStandard) {
  std::string out;
  EXPECT_TRUE(utf8::sanitize("héllo 🦙", out));
  EXPECT_EQ(out, "héllo 🦙");
  EXPECT_FALSE(utf8::sanitize("\xC0\x80", out));  // overlong
  EXPECT_EQ(out, "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_FALSE(utf8::sanitize("\xED\xA0\x80", out));  // surrogate
  EXPECT_EQ(utf8::incomplete_tail("ab\xF0\x9F"), 2u);
  EXPECT_EQ(utf8::incomplete_tail("ab\xF0\x9F\xA6\x99"), 0u);
  EXPECT_EQ(utf8::incomplete_tail("ab\xC3"), 1u);
  EXPECT_EQ(utf8::incomplete_tail("ab"), 0u);
  EXPECT_EQ(utf8::byte_to_cp()[' '], 0x120);  // "Ġ"
  EXPECT_EQ(utf8::cp_to_byte(0x120), ' ');
  EXPECT_EQ(utf8::cp_to_byte('A'), 'A');
  for (int b = 0; b < 256; ++b) EXPECT_EQ(utf8::cp_to_byte(utf8::byte_to_cp()[b]), b);
}

}  // namespace
}  // namespace kvserve

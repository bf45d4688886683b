// Pre-tokenizer regexes, matched with PCRE2 (UTF + Unicode properties, JIT-compiled).
// The patterns are the Hugging Face pre-tokenizers of each model family, in the forms
// llama.cpp runs them (case-insensitive contractions spelled '[sS] etc., so only ASCII
// letters fold), because matching llama.cpp's token ids is the goal.
#include "tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <memory>

namespace kvserve {

namespace {

constexpr const char* kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Mistral's tekken: upper-case runs then lower-case runs (letters other than a-z / A-Z
// count as both, as in llama.cpp's adaptation of the original \p{Lu}/\p{Ll} classes).
constexpr const char* kTekken =
    R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kGpt4o =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kBloom = R"( ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{964}\x{6D4}\x{60C})]+)";
constexpr const char* kCjk = R"([\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+)";
constexpr const char* kDeepseekLlmLetters =
    R"(\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+)";
constexpr const char* kDeepseekLlmPunct =
    R"(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+)";
constexpr const char* kDeepseek3 =
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct PreSpec {
  std::array<const char*, 8> names;
  std::array<const char*, 6> patterns;
};

// Each regex of a sequence splits the words the previous ones produced.
const PreSpec kSpecs[] = {
    {{"default"}, {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)", R"([0-9][0-9][0-9])"}},
    {{"llama3", "llama-v3", "llama-bpe", "falcon3", "dbrx", "smaug-bpe", "chatglm-bpe", "glm4"}, {kLlama3}},
    {{"gpt-2", "mpt", "olmo", "jais", "phi-2", "roberta-bpe", "trillion"}, {kGpt2}},
    {{"starcoder", "refact", "smollm", "command-r", "codeshell", "exaone", "minerva-7b"},
     {R"(\p{N})", kGpt2}},
    {{"qwen2", "stablelm2", "deepseek-r1-qwen", "megrez", "hunyuan"}, {kQwen2}},
    {{"falcon"}, {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2, R"([0-9][0-9][0-9])"}},
    {{"deepseek-llm"}, {R"([\r\n])", kDeepseekLlmLetters, kDeepseekLlmPunct, R"(\s+$)", kCjk, R"(\p{N}+)"}},
    {{"deepseek-coder"}, {R"([\r\n])", R"(\s?\p{L}+)", R"(\s?\p{P}+)", kCjk, R"(\p{N})"}},
    {{"deepseek-v3", "deepseek3-llm"},
     {R"(\p{N}{1,3})", R"([\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+)", kDeepseek3}},
    {{"tekken"}, {kTekken}},
    {{"gpt-4o", "llama4"}, {kGpt4o}},
    {{"bloom", "poro-chat", "gpt3-finnish"}, {kBloom}},
    {{"viking"}, {kBloom, R"(\p{N})"}},
};

// Pre-tokenizers whose words are looked up whole before merging.
bool ignores_merges(std::string_view name) {
  for (const char* n : {"llama3", "llama-v3", "llama-bpe", "falcon3", "tekken", "gpt-4o", "llama4"})
    if (name == n) return true;
  return false;
}

// PCRE2's \s leaves out U+0085 (NEL), which Unicode (and llama.cpp) count as white space.
std::string with_nel_as_space(std::string_view p) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char n = p[++i];
      if (n == 's') {
        out += in_class ? R"(\s\x{85})" : R"([\s\x{85}])";
      } else if (n == 'S' && !in_class) {
        out += R"([^\s\x{85}])";
      } else {
        out += c;
        out += n;
      }
      continue;
    }
    if (c == '[' && !in_class)
      in_class = true;
    else if (c == ']' && in_class)
      in_class = false;
    out += c;
  }
  return out;
}

struct MatchDataDeleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};
struct JitStackDeleter {
  void operator()(pcre2_jit_stack* s) const { pcre2_jit_stack_free(s); }
};
struct MatchContextDeleter {
  void operator()(pcre2_match_context* c) const { pcre2_match_context_free(c); }
};

}  // namespace

struct PreTokenizer::Regex {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Regex() { pcre2_code_free(code); }
};

PreTokenizer::~PreTokenizer() = default;

std::vector<std::string> PreTokenizer::patterns(std::string_view pre_name) {
  if (pre_name.empty()) pre_name = "default";
  for (const PreSpec& spec : kSpecs) {
    for (const char* n : spec.names) {
      if (n && pre_name == n) {
        std::vector<std::string> out;
        for (const char* p : spec.patterns)
          if (p) out.emplace_back(p);
        return out;
      }
    }
  }
  return {};
}

Result<std::unique_ptr<PreTokenizer>> PreTokenizer::create(std::string_view pre_name) {
  std::vector<std::string> pats = patterns(pre_name);
  if (pats.empty()) return Error{"tokenizer: unknown pre-tokenizer '" + std::string(pre_name) + "'"};
  std::unique_ptr<PreTokenizer> pt(new PreTokenizer());
  pt->ignore_merges_ = ignores_merges(pre_name);
  for (const std::string& raw : pats) {
    std::string p = with_nel_as_space(raw);
    int err = 0;
    PCRE2_SIZE err_off = 0;
    auto rx = std::make_unique<Regex>();
    rx->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(),
                             PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &err, &err_off, nullptr);
    if (!rx->code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      return Error{"tokenizer: pre-tokenizer regex failed to compile at " + std::to_string(err_off) + ": " +
                   reinterpret_cast<const char*>(msg)};
    }
    rx->jit = pcre2_jit_compile(rx->code, PCRE2_JIT_COMPLETE) == 0;
    pt->regexes_.push_back(std::move(rx));
  }
  return pt;
}

void PreTokenizer::split(std::string_view text, std::vector<WordSpan>& words) const {
  // Per-thread scratch so concurrent encodes share nothing and allocate once.
  thread_local std::unique_ptr<pcre2_match_data, MatchDataDeleter> md(pcre2_match_data_create(1, nullptr));
  thread_local std::unique_ptr<pcre2_match_context, MatchContextDeleter> big_ctx;
  thread_local std::unique_ptr<pcre2_jit_stack, JitStackDeleter> big_stack;
  thread_local std::vector<WordSpan> cur, next;

  cur.clear();
  if (!text.empty()) cur.push_back({0, static_cast<uint32_t>(text.size())});
  const auto* base = reinterpret_cast<PCRE2_SPTR>(text.data());

  for (const auto& rx : regexes_) {
    next.clear();
    for (const WordSpan w : cur) {
      const PCRE2_SIZE len = w.end - w.begin;
      PCRE2_SIZE pos = 0;  // relative to the word: lookarounds see only the word itself
      PCRE2_SIZE last = 0;
      while (pos < len) {
        pcre2_match_context* ctx = big_ctx.get();
        int rc = rx->jit ? pcre2_jit_match(rx->code, base + w.begin, len, pos, 0, md.get(), ctx)
                         : pcre2_match(rx->code, base + w.begin, len, pos, PCRE2_NO_UTF_CHECK, md.get(), ctx);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !big_ctx) {
          // Long runs (e.g. of spaces) can outgrow the default 32 KiB JIT stack.
          big_stack.reset(pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, nullptr));
          big_ctx.reset(pcre2_match_context_create(nullptr));
          pcre2_jit_stack_assign(big_ctx.get(), nullptr, big_stack.get());
          continue;
        }
        if (rc < 0) break;  // no further match (or a matcher limit): the rest is one gap
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
        PCRE2_SIZE ms = ov[0], me = ov[1];
        if (me == ms) {  // empty match: step one character to make progress
          pos = ms + 1;
          while (pos < len && (base[w.begin + pos] & 0xC0) == 0x80) ++pos;
          continue;
        }
        if (ms > last)
          next.push_back({w.begin + static_cast<uint32_t>(last), w.begin + static_cast<uint32_t>(ms)});
        next.push_back({w.begin + static_cast<uint32_t>(ms), w.begin + static_cast<uint32_t>(me)});
        last = pos = me;
      }
      if (last < len) next.push_back({w.begin + static_cast<uint32_t>(last), w.end});
    }
    cur.swap(next);
  }
  words.insert(words.end(), cur.begin(), cur.end());
}

}  // namespace kvserve

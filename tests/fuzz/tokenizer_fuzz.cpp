// libFuzzer target for the tokenizers on untrusted text (prompts and messages arrive over
// HTTP): any bytes encode to ids inside the vocabulary, with and without special-token
// parsing, and decode again, plainly and through the streaming detokenizer, never
// crashing (ASan + UBSan). For the byte-level BPE vocabulary, valid UTF-8 without
// special-token text round-trips exactly. Vocabularies: KVSERVE_FUZZ_VOCABS, a
// ':'-separated list of GGUF files (the tests pass shared/vocab's gpt-2 and llama-spm).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

using namespace kvserve;

namespace {

struct Loaded {
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<Tokenizer> tok;
};

std::vector<Loaded>& tokenizers() {
  static std::vector<Loaded> all;
  return all;
}

volatile size_t g_sink;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* env = std::getenv("KVSERVE_FUZZ_VOCABS");
  if (!env || !*env) {
    std::fprintf(stderr, "tokenizer_fuzz: set KVSERVE_FUZZ_VOCABS to ':'-separated GGUF vocab files\n");
    std::exit(2);
  }
  std::stringstream paths(env);
  for (std::string path; std::getline(paths, path, ':');) {
    auto f = GgufFile::open(path);
    if (!f) {
      std::fprintf(stderr, "tokenizer_fuzz: %s\n", f.error().message.c_str());
      std::exit(2);
    }
    auto t = Tokenizer::from_gguf(**f);
    if (!t) {
      std::fprintf(stderr, "tokenizer_fuzz: %s: %s\n", path.c_str(), t.error().message.c_str());
      std::exit(2);
    }
    tokenizers().push_back({std::move(*f), std::move(*t)});
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string scratch;
  const bool valid = utf8::sanitize(text, scratch);
  for (const Loaded& l : tokenizers()) {
    const Tokenizer& t = *l.tok;
    for (const bool special : {false, true}) {
      const std::vector<int32_t> ids = t.encode(text, /*add_special=*/special, /*parse_special=*/special);
      for (int32_t id : ids)
        if (id < 0 || id >= t.n_vocab()) std::abort();
      const std::string back = t.decode(ids, /*skip_special=*/false);
      StreamingDetokenizer stream(t, /*skip_special=*/false, /*sequence_start=*/true);
      std::string streamed;
      for (int32_t id : ids) streamed += stream.push(id);
      streamed += stream.flush();
      // The streaming detokenizer gives decode()'s text whenever that is valid UTF-8.
      if (utf8::sanitize(back, scratch) && streamed != back) std::abort();
      // Byte-level BPE loses nothing: plain valid UTF-8 comes back byte for byte.
      if (!special && valid && t.vocab().is_bpe() && back != text) std::abort();
      g_sink = g_sink + back.size() + streamed.size();
    }
  }
  return 0;
}

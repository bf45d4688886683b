// Tokenizer throughput on English text (a paragraph repeated to ~1 MiB), one thread.
// Run: build/bench/tokenizer_bench  (bytes_per_second is the figure: >= 5 MB/s wanted).
#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <string>

#include "core/paths.h"
#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"

namespace {

using kvserve::GgufFile;
using kvserve::Tokenizer;

const std::string& english_text() {
  static const std::string text = [] {
    const std::string para =
        "The quick brown fox jumps over the lazy dog. In 1865, the company's engineers were "
        "building bridges across rivers that nobody had dared to cross before; their designs, "
        "though simple, proved remarkably durable. Today, more than 150 years later, several of "
        "those bridges still carry traffic every day. \"It's not magic,\" one historian said, "
        "\"it's careful arithmetic and a great deal of patience.\" Researchers continue to study "
        "the original drawings, hoping to learn how such reliable structures were designed "
        "without modern computers.\n\n";
    std::string t;
    while (t.size() < (1u << 20)) t += para;
    return t;
  }();
  return text;
}

const Tokenizer* load(const std::string& path) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto it = cache.find(path);
  if (it != cache.end()) return it->second.get();
  auto file = GgufFile::open(path);
  if (!file) return nullptr;
  auto tok = Tokenizer::from_gguf(**file);
  if (!tok) return nullptr;
  return (cache[path] = std::move(*tok)).get();
}

std::string path_for(const std::string& name) {
  if (name == "smollm2") return kvserve::default_model_path();
  return kvserve::shared_dir() + "/vocab/ggml-vocab-" + name + ".gguf";
}

void BM_Encode(benchmark::State& state, const std::string& name) {
  const Tokenizer* tok = load(path_for(name));
  if (!tok) {
    state.SkipWithError("tokenizer file missing");
    return;
  }
  const std::string& text = english_text();
  size_t n_tokens = 0;
  for (auto _ : state) {
    auto ids = tok->encode(text, true, false);
    n_tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(n_tokens);
}

void BM_Decode(benchmark::State& state, const std::string& name) {
  const Tokenizer* tok = load(path_for(name));
  if (!tok) {
    state.SkipWithError("tokenizer file missing");
    return;
  }
  const std::string& text = english_text();
  const auto ids = tok->encode(text, false, false);
  for (auto _ : state) {
    std::string s = tok->decode(ids);
    benchmark::DoNotOptimize(s.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}

BENCHMARK_CAPTURE(BM_Encode, gpt2, std::string("gpt-2"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, llama_spm, std::string("llama-spm"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, starcoder, std::string("starcoder"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, deepseek_coder, std::string("deepseek-coder"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, phi3, std::string("phi-3"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, smollm2, std::string("smollm2"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Decode, gpt2, std::string("gpt-2"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Decode, llama_spm, std::string("llama-spm"))->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();

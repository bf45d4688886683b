// libFuzzer target: any byte string given to GgufFile::parse yields a file or an
// Error, never a crash, overread or undefined behaviour (built with ASan + UBSan).
// On success everything a caller reads is touched: metadata values, typed getters,
// tensor data bounds, one dequantized row per tensor, the `kvserve info` report, the
// model's hyper-parameters, and the tokenizer built from the file's vocabulary (which
// then encodes and decodes a fixed text and decodes every token id).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "gguf/dequantize.h"
#include "gguf/gguf_file.h"
#include "gguf/model_info.h"
#include "model/model_config.h"
#include "tokenizer/tokenizer.h"

using namespace kvserve;

namespace {

volatile size_t g_sink;  // keeps the touched values observable

void touch_value(const GgufValue& v) {
  size_t s = v.str.size() + v.array.size();
  if (auto i = v.as_int()) s += size_t(*i);
  if (auto f = v.as_float()) s += size_t(*f != 0);
  if (auto b = v.as_bool()) s += *b;
  for (const GgufValue& e : v.array) touch_value(e);
  g_sink = g_sink + s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parsed = GgufFile::parse(data, size);
  if (!parsed) {
    if (parsed.error().message.empty()) std::abort();  // every error must say what is wrong
    return 0;
  }
  const GgufFile& f = **parsed;
  for (const auto& [key, value] : f.metadata()) {
    g_sink = g_sink + key.size();
    touch_value(value);
    g_sink = g_sink + format_gguf_value(value).size();
  }
  g_sink = g_sink + f.get_string_array("tokenizer.ggml.tokens").value_or(std::vector<std::string>{}).size();
  g_sink = g_sink + f.get_float_array("tokenizer.ggml.scores").value_or(std::vector<float>{}).size();
  g_sink = g_sink + f.get_int_array("tokenizer.ggml.token_type").value_or(std::vector<int64_t>{}).size();

  std::vector<float> row;
  for (const GgufTensor& t : f.tensors()) {
    if (f.tensor(t.name) != &t) std::abort();
    if (t.nbytes > 0) g_sink = g_sink + t.data[0] + t.data[t.nbytes - 1];
    // The first row, dequantized, reads exactly ggml_row_bytes(type, ne0) bytes.
    if (t.ne(0) <= 4096) {
      row.resize(size_t(t.ne(0)));
      dequantize_row(t.type, t.data, row.data(), t.ne(0));
      g_sink = g_sink + size_t(row[0] == 0.0f);
    }
  }
  const ModelInfo info = build_model_info(f);
  g_sink = g_sink + format_model_info(info).size();

  auto cfg = ModelConfig::from_gguf(f);
  if (!cfg && cfg.error().message.empty()) std::abort();
  if (cfg) g_sink = g_sink + size_t(cfg->n_layers) + size_t(cfg->dim) + size_t(cfg->n_vocab);
  auto tok = Tokenizer::from_gguf(f);
  if (!tok) {
    if (tok.error().message.empty()) std::abort();
    return 0;
  }
  const Tokenizer& t = **tok;
  for (const bool special : {false, true}) {
    const std::vector<int32_t> ids =
        t.encode("Hello, world! 123 \xc3\xbc\xe2\x82\xac <s>\n\t  x", special, special);
    for (int32_t id : ids)
      if (id < 0 || id >= t.n_vocab()) std::abort();  // encode only returns ids of the vocabulary
    g_sink = g_sink + t.decode(ids).size();
  }
  // Every id decodes (a small vocabulary entirely; a large one in a stride).
  const int32_t n = t.n_vocab(), step = n > 4096 ? n / 4096 : 1;
  std::vector<int32_t> all;
  for (int32_t id = 0; id < n; id += step) all.push_back(id);
  g_sink = g_sink + t.decode(all).size();
  return 0;
}

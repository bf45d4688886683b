// libFuzzer target for model loading: a byte string that parses as GGUF either loads as
// a model (every weight checked against the hyper-parameters, matrices packed) or gives
// an Error naming what is wrong, never a crash or undefined behaviour (ASan + UBSan).
// A loaded model embeds its first and last token (the rows it reads are in the file).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "gguf/gguf_file.h"
#include "model/model.h"

using namespace kvserve;

namespace {
volatile float g_sink;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = GgufFile::parse(data, size);
  if (!file) return 0;  // the GGUF reader has its own target
  auto model = Model::from_gguf(std::move(*file));
  if (!model) {
    if (model.error().message.empty()) std::abort();  // every error must say what is wrong
    return 0;
  }
  const ModelConfig& c = (*model)->config();
  std::vector<float> row(static_cast<size_t>(c.dim));
  for (int32_t id : {0, c.n_vocab - 1}) {
    (*model)->embed(id, row.data());
    g_sink = g_sink + row[0] + row[row.size() - 1];
  }
  return 0;
}

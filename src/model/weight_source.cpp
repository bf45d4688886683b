#include "model/weight_source.h"

#include "gguf/gguf_file.h"

namespace kvserve {

std::optional<WeightTensor> GgufWeightSource::find(std::string_view name) const {
  const GgufTensor* t = file_.tensor(name);
  if (!t) return std::nullopt;
  return WeightTensor{t->type, t->data, t->shape};
}

bool GgufWeightSource::file_backed() const {
  return !file_.path().empty();  // a read-only mapping, not a caller's buffer
}

}  // namespace kvserve

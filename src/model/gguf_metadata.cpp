#include "model/gguf_metadata.h"

#include <fmt/format.h>

#include "gguf/gguf_file.h"

namespace kvserve {

Result<int> meta_size(const GgufFile& f, const std::string& key, std::optional<int> fallback) {
  const GgufValue* v = f.find(key);
  if (!v) {
    if (fallback) return *fallback;
    return Error{fmt::format("missing metadata key '{}'", key)};
  }
  const auto i = v->as_int();
  if (!i) return Error{fmt::format("metadata key '{}' is not a single integer", key)};
  if (*i <= 0 || *i > kMaxModelDim)
    return Error{fmt::format("metadata key '{}' = {} is out of range", key, *i)};
  return int(*i);
}

Result<int> meta_optional_size(const GgufFile& f, const std::string& key) {
  if (!f.find(key)) return 0;
  return meta_size(f, key, std::nullopt);
}

Result<float> meta_float(const GgufFile& f, const std::string& key, std::optional<float> fallback) {
  const GgufValue* v = f.find(key);
  if (!v) {
    if (fallback) return *fallback;
    return Error{fmt::format("missing metadata key '{}'", key)};
  }
  const auto x = v->as_float();
  if (!x) return Error{fmt::format("metadata key '{}' is not a number", key)};
  return float(*x);
}

}  // namespace kvserve

// Typed, range-checked reads of GGUF metadata for model configuration: errors name the key.
#pragma once

#include <optional>
#include <string>

#include "core/result.h"

namespace kvserve {

class GgufFile;

// A positive integer up to kMaxModelDim; `fallback` when the key is absent (an error if none).
Result<int> meta_size(const GgufFile& f, const std::string& key, std::optional<int> fallback);
// 0 when the key is absent.
Result<int> meta_optional_size(const GgufFile& f, const std::string& key);
Result<float> meta_float(const GgufFile& f, const std::string& key, std::optional<float> fallback);

// Upper bound on any single size: far above real models, low enough that products of a
// few of them cannot overflow int64.
constexpr int64_t kMaxModelDim = 1 << 22;

}  // namespace kvserve

// Element type of the paged KV cache. f16 (the default, as in llama.cpp) halves the
// bytes of every block, so a memory budget holds twice the tokens and decode reads half
// the bytes; f32 keeps the projections' exact values. Values are rounded once, when a
// token's K/V is written, so every reader (prefill chunk, decode, any batch) sees the
// same numbers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace kvserve {

enum class KvDtype : uint8_t { F16, F32 };

inline size_t kv_dtype_size(KvDtype t) {
  return t == KvDtype::F16 ? 2 : 4;
}

inline const char* kv_dtype_name(KvDtype t) {
  return t == KvDtype::F16 ? "f16" : "f32";
}

inline std::optional<KvDtype> parse_kv_dtype(std::string_view s) {
  if (s == "f16") return KvDtype::F16;
  if (s == "f32") return KvDtype::F32;
  return std::nullopt;
}

}  // namespace kvserve

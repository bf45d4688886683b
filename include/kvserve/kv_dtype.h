// Element type of the paged KV cache. f16 (the default, as in llama.cpp) halves the
// bytes of every block, so a memory budget holds twice the tokens and decode reads half
// the bytes; f32 keeps the projections' exact values; bf16 keeps f32's range with f16's
// size. int8 and fp8 (E4M3) halve f16 again: each token's key (and value) of one KV head
// is stored with its own f32 scale (symmetric: int8 q = round(x / s), s = max|x| / 127;
// fp8 s = max|x| / 448), the scales after the head's elements in each block.
// Values are rounded once, when a token's K/V is written, so every reader (prefill chunk,
// decode, any batch) sees the same numbers; a reader's value is exactly q * s, one f32
// rounding on every ISA.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace kvserve {

enum class KvDtype : uint8_t { F16, F32, BF16, Int8, Fp8 };

// Bytes of one stored element (a scale aside).
inline size_t kv_dtype_size(KvDtype t) {
  switch (t) {
    case KvDtype::F32: return 4;
    case KvDtype::F16:
    case KvDtype::BF16: return 2;
    case KvDtype::Int8:
    case KvDtype::Fp8: return 1;
  }
  return 4;
}

// int8 / fp8: elements carry a per-(token, KV head) scale.
inline bool kv_dtype_scaled(KvDtype t) {
  return t == KvDtype::Int8 || t == KvDtype::Fp8;
}

// Elements (of kv_dtype_size bytes) that one KV head's K (or V) takes in one block:
// block_size * head_dim, then for scaled types block_size f32 scales (4 bytes = 4
// one-byte elements each) at element block_size * head_dim.
inline int64_t kv_head_elems(KvDtype t, int block_size, int head_dim) {
  return int64_t(block_size) * head_dim + (kv_dtype_scaled(t) ? 4 * int64_t(block_size) : 0);
}

inline const char* kv_dtype_name(KvDtype t) {
  switch (t) {
    case KvDtype::F32: return "f32";
    case KvDtype::F16: return "f16";
    case KvDtype::BF16: return "bf16";
    case KvDtype::Int8: return "int8";
    case KvDtype::Fp8: return "fp8";
  }
  return "?";
}

inline std::optional<KvDtype> parse_kv_dtype(std::string_view s) {
  for (KvDtype t : {KvDtype::F32, KvDtype::F16, KvDtype::BF16, KvDtype::Int8, KvDtype::Fp8})
    if (s == kv_dtype_name(t)) return t;
  return std::nullopt;
}

}  // namespace kvserve

// ggml tensor element types as stored in GGUF files, and their block layouts' sizes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace kvserve {

// Values are ggml's on-disk type ids.
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  BF16 = 30,
};

struct GgmlTypeTraits {
  GgmlType type;
  const char* name;    // "q4_k"
  int64_t block_size;  // elements per block (1 for float types)
  size_t block_bytes;  // bytes per block
  size_t align;        // alignment the block's fields need (alignof its struct)
};

// Traits of a type id read from a file; nullopt for ids kvserve does not know.
std::optional<GgmlTypeTraits> ggml_type_traits(uint32_t raw_type);
const GgmlTypeTraits& ggml_traits(GgmlType type);
const char* ggml_type_name(GgmlType type);

// Bytes of a row of n elements (n must be a multiple of the block size).
inline size_t ggml_row_bytes(GgmlType type, int64_t n) {
  const GgmlTypeTraits& t = ggml_traits(type);
  return size_t(n / t.block_size) * t.block_bytes;
}

}  // namespace kvserve

#include "gguf/ggml_type.h"

#include <array>
#include <cstdlib>

#include "gguf/quant_blocks.h"

namespace kvserve {
namespace {

constexpr std::array<GgmlTypeTraits, 15> kTraits = {{
    {GgmlType::F32, "f32", 1, 4, alignof(float)},
    {GgmlType::F16, "f16", 1, 2, alignof(uint16_t)},
    {GgmlType::BF16, "bf16", 1, 2, alignof(uint16_t)},
    {GgmlType::Q4_0, "q4_0", 32, 2 + 16, alignof(BlockQ4_0)},
    {GgmlType::Q4_1, "q4_1", 32, 2 + 2 + 16, alignof(BlockQ4_1)},
    {GgmlType::Q5_0, "q5_0", 32, 2 + 4 + 16, alignof(BlockQ5_0)},
    {GgmlType::Q5_1, "q5_1", 32, 2 + 2 + 4 + 16, alignof(BlockQ5_1)},
    {GgmlType::Q8_0, "q8_0", 32, 2 + 32, alignof(BlockQ8_0)},
    {GgmlType::Q8_1, "q8_1", 32, 4 + 32, alignof(BlockQ8_1)},
    {GgmlType::Q2_K, "q2_k", QK_K, QK_K / 16 + QK_K / 4 + 2 + 2, alignof(BlockQ2_K)},
    {GgmlType::Q3_K, "q3_k", QK_K, QK_K / 8 + QK_K / 4 + 12 + 2, alignof(BlockQ3_K)},
    {GgmlType::Q4_K, "q4_k", QK_K, 2 + 2 + 12 + QK_K / 2, alignof(BlockQ4_K)},
    {GgmlType::Q5_K, "q5_k", QK_K, 2 + 2 + 12 + QK_K / 8 + QK_K / 2, alignof(BlockQ5_K)},
    {GgmlType::Q6_K, "q6_k", QK_K, QK_K / 2 + QK_K / 4 + QK_K / 16 + 2, alignof(BlockQ6_K)},
    {GgmlType::Q8_K, "q8_k", QK_K, 4 + QK_K + QK_K / 16 * 2, alignof(BlockQ8_K)},
}};

// A block's fields are read in place, so every block must keep the next one aligned.
constexpr bool blocks_keep_alignment() {
  for (const auto& t : kTraits)
    if (t.block_bytes % t.align != 0) return false;
  return true;
}
static_assert(blocks_keep_alignment());

}  // namespace

std::optional<GgmlTypeTraits> ggml_type_traits(uint32_t raw_type) {
  for (const auto& t : kTraits)
    if (uint32_t(t.type) == raw_type) return t;
  return std::nullopt;
}

const GgmlTypeTraits& ggml_traits(GgmlType type) {
  for (const auto& t : kTraits)
    if (t.type == type) return t;
  std::abort();  // programmer error: every enumerator has traits
}

const char* ggml_type_name(GgmlType type) {
  return ggml_traits(type).name;
}

}  // namespace kvserve

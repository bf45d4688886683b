// Conversion of float activations to the "partner" format each weight type is dotted
// with, bit-exact with llama.cpp so results match its reference logits:
// F32 -> f32, F16 -> fp16, BF16 -> bf16, Q4_0/Q5_0/Q8_0 -> Q8_0, Q4_1/Q5_1 -> Q8_1,
// K-quants -> Q8_K. Every ISA's version produces identical bytes (tests check this).
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/cpu_features.h"
#include "gguf/ggml_type.h"

namespace kvserve {

enum class ActFormat { F32, F16, BF16, Q8_0, Q8_1, Q8_K };

ActFormat act_format(GgmlType weight_type);
const char* act_format_name(ActFormat f);
// Elements per block of the format (1 for float formats).
int64_t act_block_size(ActFormat f);
// Bytes of one converted row of n elements (n a multiple of the block size).
size_t act_row_bytes(ActFormat f, int64_t n);

// Converts one row of n floats into dst (act_row_bytes(f, n) bytes) with the given ISA's
// code (an ISA without its own version falls back to the next lower one). Per-ISA
// tables: isa_dispatch.h.
void quantize_act_row(Isa isa, ActFormat f, const float* x, int64_t n, void* dst);

}  // namespace kvserve

// The AVX-512 F16 matmul kernel (matmul_f16_avx512.cpp), listed in the AVX-512 float
// kernel table of matmul_float_avx512.cpp.
#pragma once

#include <cstdint>

#include "kernels/cpu/matmul_internal.h"

namespace kvserve::detail {

// y[t, o] for o in [o0, o1) and every t < a.n_tokens; activations in fp16.
void matmul_f16_avx512(const MatmulArgs& a, int64_t o0, int64_t o1);

}  // namespace kvserve::detail

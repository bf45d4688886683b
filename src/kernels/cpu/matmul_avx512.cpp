// The AVX-512 matmul table (kernels live in matmul_*_avx512.cpp by type family).
// GCC 12 reports its own _mm512_undefined_* placeholders as uninitialized (GCC bug
// 105593, fixed in 13) wherever AVX-512 intrinsics inline.
#pragma GCC diagnostic ignored "-Wuninitialized"
#if defined(__GNUC__) && !defined(__clang__)  // clang has no such warning (and warns of the name)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "kernels/cpu/isa_dispatch.h"

namespace kvserve::detail {

static MatmulRangeFn matmul_fn_avx512(GgmlType type) {
  if (MatmulRangeFn f = matmul_q32_fn_avx512(type)) return f;
  if (MatmulRangeFn f = matmul_float_fn_avx512(type)) return f;
  return matmul_kquant_fn_avx512(type);
}

// The K-quant kernels read the dense activation views.
constinit const MatmulKernels kMatmulAvx512{matmul_fn_avx512, matmul_packed_fn_avx512,
                                            matmul_kquant_fn_avx512};

}  // namespace kvserve::detail

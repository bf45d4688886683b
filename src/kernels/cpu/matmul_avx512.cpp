// The AVX-512 matmul table (kernels live in matmul_*_avx512.cpp by type family).
#include "kernels/cpu/isa_dispatch.h"

namespace kvserve::detail {

static MatmulRangeFn matmul_fn_avx512(GgmlType type) {
  if (MatmulRangeFn f = matmul_q32_fn_avx512(type)) return f;
  if (MatmulRangeFn f = matmul_float_fn_avx512(type)) return f;
  return matmul_kquant_fn_avx512(type);
}

// The K-quant kernels read the dense activation views.
constinit const MatmulKernels kMatmulAvx512{matmul_fn_avx512, matmul_packed_fn_avx512, matmul_kquant_fn_avx512};

}  // namespace kvserve::detail

// The AVX-512 kernel table (kernels live in matmul_*_avx512.cpp by type family).
#include "kernels/cpu/matmul_internal.h"

namespace kvserve::detail {

MatmulRangeFn matmul_fn_avx512(GgmlType type) {
  if (MatmulRangeFn f = matmul_q32_fn_avx512(type)) return f;
  if (MatmulRangeFn f = matmul_float_fn_avx512(type)) return f;
  return matmul_kquant_fn_avx512(type);
}

}  // namespace kvserve::detail

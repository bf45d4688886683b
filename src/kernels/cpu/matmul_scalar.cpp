// Scalar matmul: one vec_dot per (row, token). Serves every type, and any type an ISA
// has no specialised kernel for.
#include "kernels/cpu/isa_dispatch.h"
#include "kernels/cpu/vec_dot.h"

namespace kvserve::detail {
namespace {

template <GgmlType T>
void matmul_range(const MatmulArgs& a, int64_t o0, int64_t o1) {
  static const VecDotFn dot = vec_dot_fn_scalar(T);
  for (int64_t o = o0; o < o1; ++o) {
    const uint8_t* w = a.w + size_t(o) * a.w_row_bytes;
    for (int64_t t = 0; t < a.n_tokens; ++t)
      a.y[t * a.ldy + o] = dot(a.n_in, w, a.x + size_t(t) * a.x_row_bytes);
  }
}

MatmulRangeFn matmul_fn_scalar(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return matmul_range<GgmlType::F32>;
    case GgmlType::F16: return matmul_range<GgmlType::F16>;
    case GgmlType::BF16: return matmul_range<GgmlType::BF16>;
    case GgmlType::Q4_0: return matmul_range<GgmlType::Q4_0>;
    case GgmlType::Q4_1: return matmul_range<GgmlType::Q4_1>;
    case GgmlType::Q5_0: return matmul_range<GgmlType::Q5_0>;
    case GgmlType::Q5_1: return matmul_range<GgmlType::Q5_1>;
    case GgmlType::Q8_0: return matmul_range<GgmlType::Q8_0>;
    case GgmlType::Q2_K: return matmul_range<GgmlType::Q2_K>;
    case GgmlType::Q3_K: return matmul_range<GgmlType::Q3_K>;
    case GgmlType::Q4_K: return matmul_range<GgmlType::Q4_K>;
    case GgmlType::Q5_K: return matmul_range<GgmlType::Q5_K>;
    case GgmlType::Q6_K: return matmul_range<GgmlType::Q6_K>;
    default: return nullptr;
  }
}

MatmulRangeFn no_kernel(GgmlType) {
  return nullptr;
}

}  // namespace

// No packed kernels, and no kernel reads the dense activation views.
constinit const MatmulKernels kMatmulScalar{matmul_fn_scalar, no_kernel, no_kernel};

}  // namespace kvserve::detail

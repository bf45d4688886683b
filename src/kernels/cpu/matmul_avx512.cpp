// avx512 matmul kernels.
#include "kernels/cpu/matmul_internal.h"

namespace kvserve::detail {

MatmulRangeFn matmul_fn_avx512(GgmlType type) {
  switch (type) {
    default: return nullptr;  // the scalar kernel serves the others
  }
}

}  // namespace kvserve::detail

#include "kernels/cpu/rmsnorm.h"

#include <cmath>

namespace kvserve {

void rmsnorm(const float* x, const float* w, float* y, int64_t n, float eps) {
  // Sum of squares in double: cheap next to the matmuls and keeps long rows exact.
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
  const float scale = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale * w[i];
}

void rmsnorm_rows(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps) {
  for (int64_t r = 0; r < rows; ++r) rmsnorm(x + r * n, w, y + r * n, n, eps);
}

}  // namespace kvserve

#include "kernels/cpu/rmsnorm.h"

#include <cmath>

namespace kvserve {

void rmsnorm(const float* x, const float* w, float* y, int64_t n, float eps) {
  // Sum of squares in double (keeps long rows exact) over 8 independent partial sums
  // combined in a fixed order: one chain of dependent double adds made a 576-element row
  // cost ~0.5 us, a few per cent of a decode step. Same order on every ISA and batch.
  double acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += double(x[i + k]) * double(x[i + k]);
  double ss = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; i < n; ++i) ss += double(x[i]) * double(x[i]);
  const float scale = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale * w[i];
}

void rmsnorm_rows(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps) {
  for (int64_t r = 0; r < rows; ++r) rmsnorm(x + r * n, w, y + r * n, n, eps);
}

}  // namespace kvserve

// RMSNorm: y = x / sqrt(mean(x^2) + eps) * w, per row.
#pragma once

#include <cstdint>

namespace kvserve {

// x, y: [n] (may alias); w: [n].
void rmsnorm(const float* x, const float* w, float* y, int64_t n, float eps);

// Rows of a row-major matrix: x, y: [rows, n] (may alias), w: [n].
void rmsnorm_rows(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps);

}  // namespace kvserve

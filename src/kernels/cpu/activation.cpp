#include "kernels/cpu/activation.h"

#include <cmath>

#include "core/cpu_features.h"
#include "kernels/cpu/isa_dispatch.h"

namespace kvserve {

void silu_mul_scalar(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  static const detail::ActivationKernels k = detail::kActivationKernels[best_isa()];
  k.silu_mul(gate, up, out, n);
}

// 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)): x / (1 + exp(-2u)) is gelu_tanh(x) without
// 1 + tanh(u)'s cancellation for negative x (exp overflows to inf there: 0, as it should).
void gelu_tanh_mul_scalar(const float* gate, const float* up, float* out, int64_t n) {
  constexpr float kC = 0.7978845608028654f;  // sqrt(2 / pi)
  for (int64_t i = 0; i < n; ++i) {
    const float x = gate[i];
    const float u = kC * (x + 0.044715f * x * x * x);
    out[i] = x / (1.0f + std::exp(-2.0f * u)) * up[i];
  }
}

void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n) {
  static const detail::ActivationKernels k = detail::kActivationKernels[best_isa()];
  k.gelu_tanh_mul(gate, up, out, n);
}

GeluTanhMulFn gelu_tanh_mul_for(Isa isa) {
  return detail::kActivationKernels[isa].gelu_tanh_mul;
}

constinit const detail::ActivationKernels detail::kActivationScalar{silu_mul_scalar, gelu_tanh_mul_scalar};

float softmax(float* x, int64_t n) {
  if (n <= 0) return -INFINITY;
  float mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = float(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
  return mx + float(std::log(sum));
}

float logsumexp(const float* x, int64_t n) {
  if (n <= 0) return -INFINITY;
  float mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(double(x[i] - mx));
  return mx + float(std::log(sum));
}

}  // namespace kvserve

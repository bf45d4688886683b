// Element-wise activations and the row softmax.
#pragma once

#include <cstdint>

namespace kvserve {

// SwiGLU's gating: out[i] = silu(gate[i]) * up[i]. out may alias gate or up.
// Dispatched by ISA; silu_mul_scalar is the reference.
void silu_mul(const float* gate, const float* up, float* out, int64_t n);
void silu_mul_scalar(const float* gate, const float* up, float* out, int64_t n);

// In-place softmax of x[n]; returns log(sum(exp(x))) (the log normalizer).
float softmax(float* x, int64_t n);

// log(sum(exp(x[i]))) without modifying x.
float logsumexp(const float* x, int64_t n);

}  // namespace kvserve

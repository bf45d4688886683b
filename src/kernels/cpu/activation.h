// Element-wise activations and the row softmax.
#pragma once

#include <cstdint>

#include "core/cpu_features.h"

namespace kvserve {

// SwiGLU's gating: out[i] = silu(gate[i]) * up[i]. out may alias gate or up.
// Dispatched by ISA; silu_mul_scalar is the reference.
void silu_mul(const float* gate, const float* up, float* out, int64_t n);
void silu_mul_scalar(const float* gate, const float* up, float* out, int64_t n);

// GeGLU's gating (Gemma): out[i] = gelu_tanh(gate[i]) * up[i], with GELU's tanh
// approximation gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), finite for
// every finite input. out may alias gate or up. Dispatched by ISA; gelu_tanh_mul_scalar
// is the reference. Each ISA gives an element the same bits whatever n and its index.
void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n);
void gelu_tanh_mul_scalar(const float* gate, const float* up, float* out, int64_t n);

// gelu_tanh_mul on one ISA's kernel, for tests that compare them (the CPU must have it).
using GeluTanhMulFn = void (*)(const float*, const float*, float*, int64_t);
GeluTanhMulFn gelu_tanh_mul_for(Isa isa);

// In-place softmax of x[n]; returns log(sum(exp(x))) (the log normalizer).
float softmax(float* x, int64_t n);

// log(sum(exp(x[i]))) without modifying x.
float logsumexp(const float* x, int64_t n);

}  // namespace kvserve

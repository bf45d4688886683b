// Matrix multiplication of quantized weights by float activations, the core of every
// linear layer. Weights stay in their GGUF block format; kernels dequantize per block
// inside the dot product (int8 dot products against 8-bit quantized activations where
// the type allows, as llama.cpp does). The ISA (AVX-512 VNNI/BF16, AVX2, scalar) is
// chosen at run time; the scalar path is the reference the others are tested against.
#pragma once

#include <cstdint>
#include <span>

#include "core/thread_pool.h"
#include "gguf/ggml_type.h"

namespace kvserve {

// A weight matrix W of n_out rows, each of n_in elements (ggml shape [n_in, n_out]),
// rows contiguous, each row_bytes = ggml_row_bytes(type, n_in) long.
struct WeightView {
  GgmlType type = GgmlType::F32;
  const void* data = nullptr;
  int64_t n_in = 0;
  int64_t n_out = 0;
  // Optional copy in the AVX-512 16-row interleaved layout (matmul_pack.h), used instead
  // of data where the CPU runs the packed kernels; results are bit-identical either way.
  const void* packed = nullptr;
};

// Y[t, o] = sum_i W[o, i] * X[t, i] for t < n_tokens.
// x: [n_tokens, n_in] row-major floats; y: [n_tokens, n_out] row-major floats.
// Work is split over the pool's threads; no allocation (scratch is thread-local and
// grows once to the largest size seen).
void matmul(const WeightView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool);

// One weight of a matmul_multi call and where its output goes.
struct MatmulOutput {
  const WeightView* w;
  float* y;  // [n_tokens, w->n_out]
};

// matmul() of several weights over the same activations x (every w->n_in equal) in one
// pool dispatch: activations are converted once per weight type and rows of all the
// outputs are shared out together. Each output is bit-identical to a separate matmul().
// At most 8 outputs.
void matmul_multi(std::span<const MatmulOutput> outs, const float* x, int64_t n_tokens, ThreadPool& pool);

// RMSNorm applied to each activation row on its way into a matmul (see below).
struct RowNorm {
  const float* weight;  // [n_in]
  float eps;
};

// matmul_multi() of rmsnorm(x): bit-identical to rmsnorm_rows(x -> normed) followed by
// matmul_multi(outs, normed, ...). Where every weight takes 8-bit activations, each row
// is normed and quantized in one go (the normed rows never leave the core's cache and
// `normed` is not written); otherwise the normed rows are written to `normed`
// ([n_tokens, n_in] scratch) first.
void matmul_multi(std::span<const MatmulOutput> outs, const float* x, const RowNorm& norm, float* normed,
                  int64_t n_tokens, ThreadPool& pool);

// Whether matmul supports this weight type.
bool matmul_supports(GgmlType type);

}  // namespace kvserve

// Whole-row reductions of the sampler and the logprobs helpers, one implementation per ISA
// (generic 128-bit vectors, AVX2, AVX-512) chosen at run time by best_isa(). A 128k-token
// row is reduced in tens of microseconds.
#pragma once

#include <cstdint>

#include "core/cpu_features.h"

namespace kvserve {

struct SamplerKernels {
  // Rows are reduced in blocks of this many tokens: float lanes inside a block, doubles
  // across blocks, so sums over 128k values stay accurate to ~1e-7.
  static constexpr int32_t kBlock = 1024;
  // Windows (temperature-scaled nats below the maximum) whose mass window_masses reports.
  static constexpr int kWindows = 4;
  static constexpr float kWindowNats[kWindows] = {2.0f, 4.0f, 8.0f, 16.0f};

  // Largest value of x[0..n); -inf for an empty or all -inf row.
  float (*row_max)(const float* x, int32_t n);
  // sum_i exp((x[i] - m) * inv_t), for m >= every x[i].
  double (*sum_exp)(const float* x, int32_t n, float m, float inv_t);
  // w[i] = exp((x[i] - m) * inv_t) if x[i] >= min_logit else 0; block_sums[b] = sum of w
  // over block b. Returns the total. w: [n], block_sums: [ceil(n / kBlock)].
  double (*exp_weights)(const float* x, int32_t n, float m, float inv_t, float min_logit, float* w,
                        double* block_sums);
  // Stores w[i] = exp((x[i] - m) * inv_t) and returns z = sum of w; mass[j] / count[j] are
  // the same sum and the count over tokens with x[i] >= lo[j] (lo[j] = m - kWindowNats[j] *
  // T, computed by the caller). w: [n].
  double (*window_masses)(const float* x, int32_t n, float m, float inv_t, const float* lo, double* mass,
                          int32_t* count, float* w);
  // Writes the indices i (ascending) with x[i] >= v to idx and returns how many. idx: [n].
  int32_t (*select_at_least)(const float* x, int32_t n, float v, int32_t* idx);
  // Number of i with x[i] > v.
  int32_t (*count_greater)(const float* x, int32_t n, float v);
  // Smallest i >= from with x[i] > v, or n.
  int32_t (*first_greater)(const float* x, int32_t n, int32_t from, float v);
};

// The kernels for this CPU (best_isa(), so KVSERVE_ISA can lower it).
const SamplerKernels& sampler_kernels();
// A given ISA's kernels (for tests); the caller checks the CPU supports it.
const SamplerKernels& sampler_kernels_for(Isa isa);

// Per-ISA tables, defined in sampler_kernels{,_avx2,_avx512}.cpp.
const SamplerKernels& sampler_kernels_generic();
const SamplerKernels& sampler_kernels_avx2();
const SamplerKernels& sampler_kernels_avx512();

}  // namespace kvserve

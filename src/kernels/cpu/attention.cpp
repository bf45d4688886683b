#include "kernels/cpu/attention.h"

#include "core/cpu_features.h"
#include "kernels/cpu/attention_impl.h"

namespace kvserve {

// Defined in attention_avx2.cpp / attention_avx512.cpp (compiled for those ISAs).
void attention_paged_avx2(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                          const PagedKvHead& kv, int head_dim, float scale, float* out, int64_t out_stride);
void attention_paged_avx512(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                            const PagedKvHead& kv, int head_dim, float scale, float* out, int64_t out_stride);

namespace {
struct ScalarOps {
  static float dot(const float* a, const float* b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
  }
  static void axpy(float* y, float a, const float* x, int n) {
    for (int i = 0; i < n; ++i) y[i] += a * x[i];
  }
  static void scale(float* y, float a, int n) {
    for (int i = 0; i < n; ++i) y[i] *= a;
  }
};

using AttentionFn = void (*)(const float*, int64_t, int, int, int64_t, const PagedKvHead&, int, float, float*,
                             int64_t);

AttentionFn pick() {
  switch (best_isa()) {
    case Isa::Avx512: return attention_paged_avx512;
    case Isa::Avx2: return attention_paged_avx2;
    default: return attention_paged_scalar;
  }
}
}  // namespace

void attention_paged_scalar(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                            const PagedKvHead& kv, int head_dim, float scale, float* out,
                            int64_t out_stride) {
  attention_detail::attention_paged_impl<ScalarOps>(q, q_stride, n_rows, n_group, n_past, kv, head_dim, scale,
                                                    out, out_stride);
}

void attention_paged(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                     const PagedKvHead& kv, int head_dim, float scale, float* out, int64_t out_stride) {
  static const AttentionFn fn = pick();
  fn(q, q_stride, n_rows, n_group, n_past, kv, head_dim, scale, out, out_stride);
}

}  // namespace kvserve

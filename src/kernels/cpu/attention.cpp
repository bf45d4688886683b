#include "kernels/cpu/attention.h"

#include <cstring>

#include "core/cpu_features.h"
#include "core/half.h"
#include "kernels/cpu/attention_impl.h"

namespace kvserve {

// Defined in attention_avx2.cpp / attention_avx512.cpp (compiled for those ISAs).
void attention_paged_avx2(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                          const PagedKvHead& kv, int head_dim, float scale, float* out, int64_t out_stride);
void attention_paged_avx512(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                            const PagedKvHead& kv, int head_dim, float scale, float* out, int64_t out_stride);
// F16 only: the f32 store is plain copies, the same on every ISA.
void kv_store_token_f16_avx2(void* k_head, void* v_head, int block_size, int head_dim, int slot,
                             const float* k, const float* v);

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
  static void to_f32(const void* src, KvDtype t, float* dst, int n) {
    if (t == KvDtype::F32) {
      std::memcpy(dst, src, sizeof(float) * size_t(n));
      return;
    }
    const auto* h = static_cast<const uint16_t*>(src);
    for (int i = 0; i < n; ++i) dst[i] = fp16_to_fp32(h[i]);
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

void kv_store_token_scalar(void* k_head, void* v_head, KvDtype dtype, int bs, int head_dim, int slot,
                           const float* k, const float* v) {
  if (dtype == KvDtype::F32) {
    auto* kd = static_cast<float*>(k_head);
    for (int d = 0; d < head_dim; ++d) kd[int64_t(d) * bs + slot] = k[d];
    std::memcpy(static_cast<float*>(v_head) + int64_t(slot) * head_dim, v, sizeof(float) * size_t(head_dim));
    return;
  }
  auto* kd = static_cast<uint16_t*>(k_head);
  auto* vd = static_cast<uint16_t*>(v_head) + int64_t(slot) * head_dim;
  for (int d = 0; d < head_dim; ++d) {
    kd[int64_t(d) * bs + slot] = fp32_to_fp16(k[d]);
    vd[d] = fp32_to_fp16(v[d]);
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

// Both versions round to nearest even (F16C's vcvtps2ph with that mode, fp32_to_fp16), so
// the stored bits do not depend on the ISA.
void kv_store_token(void* k_head, void* v_head, KvDtype dtype, int block_size, int head_dim, int slot,
                    const float* k, const float* v) {
  static const bool vec = best_isa() >= Isa::Avx2;
  if (vec && dtype == KvDtype::F16)
    kv_store_token_f16_avx2(k_head, v_head, block_size, head_dim, slot, k, v);
  else
    kv_store_token_scalar(k_head, v_head, dtype, block_size, head_dim, slot, k, v);
}

}  // namespace kvserve

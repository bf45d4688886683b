#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/cpu_features.h"
#include "core/fp8.h"
#include "core/half.h"
#include "kernels/cpu/attention_impl.h"
#include "kernels/cpu/isa_dispatch.h"

namespace kvserve {

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

using PartialFn = detail::AttentionPartialFn;

void attention_partial_scalar(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                              const PagedKvHead& kv, int head_dim, float scale, int64_t key_begin,
                              int64_t key_end, float* acc, int64_t acc_stride, float* m, float* l) {
  attention_detail::attention_partial_impl<ScalarOps>(q, q_stride, n_rows, n_group, n_past, kv, head_dim,
                                                      scale, key_begin, key_end, acc, acc_stride, m, l);
}

// attention_paged over the partial kernel fn: the first segment a row's window reaches
// straight into out, each later one into scratch and folded in. Each segment's call
// takes only the rows that see some of it: rows before its first key (causal) and rows
// whose window starts past its end are left out.
void attention_segmented(PartialFn fn, const float* q, int64_t q_stride, int n_rows, int n_group,
                         int64_t n_past, const PagedKvHead& kv, int head_dim, float scale, float* out,
                         int64_t out_stride) {
  constexpr int64_t S = kAttentionSegmentKeys;
  const int n_flat = n_rows * n_group;
  const int64_t n_keys = n_past + n_rows;  // keys the last row sees
  const int64_t seg_stride = int64_t(n_group) * head_dim;
  const int64_t k_first =
      attention_first_segment(n_past, kv.window) * S;  // the segment of row 0's window start
  // Rows [0, rows_before(k1)) see some key before k1; a later row's window starts at k1 or after.
  auto rows_before = [&](int64_t k1) {
    if (kv.window <= 0 || kv.window > n_keys) return n_rows;  // (and no overflow for a huge window)
    return int(std::clamp<int64_t>(k1 + kv.window - 1 - n_past, 0, n_rows));
  };
  // Grown once per thread; no allocation per call after that.
  thread_local std::vector<float> buf;
  const size_t need = size_t(4 * n_flat) + (n_keys > k_first + S ? size_t(n_rows * seg_stride) : 0);
  if (buf.size() < need) buf.resize(need);
  float* m = buf.data();
  float* l = m + n_flat;
  float* m2 = l + n_flat;
  float* l2 = m2 + n_flat;
  float* acc2 = l2 + n_flat;
  // Each segment's kernel prefetches on into the next segment (the last, into what the
  // caller named next), which is read from its first key on: not clamped to a window.
  PagedKvHead next_segments = kv;
  next_segments.window = 0;
  auto segment = [&](int64_t k1) {
    PagedKvHead seg = kv;
    if (k1 < n_keys) {
      seg.prefetch_next = &next_segments;
      seg.prefetch_next_begin = k1;
      seg.prefetch_next_keys = std::min(n_keys, k1 + S);
    }
    return seg;
  };
  const int64_t first_end = std::min(n_keys, k_first + S);
  const int r_first = rows_before(first_end);
  fn(q, q_stride, r_first, n_group, n_past, segment(first_end), head_dim, scale, k_first, first_end, out,
     out_stride, m, l);
  for (int i = r_first * n_group; i < n_flat; ++i) {  // rows that see none of it: empty, as the kernel gives
    m[i] = -INFINITY;
    l[i] = 0.0f;
    std::fill_n(out + (i / n_group) * out_stride + (i % n_group) * head_dim, head_dim, 0.0f);
  }
  for (int64_t k0 = k_first + S; k0 < n_keys; k0 += S) {
    const int64_t k1 = std::min(n_keys, k0 + S);
    const PagedKvHead seg = segment(k1);
    // Rows before position k0 see none of these keys: start at the first that does.
    const int r0 = int(std::max<int64_t>(0, k0 - n_past)), r1 = rows_before(k1);
    fn(q + r0 * q_stride, q_stride, r1 - r0, n_group, n_past + r0, seg, head_dim, scale, k0, k1, acc2,
       seg_stride, m2, l2);
    for (int i = 0; i < (r1 - r0) * n_group; ++i) {
      const int r = r0 + i / n_group, g = i % n_group;
      if (l2[i] > 0.0f)
        attention_merge(out + r * out_stride + g * head_dim, &m[r * n_group + g], &l[r * n_group + g],
                        acc2 + (i / n_group) * seg_stride + g * head_dim, m2[i], l2[i], head_dim);
    }
  }
  for (int i = 0; i < n_flat; ++i)
    attention_finish(out + (i / n_group) * out_stride + (i % n_group) * head_dim, l[i], head_dim);
}

// attention_paged on ISA I's kernels (for attention_paged_for).
template <Isa I>
void paged_on(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
              const PagedKvHead& kv, int head_dim, float scale, float* out, int64_t out_stride) {
  attention_segmented(detail::kAttentionKernels[I].partial, q, q_stride, n_rows, n_group, n_past, kv,
                      head_dim, scale, out, out_stride);
}

// int8 / fp8: one token's head_dim values as codes with one scale (see kv_dtype.h).
void quantize_head(const float* x, int head_dim, KvDtype dtype, int64_t stride, uint8_t* codes,
                   float* scale) {
  float amax = 0.0f;
  for (int d = 0; d < head_dim; ++d) amax = std::max(amax, std::fabs(x[d]));
  const float s = amax / (dtype == KvDtype::Int8 ? 127.0f : 448.0f);
  *scale = s;
  for (int d = 0; d < head_dim; ++d) {
    const float y = s > 0.0f ? x[d] / s : 0.0f;
    uint8_t c;
    if (dtype == KvDtype::Int8)  // (a NaN compares false twice and becomes 0)
      c = uint8_t(int8_t(y >= 127.0f ? 127 : y <= -127.0f ? -127 : y == y ? int(std::nearbyint(y)) : 0));
    else
      c = fp32_to_fp8_e4m3(y);
    codes[int64_t(d) * stride] = c;
  }
}

void kv_store_token_scalar(void* k_head, void* v_head, KvDtype dtype, int bs, int head_dim, int slot,
                           const float* k, const float* v) {
  switch (dtype) {
    case KvDtype::F32: {
      auto* kd = static_cast<float*>(k_head);
      for (int d = 0; d < head_dim; ++d) kd[int64_t(d) * bs + slot] = k[d];
      std::memcpy(static_cast<float*>(v_head) + int64_t(slot) * head_dim, v,
                  sizeof(float) * size_t(head_dim));
      return;
    }
    case KvDtype::F16:
    case KvDtype::BF16: {
      auto* kd = static_cast<uint16_t*>(k_head);
      auto* vd = static_cast<uint16_t*>(v_head) + int64_t(slot) * head_dim;
      const bool f16 = dtype == KvDtype::F16;
      for (int d = 0; d < head_dim; ++d) {
        kd[int64_t(d) * bs + slot] = f16 ? fp32_to_fp16(k[d]) : fp32_to_bf16(k[d]);
        vd[d] = f16 ? fp32_to_fp16(v[d]) : fp32_to_bf16(v[d]);
      }
      return;
    }
    case KvDtype::Int8:
    case KvDtype::Fp8: {
      auto* kd = static_cast<uint8_t*>(k_head);
      auto* vd = static_cast<uint8_t*>(v_head);
      const int64_t scales = int64_t(bs) * head_dim;  // bytes to the block's scales
      float sk, sv;
      quantize_head(k, head_dim, dtype, bs, kd + slot, &sk);
      quantize_head(v, head_dim, dtype, 1, vd + int64_t(slot) * head_dim, &sv);
      std::memcpy(kd + scales + int64_t(slot) * 4, &sk, 4);
      std::memcpy(vd + scales + int64_t(slot) * 4, &sv, 4);
      return;
    }
  }
}

void kv_store_token_f16_scalar(void* k_head, void* v_head, int bs, int head_dim, int slot, const float* k,
                               const float* v) {
  kv_store_token_scalar(k_head, v_head, KvDtype::F16, bs, head_dim, slot, k, v);
}
}  // namespace

constinit const detail::AttentionKernels detail::kAttentionScalar{attention_partial_scalar,
                                                                  kv_store_token_f16_scalar};

void attention_merge(float* acc, float* m, float* l, const float* acc2, float m2, float l2, int head_dim) {
  if (*l == 0.0f) {  // nothing seen yet: exactly the later result (the fold below could flip a -0)
    *m = m2;
    *l = l2;
    std::copy_n(acc2, head_dim, acc);
    return;
  }
  const float m_new = std::max(*m, m2);
  const float a = std::exp(*m - m_new), b = std::exp(m2 - m_new);
  *l = *l * a + l2 * b;
  *m = m_new;
  for (int d = 0; d < head_dim; ++d) acc[d] = acc[d] * a + acc2[d] * b;
}

void attention_finish(float* acc, float l, int head_dim) {
  const float inv = 1.0f / l;
  for (int d = 0; d < head_dim; ++d) acc[d] *= inv;
}

void attention_paged_scalar(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                            const PagedKvHead& kv, int head_dim, float scale, float* out,
                            int64_t out_stride) {
  attention_segmented(attention_partial_scalar, q, q_stride, n_rows, n_group, n_past, kv, head_dim, scale,
                      out, out_stride);
}

AttentionPagedFn attention_paged_for(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return paged_on<Isa::Avx512>;
    case Isa::Avx2: return paged_on<Isa::Avx2>;
    default: return attention_paged_scalar;
  }
}

void attention_paged_partial(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                             const PagedKvHead& kv, int head_dim, float scale, int64_t key_begin,
                             int64_t key_end, float* acc, int64_t acc_stride, float* m, float* l) {
  static const PartialFn fn = detail::kAttentionKernels[best_isa()].partial;
  fn(q, q_stride, n_rows, n_group, n_past, kv, head_dim, scale, key_begin, key_end, acc, acc_stride, m, l);
}

void attention_paged(const float* q, int64_t q_stride, int n_rows, int n_group, int64_t n_past,
                     const PagedKvHead& kv, int head_dim, float scale, float* out, int64_t out_stride) {
  static const PartialFn fn = detail::kAttentionKernels[best_isa()].partial;
  attention_segmented(fn, q, q_stride, n_rows, n_group, n_past, kv, head_dim, scale, out, out_stride);
}

// f16: both versions round to nearest even (F16C's vcvtps2ph with that mode,
// fp32_to_fp16); the other types are stored by the scalar code on every ISA (once per
// token and head, off the hot path). So the stored bits never depend on the ISA.
void kv_store_token(void* k_head, void* v_head, KvDtype dtype, int block_size, int head_dim, int slot,
                    const float* k, const float* v) {
  static const detail::KvStoreF16Fn f16 =
      detail::kAttentionKernels.entry(best_isa(), &detail::AttentionKernels::kv_store_f16);
  if (dtype == KvDtype::F16)
    f16(k_head, v_head, block_size, head_dim, slot, k, v);
  else
    kv_store_token_scalar(k_head, v_head, dtype, block_size, head_dim, slot, k, v);
}

}  // namespace kvserve

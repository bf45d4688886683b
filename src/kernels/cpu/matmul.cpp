#include "kernels/cpu/matmul.h"

#include <algorithm>
#include <cassert>
#include <vector>

#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/quant_act.h"

namespace kvserve {
namespace {

detail::MatmulRangeFn pick_kernel(Isa isa, GgmlType type) {
  detail::MatmulRangeFn fn = nullptr;
  if (isa == Isa::Avx512) fn = detail::matmul_fn_avx512(type);
  if (!fn && int(isa) >= int(Isa::Avx2)) fn = detail::matmul_fn_avx2(type);
  if (!fn) fn = detail::matmul_fn_scalar(type);
  return fn;
}

// Rows per thread chunk are a multiple of this, so SIMD row tiles stay whole.
constexpr int64_t kRowAlign = 16;

}  // namespace

bool matmul_supports(GgmlType type) {
  return detail::matmul_fn_scalar(type) != nullptr;
}

void matmul_isa(Isa isa, const WeightView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool) {
  assert(matmul_supports(w.type));
  assert(w.n_in % ggml_traits(w.type).block_size == 0);
  if (n_tokens <= 0 || w.n_out <= 0) return;
  const ActFormat fmt = act_format(w.type);
  const size_t x_row_bytes = act_row_bytes(fmt, w.n_in);

  // Activations converted once per call, into the caller's scratch (grows, never shrinks).
  const uint8_t* xq = reinterpret_cast<const uint8_t*>(x);
  if (fmt != ActFormat::F32) {
    thread_local std::vector<uint8_t> scratch;
    const size_t need = x_row_bytes * size_t(n_tokens);
    if (scratch.size() < need) scratch.resize(need);
    uint8_t* dst = scratch.data();
    const int64_t n_in = w.n_in;
    auto convert = [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        quantize_act_row(isa, fmt, x + t * n_in, n_in, dst + size_t(t) * x_row_bytes);
    };
    // Worth waking the pool only for large batches.
    if (n_tokens * n_in >= (1 << 16))
      pool.parallel_for(n_tokens, [&](int64_t t0, int64_t t1, int) { convert(t0, t1); });
    else
      convert(0, n_tokens);
    xq = dst;
  }

  const detail::MatmulArgs args{static_cast<const uint8_t*>(w.data),
                                ggml_row_bytes(w.type, w.n_in),
                                w.n_in,
                                xq,
                                x_row_bytes,
                                n_tokens,
                                y,
                                w.n_out};
  const detail::MatmulRangeFn fn = pick_kernel(isa, w.type);
  const int64_t n_out = w.n_out;
  pool.run([&](int tid, int nth) {
    int64_t chunk = (n_out + nth - 1) / nth;
    chunk = (chunk + kRowAlign - 1) / kRowAlign * kRowAlign;
    const int64_t o0 = std::min(n_out, chunk * tid);
    const int64_t o1 = std::min(n_out, o0 + chunk);
    if (o0 < o1) fn(args, o0, o1);
  });
}

void matmul(const WeightView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool) {
  matmul_isa(best_isa(), w, x, n_tokens, y, pool);
}

}  // namespace kvserve

#include "kernels/cpu/matmul.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <vector>

#include "core/half.h"
#include "gguf/quant_blocks.h"
#include "kernels/cpu/isa_dispatch.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/quant_act.h"
#include "kernels/cpu/rmsnorm.h"

namespace kvserve {
namespace {

// isa's kernel for the file's rows of type, or the next lower ISA's.
detail::MatmulRangeFn pick_kernel(Isa isa, GgmlType type) {
  for (int i = int(isa); i > 0; --i)
    if (detail::MatmulRangeFn fn = detail::kMatmulKernels[Isa(i)].range(type)) return fn;
  return detail::kMatmulScalar.range(type);
}

// Grows a thread-local buffer (never shrinks, so no allocation after warm-up).
template <class T>
T* scratch_buffer(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// Fills the dense activation views of `a` for tokens [t0, t1) from Q8_0/Q8_1 blocks.
void fill_dense_views(const detail::MatmulArgs& a, GgmlType type, int64_t t0, int64_t t1) {
  const int64_t nb = a.n_in / detail::dense_unit(type);
  const bool q81 = act_format(type) == ActFormat::Q8_1;
  const int zp = detail::simd_zero_point(type);
  auto* xq = const_cast<int8_t*>(a.xq);
  auto* xd = const_cast<float*>(a.xd);
  auto* xs = const_cast<float*>(a.xs);
  auto* xc = const_cast<int32_t*>(a.xcorr);
  for (int64_t t = t0; t < t1; ++t) {
    const uint8_t* row = a.x + size_t(t) * a.x_row_bytes;
    if (act_format(type) == ActFormat::Q8_K) {
      for (int64_t k = 0; k < a.n_in / QK_K; ++k) {
        const auto* blk = reinterpret_cast<const BlockQ8_K*>(row) + k;
        std::memcpy(xq + t * a.n_in + k * QK_K, blk->qs, QK_K);
        if (type == GgmlType::Q6_K) {  // 16-element units, corrected for the zero point
          for (int u = 0; u < 16; ++u) {
            xd[t * nb + k * 16 + u] = blk->d;
            xc[t * nb + k * 16 + u] = -zp * blk->bsums[u];
          }
          continue;
        }
        for (int u = 0; u < 8; ++u) {
          const int64_t i = t * nb + k * 8 + u;
          xd[i] = blk->d;
          xs[i] = blk->d * float(blk->bsums[2 * u] + blk->bsums[2 * u + 1]);
          xc[i] = 0;
        }
      }
      continue;
    }
    for (int64_t b = 0; b < nb; ++b) {
      const int8_t* qs;
      if (q81) {
        const auto* blk = reinterpret_cast<const BlockQ8_1*>(row) + b;
        xd[t * nb + b] = fp16_to_fp32(blk->d);
        xs[t * nb + b] = fp16_to_fp32(blk->s);
        qs = blk->qs;
      } else {
        const auto* blk = reinterpret_cast<const BlockQ8_0*>(row) + b;
        xd[t * nb + b] = fp16_to_fp32(blk->d);
        qs = blk->qs;
      }
      int sum = 0;
      for (int i = 0; i < 32; ++i) sum += qs[i];
      std::memcpy(xq + t * a.n_in + b * 32, qs, 32);
      xc[t * nb + b] = -zp * sum;
    }
  }
}

// Rows per claimed chunk are a multiple of this, so SIMD row tiles stay whole.
constexpr int64_t kRowAlign = 16;
// Activation elements (tokens x n_in) worth waking the pool for when converting or norming.
constexpr int64_t kMinParallelConvert = int64_t(1) << 16;

// Weights one matmul_multi call takes (q/k/v is the most the model runner needs).
constexpr size_t kMaxMultiOutputs = 8;

// Converted activations of one call, per distinct weight type (thread-local, grows once).
struct ActScratch {
  std::vector<uint8_t> rows;
  std::vector<int8_t> q;
  std::vector<float> d, s;
  std::vector<int32_t> corr;
};

// A weight ready to run: its kernel and arguments (activations already converted).
struct Prepared {
  detail::MatmulRangeFn fn;
  detail::MatmulArgs args;
  int64_t n_out;
};

// Converts x into the activation format of w (into sc) and sets the activation fields
// of args; args' weight fields are set by the caller.
void convert_activations(Isa isa, const WeightView& w, const float* x, const RowNorm* norm, int64_t n_tokens,
                         ActScratch& sc, detail::MatmulArgs& args, ThreadPool& pool) {
  const ActFormat fmt = act_format(w.type);
  const size_t x_row_bytes = act_row_bytes(fmt, w.n_in);
  args.n_in = w.n_in;
  args.x_row_bytes = x_row_bytes;
  args.n_tokens = n_tokens;
  if (fmt == ActFormat::F32) {
    assert(!norm && "float activations are normed by the caller");
    args.x = reinterpret_cast<const uint8_t*>(x);  // f32 activations are used as they are
    return;
  }
  const bool dense = (isa != Isa::Scalar && (fmt == ActFormat::Q8_0 || fmt == ActFormat::Q8_1)) ||
                     detail::kMatmulKernels[isa].dense_views(w.type) != nullptr;
  uint8_t* dst = scratch_buffer(sc.rows, x_row_bytes * size_t(n_tokens));
  args.x = dst;
  if (dense) {
    const size_t nb = size_t(n_tokens * (w.n_in / detail::dense_unit(w.type)));
    args.xq = scratch_buffer(sc.q, size_t(n_tokens * w.n_in));
    args.xd = scratch_buffer(sc.d, nb);
    args.xs = fmt != ActFormat::Q8_0 ? scratch_buffer(sc.s, nb) : nullptr;
    args.xcorr = scratch_buffer(sc.corr, nb);
  }
  const int64_t n_in = w.n_in;
  const detail::QuantizeActFn quantize = detail::quantize_act_fn(isa, fmt);
  auto convert = [&](int64_t t0, int64_t t1) {
    // With a norm, each row is normed into a per-thread row (in L1) and quantized from there.
    thread_local std::vector<float> normed_row;
    float* row = norm ? scratch_buffer(normed_row, size_t(n_in)) : nullptr;
    for (int64_t t = t0; t < t1; ++t) {
      const float* xt = x + t * n_in;
      if (norm) {
        rmsnorm(xt, norm->weight, row, n_in, norm->eps);
        xt = row;
      }
      quantize(xt, n_in, dst + size_t(t) * x_row_bytes);  // as quantize_act_row(isa, fmt, ...)
    }
    if (dense) fill_dense_views(args, w.type, t0, t1);
  };
  if (n_tokens * n_in >= kMinParallelConvert)
    pool.parallel_chunks(n_tokens, std::max<int64_t>(1, n_tokens / (4 * pool.size())),
                         [&](int64_t t0, int64_t t1, int) { convert(t0, t1); });
  else
    convert(0, n_tokens);
}

}  // namespace

bool matmul_supports(GgmlType type) {
  return detail::kMatmulScalar.range(type) != nullptr;
}

void matmul_multi_isa(Isa isa, std::span<const MatmulOutput> outs, const float* x, const RowNorm* norm,
                      float* normed, int64_t n_tokens, ThreadPool& pool) {
  assert(outs.size() <= kMaxMultiOutputs);
  if (n_tokens <= 0) return;
  if (norm) {
    // Float activations (F32 weights) are read in place, so they need the normed rows
    // written out; then every weight simply reads those.
    bool float_act = false;
    for (const MatmulOutput& o : outs) float_act |= act_format(o.w->type) == ActFormat::F32;
    if (float_act) {
      assert(normed && "float activations need the scratch for the normed rows");
      const int64_t n_in = outs[0].w->n_in;
      auto rows = [&](int64_t t0, int64_t t1, int) {
        rmsnorm_rows(x + t0 * n_in, norm->weight, normed + t0 * n_in, t1 - t0, n_in, norm->eps);
      };
      if (n_tokens * n_in >= kMinParallelConvert)
        pool.parallel_for(n_tokens, rows);
      else
        rows(0, n_tokens, 0);
      x = normed;
      norm = nullptr;
    }
  }
  thread_local ActScratch scratch[kMaxMultiOutputs];
  Prepared prep[kMaxMultiOutputs];
  for (size_t i = 0; i < outs.size(); ++i) {
    const WeightView& w = *outs[i].w;
    assert(matmul_supports(w.type));
    assert(w.n_in % ggml_traits(w.type).block_size == 0);
    assert(i == 0 || w.n_in == outs[0].w->n_in);
    detail::MatmulArgs& args = prep[i].args;
    args = detail::MatmulArgs{};
    // Activations are converted once per weight type: weights of the same type read
    // the same converted rows (the same bytes a separate call would produce).
    size_t same = i;
    for (size_t j = 0; j < i; ++j)
      if (outs[j].w->type == w.type) same = j;
    if (same == i)
      convert_activations(isa, w, x, norm, n_tokens, scratch[i], args, pool);
    else
      args = prep[same].args;
    args.w = static_cast<const uint8_t*>(w.data);
    args.w_row_bytes = ggml_row_bytes(w.type, w.n_in);
    args.y = outs[i].y;
    args.ldy = w.n_out;
    args.wp = nullptr;
    prep[i].fn = pick_kernel(isa, w.type);
    // The packed copy, where this ISA has kernels for it (AVX-512: every packed type;
    // AVX2: the 4- and 5-bit block types); otherwise the file's rows.
    const detail::MatmulRangeFn packed_fn = w.packed ? detail::kMatmulKernels[isa].packed(w.type) : nullptr;
    if (packed_fn) {
      assert(w.n_out % 16 == 0);
      prep[i].fn = packed_fn;
      args.wp = static_cast<const uint8_t*>(w.packed);
    }
    prep[i].n_out = w.n_out;
  }

  // The weights' rows, as 16-row tiles one after another, are split into one contiguous
  // range per thread (ThreadPool::parallel_ranges): each thread streams its own part of
  // the weights front to back, and the threads even out at the end by taking tiles from
  // each other, so a thread slowed by another process takes fewer. One pool dispatch for
  // all the weights. Each row's result does not depend on the piece it is computed in
  // (batch invariance).
  int64_t first_tile[kMaxMultiOutputs + 1];  // tile index where each weight starts
  first_tile[0] = 0;
  for (size_t i = 0; i < outs.size(); ++i)
    first_tile[i + 1] = first_tile[i] + (prep[i].n_out + kRowAlign - 1) / kRowAlign;
  const int64_t n_tiles = first_tile[outs.size()];
  auto run_tiles = [&](int64_t t0, int64_t t1, int) {
    for (size_t i = 0; i < outs.size() && t0 < t1; ++i) {
      if (t0 >= first_tile[i + 1]) continue;
      const int64_t e = std::min(t1, first_tile[i + 1]);
      prep[i].fn(prep[i].args, (t0 - first_tile[i]) * kRowAlign,
                 std::min(prep[i].n_out, (e - first_tile[i]) * kRowAlign));
      t0 = e;
    }
  };
  // Batches take 32-row pieces (the 32-row x 4-token tiles stay whole); a GEMV's pieces
  // are single tiles, so the threads finish within one of each other.
  pool.parallel_ranges(n_tiles, n_tokens >= 4 ? 2 : 1, run_tiles);
}

void matmul_isa(Isa isa, const WeightView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool) {
  const MatmulOutput out{&w, y};
  matmul_multi_isa(isa, {&out, 1}, x, nullptr, nullptr, n_tokens, pool);
}

void matmul(const WeightView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool) {
  matmul_isa(best_isa(), w, x, n_tokens, y, pool);
}

void matmul_multi(std::span<const MatmulOutput> outs, const float* x, int64_t n_tokens, ThreadPool& pool) {
  matmul_multi_isa(best_isa(), outs, x, nullptr, nullptr, n_tokens, pool);
}

void matmul_multi(std::span<const MatmulOutput> outs, const float* x, const RowNorm& norm, float* normed,
                  int64_t n_tokens, ThreadPool& pool) {
  matmul_multi_isa(best_isa(), outs, x, &norm, normed, n_tokens, pool);
}

}  // namespace kvserve

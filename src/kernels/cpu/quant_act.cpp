#include "kernels/cpu/quant_act.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

#include "core/half.h"
#include "gguf/quant_blocks.h"
#include "kernels/cpu/isa_dispatch.h"

namespace kvserve {

ActFormat act_format(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return ActFormat::F32;
    case GgmlType::F16: return ActFormat::F16;
    case GgmlType::BF16: return ActFormat::BF16;
    case GgmlType::Q4_0:
    case GgmlType::Q5_0:
    case GgmlType::Q8_0: return ActFormat::Q8_0;
    case GgmlType::Q4_1:
    case GgmlType::Q5_1: return ActFormat::Q8_1;
    case GgmlType::Q2_K:
    case GgmlType::Q3_K:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K: return ActFormat::Q8_K;
    default: break;
  }
  assert(false && "no activation format for this weight type");
  return ActFormat::F32;
}

const char* act_format_name(ActFormat f) {
  switch (f) {
    case ActFormat::F32: return "f32";
    case ActFormat::F16: return "f16";
    case ActFormat::BF16: return "bf16";
    case ActFormat::Q8_0: return "q8_0";
    case ActFormat::Q8_1: return "q8_1";
    case ActFormat::Q8_K: return "q8_k";
  }
  return "?";
}

int64_t act_block_size(ActFormat f) {
  switch (f) {
    case ActFormat::Q8_0:
    case ActFormat::Q8_1: return 32;
    case ActFormat::Q8_K: return QK_K;
    default: return 1;
  }
}

size_t act_row_bytes(ActFormat f, int64_t n) {
  switch (f) {
    case ActFormat::F32: return size_t(n) * 4;
    case ActFormat::F16:
    case ActFormat::BF16: return size_t(n) * 2;
    case ActFormat::Q8_0: return size_t(n / QK8_0) * sizeof(BlockQ8_0);
    case ActFormat::Q8_1: return size_t(n / QK8_1) * sizeof(BlockQ8_1);
    case ActFormat::Q8_K: return size_t(n / QK_K) * sizeof(BlockQ8_K);
  }
  return 0;
}

namespace {

// Round to nearest, ties to even (nearbyint in the default mode) for |v| < 2^22 without
// a libm call: after adding 1.5 * 2^23 no fraction bits are left.
inline float round_even(float v) {
  return (v + 12582912.0f) - 12582912.0f;
}

void to_f32(const float* x, int64_t n, void* dst) {
  std::memcpy(dst, x, size_t(n) * 4);
}

void to_f16(const float* x, int64_t n, void* dst) {
  auto* d = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_fp16(x[i]);
}

void to_bf16(const float* x, int64_t n, void* dst) {
  auto* d = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_bf16(x[i]);
}

// llama.cpp's x86 Q8_0/Q8_1 quantizer: d = amax / 127 stored as fp16, q = round-to-even
// of x * (127 / amax) (note: the unrounded inverse, not 1 / fp16(d)).
template <class Block>
void to_q8_01(const float* x, int64_t n, void* dst, bool with_sum) {
  assert(n % 32 == 0);
  auto* y = static_cast<Block*>(dst);
  for (int64_t b = 0; b < n / 32; ++b, x += 32) {
    float amax = 0.0f;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    y[b].d = fp32_to_fp16(d);
    int sum = 0;
    for (int i = 0; i < 32; ++i) {
      const int q = int(round_even(x[i] * id));
      y[b].qs[i] = int8_t(q);
      sum += q;
    }
    if constexpr (sizeof(Block) == sizeof(BlockQ8_1)) {
      if (with_sum) y[b].s = fp32_to_fp16(d * float(sum));
    }
  }
}

void to_q8_0(const float* x, int64_t n, void* dst) {
  to_q8_01<BlockQ8_0>(x, n, dst, false);
}
void to_q8_1(const float* x, int64_t n, void* dst) {
  to_q8_01<BlockQ8_1>(x, n, dst, true);
}

// ggml's Q8_K: the scale comes from the signed element of largest magnitude, so that
// element maps to exactly -127 (values may reach +128, clamped to 127); d is a float.
void to_q8_k(const float* x, int64_t n, void* dst) {
  assert(n % QK_K == 0);
  auto* y = static_cast<BlockQ8_K*>(dst);
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
    float amax = 0.0f, vmax = 0.0f;
    for (int i = 0; i < QK_K; ++i) {
      const float a = std::fabs(x[i]);
      if (a > amax) {
        amax = a;
        vmax = x[i];
      }
    }
    if (amax == 0.0f) {
      std::memset(&y[b], 0, sizeof(BlockQ8_K));
      continue;
    }
    const float iscale = -127.0f / vmax;
    for (int i = 0; i < QK_K; ++i) {
      const int q = int(round_even(iscale * x[i]));
      y[b].qs[i] = int8_t(q < 127 ? q : 127);
    }
    for (int g = 0; g < QK_K / 16; ++g) {
      int s = 0;
      for (int i = 0; i < 16; ++i) s += y[b].qs[g * 16 + i];
      y[b].bsums[g] = int16_t(s);
    }
    y[b].d = 1.0f / iscale;
  }
}

}  // namespace

namespace detail {
namespace {

QuantizeActFn quantize_act_fn_scalar(ActFormat f) {
  switch (f) {
    case ActFormat::F32: return to_f32;
    case ActFormat::F16: return to_f16;
    case ActFormat::BF16: return to_bf16;
    case ActFormat::Q8_0: return to_q8_0;
    case ActFormat::Q8_1: return to_q8_1;
    case ActFormat::Q8_K: return to_q8_k;
  }
  return nullptr;
}

}  // namespace

constinit const QuantActKernels kQuantActScalar{quantize_act_fn_scalar};

// isa's own version, else the scalar one (AVX-512 has every format AVX2 has, so this is
// the next lower ISA's).
QuantizeActFn quantize_act_fn(Isa isa, ActFormat f) {
  if (QuantizeActFn fn = kQuantActKernels[isa].row(f)) return fn;
  return kQuantActScalar.row(f);
}

}  // namespace detail

void quantize_act_row(Isa isa, ActFormat f, const float* x, int64_t n, void* dst) {
  assert(n % act_block_size(f) == 0);
  detail::quantize_act_fn(isa, f)(x, n, dst);
}

}  // namespace kvserve

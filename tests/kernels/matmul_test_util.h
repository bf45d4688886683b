// Helpers for the matmul tests: random weights in every block format, an independent
// activation quantizer and a double-precision reference built on dequantize_row.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/cpu_features.h"
#include "core/half.h"
#include "gguf/dequantize.h"
#include "gguf/ggml_type.h"
#include "gguf/quant_blocks.h"
#include "kernels/cpu/quant_act.h"

namespace kvserve::test {

inline bool isa_available(Isa isa) {
  return int(isa) <= int(best_isa());
}

inline std::vector<float> random_floats(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (auto& f : v) f = nd(rng);
  return v;
}

// Random weights: float types from normal values; block types from random bytes (every
// bit pattern of the quants and packed scales) with sane fp16 scale fields.
inline std::vector<uint8_t> random_weights(GgmlType t, int64_t n_out, int64_t n_in, std::mt19937& rng) {
  const size_t row = ggml_row_bytes(t, n_in);
  std::vector<uint8_t> w(row * size_t(n_out));
  if (t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16) {
    const auto f = random_floats(size_t(n_in * n_out), rng);
    for (size_t i = 0; i < f.size(); ++i) {
      if (t == GgmlType::F32) std::memcpy(&w[i * 4], &f[i], 4);
      const uint16_t h = t == GgmlType::F16 ? fp32_to_fp16(f[i]) : fp32_to_bf16(f[i]);
      if (t != GgmlType::F32) std::memcpy(&w[i * 2], &h, 2);
    }
    return w;
  }
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : w) b = uint8_t(byte(rng));
  std::uniform_real_distribution<float> mag(0.002f, 0.05f);
  std::uniform_int_distribution<int> sign(0, 1);
  struct Fields {
    size_t d, m;  // offsets of the fp16 scale and min (SIZE_MAX: none)
  };
  constexpr size_t kNone = SIZE_MAX;
  Fields f{0, kNone};
  switch (t) {
    case GgmlType::Q4_1: f = {offsetof(BlockQ4_1, d), offsetof(BlockQ4_1, m)}; break;
    case GgmlType::Q5_1: f = {offsetof(BlockQ5_1, d), offsetof(BlockQ5_1, m)}; break;
    case GgmlType::Q2_K: f = {offsetof(BlockQ2_K, d), offsetof(BlockQ2_K, dmin)}; break;
    case GgmlType::Q3_K: f = {offsetof(BlockQ3_K, d), kNone}; break;
    case GgmlType::Q4_K: f = {offsetof(BlockQ4_K, d), offsetof(BlockQ4_K, dmin)}; break;
    case GgmlType::Q5_K: f = {offsetof(BlockQ5_K, d), offsetof(BlockQ5_K, dmin)}; break;
    case GgmlType::Q6_K: f = {offsetof(BlockQ6_K, d), kNone}; break;
    default: break;  // Q4_0, Q5_0, Q8_0: d at offset 0
  }
  const size_t bb = ggml_traits(t).block_bytes;
  for (size_t off = 0; off < w.size(); off += bb) {
    // K-quant scales multiply 6-bit sub-scales: keep their products moderate.
    const float k = ggml_traits(t).block_size == QK_K ? 0.05f : 1.0f;
    const uint16_t d = fp32_to_fp16(mag(rng) * k);
    std::memcpy(&w[off + f.d], &d, 2);
    if (f.m != kNone) {
      // Q4_1/Q5_1 mins are signed; K-quant dmins are used as positive by the quantizer.
      float m = mag(rng) * k * (ggml_traits(t).block_size == QK_K ? 1.0f : 8.0f);
      if (ggml_traits(t).block_size != QK_K && sign(rng)) m = -m;
      const uint16_t mh = fp32_to_fp16(m);
      std::memcpy(&w[off + f.m], &mh, 2);
    }
  }
  return w;
}

// Independent re-statement of llama.cpp's activation rounding: returns the activation
// values the kernel effectively multiplies by (as doubles) and the raw converted bytes.
struct RefActs {
  std::vector<double> values;  // [n] dequantized activations
  std::vector<uint8_t> bytes;  // the converted row
};

inline RefActs reference_acts(ActFormat f, const float* x, int64_t n) {
  RefActs r;
  r.values.resize(size_t(n));
  r.bytes.resize(act_row_bytes(f, n));
  if (f == ActFormat::F32) {
    for (int64_t i = 0; i < n; ++i) r.values[i] = x[i];
    std::memcpy(r.bytes.data(), x, size_t(n) * 4);
  } else if (f == ActFormat::F16 || f == ActFormat::BF16) {
    auto* h = reinterpret_cast<uint16_t*>(r.bytes.data());
    for (int64_t i = 0; i < n; ++i) {
      h[i] = f == ActFormat::F16 ? fp32_to_fp16(x[i]) : fp32_to_bf16(x[i]);
      r.values[i] = f == ActFormat::F16 ? fp16_to_fp32(h[i]) : bf16_to_fp32(h[i]);
    }
  } else if (f == ActFormat::Q8_0 || f == ActFormat::Q8_1) {
    const size_t bb = f == ActFormat::Q8_0 ? sizeof(BlockQ8_0) : sizeof(BlockQ8_1);
    const size_t qs_off = f == ActFormat::Q8_0 ? 2 : 4;
    for (int64_t b = 0; b < n / 32; ++b) {
      uint8_t* blk = r.bytes.data() + size_t(b) * bb;
      float amax = 0;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[b * 32 + i]));
      const float d = amax / 127.0f;
      const uint16_t dh = fp32_to_fp16(d);
      std::memcpy(blk, &dh, 2);
      int sum = 0;
      for (int i = 0; i < 32; ++i) {
        const float v = amax == 0 ? 0.0f : x[b * 32 + i] * (127.0f / amax);
        const int q = int(std::nearbyint(v));
        blk[qs_off + i] = uint8_t(int8_t(q));
        sum += q;
        r.values[size_t(b * 32 + i)] = double(fp16_to_fp32(dh)) * q;
      }
      if (f == ActFormat::Q8_1) {
        const uint16_t sh = fp32_to_fp16(d * float(sum));
        std::memcpy(blk + 2, &sh, 2);
      }
    }
  } else {  // Q8_K
    for (int64_t b = 0; b < n / QK_K; ++b) {
      BlockQ8_K blk{};
      const float* xb = x + b * QK_K;
      float vmax = 0;
      for (int i = 0; i < QK_K; ++i)
        if (std::fabs(xb[i]) > std::fabs(vmax)) vmax = xb[i];
      if (vmax != 0) {
        const float is = -127.0f / vmax;
        for (int i = 0; i < QK_K; ++i) blk.qs[i] = int8_t(std::min(127, int(std::nearbyint(is * xb[i]))));
        for (int g = 0; g < 16; ++g) {
          int s = 0;
          for (int i = 0; i < 16; ++i) s += blk.qs[g * 16 + i];
          blk.bsums[g] = int16_t(s);
        }
        blk.d = 1.0f / is;
      }
      for (int i = 0; i < QK_K; ++i) r.values[size_t(b * QK_K + i)] = double(blk.d) * blk.qs[i];
      std::memcpy(r.bytes.data() + size_t(b) * sizeof(blk), &blk, sizeof(blk));
    }
  }
  return r;
}

// Reference y[t, o] in double, and a tolerance per output for the kernel's float
// accumulation: (terms + 8) * 2^-23 * sum |w x|, terms = blocks (or elements for floats).
struct RefOut {
  std::vector<double> y;    // [n_tokens, n_out]
  std::vector<double> tol;  // [n_tokens, n_out]
};

inline RefOut reference_matmul(GgmlType t, const uint8_t* w, int64_t n_out, int64_t n_in, const float* x,
                               int64_t n_tokens) {
  const ActFormat f = act_format(t);
  const size_t row = ggml_row_bytes(t, n_in);
  const int64_t bs = ggml_traits(t).block_size;
  const double terms = double(bs == 1 ? n_in : n_in / bs);
  std::vector<RefActs> acts;
  for (int64_t i = 0; i < n_tokens; ++i) acts.push_back(reference_acts(f, x + i * n_in, n_in));
  RefOut r;
  r.y.resize(size_t(n_tokens * n_out));
  r.tol.resize(r.y.size());
  std::vector<float> wf(static_cast<size_t>(n_in));
  for (int64_t o = 0; o < n_out; ++o) {
    dequantize_row(t, w + size_t(o) * row, wf.data(), n_in);
    for (int64_t i = 0; i < n_tokens; ++i) {
      double s = 0, sa = 0;
      for (int64_t k = 0; k < n_in; ++k) {
        s += double(wf[k]) * acts[i].values[k];
        sa += std::fabs(double(wf[k]) * acts[i].values[k]);
      }
      if (f == ActFormat::Q8_1) {
        // The kernel uses the block's stored s = fp16(d * sum q) for the min term.
        for (int64_t b = 0; b < n_in / 32; ++b) {
          const uint8_t* wb = w + size_t(o) * row + size_t(b) * ggml_traits(t).block_bytes;
          const uint8_t* xb = acts[i].bytes.data() + size_t(b) * sizeof(BlockQ8_1);
          uint16_t mh, dh, sh;
          std::memcpy(&mh, wb + 2, 2);
          std::memcpy(&dh, xb, 2);
          std::memcpy(&sh, xb + 2, 2);
          double sum_q = 0;
          for (int k = 0; k < 32; ++k) sum_q += int8_t(xb[4 + k]);
          const double m = fp16_to_fp32(mh);
          s += m * (double(fp16_to_fp32(sh)) - double(fp16_to_fp32(dh)) * sum_q);
          sa += std::fabs(m * fp16_to_fp32(sh));
        }
      }
      r.y[size_t(i * n_out + o)] = s;
      r.tol[size_t(i * n_out + o)] = (terms + 8) * 0x1p-23 * sa + 1e-30;
    }
  }
  return r;
}

}  // namespace kvserve::test

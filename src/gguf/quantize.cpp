#include "gguf/quantize.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

#include "core/half.h"
#include "gguf/quant_blocks.h"

namespace kvserve {

void pack_scale_min_k4(const uint8_t* scales, const uint8_t* mins, uint8_t* packed) {
  // Sub-blocks 0..3: 6 bits in bytes 0..3 (scale) and 4..7 (min). Sub-blocks 4..7: low
  // nibbles in bytes 8..11, top 2 bits in the top bits of bytes 0..3 / 4..7.
  std::memset(packed, 0, 12);
  for (int j = 0; j < 8; ++j) {
    assert(scales[j] < 64 && mins[j] < 64);
    if (j < 4) {
      packed[j] |= scales[j];
      packed[j + 4] |= mins[j];
    } else {
      packed[j + 4] = uint8_t((scales[j] & 0xF) | ((mins[j] & 0xF) << 4));
      packed[j - 4] |= uint8_t((scales[j] >> 4) << 6);
      packed[j] |= uint8_t((mins[j] >> 4) << 6);
    }
  }
}

namespace {

inline int round_half_even(float v) {
  return int(std::nearbyint(v));
}
inline int clampi(int v, int lo, int hi) {
  return std::min(hi, std::max(lo, v));
}
// The value a float takes once stored as an fp16 scale.
inline float as_stored_fp16(float v) {
  return fp16_to_fp32(fp32_to_fp16(v));
}

// ---- Legacy 32-element blocks ----------------------------------------------------

// Symmetric blocks: the value of largest magnitude maps to the most negative level.
// Returns d; q[i] in [0, 2 * half_levels).
float quantize_symmetric(const float* x, int n, int half_levels, uint8_t* q) {
  float amax = 0, vmax = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      vmax = x[i];
    }
  }
  const float d = vmax / float(-half_levels);
  const float id = d != 0 ? 1.0f / d : 0.0f;
  for (int i = 0; i < n; ++i)
    q[i] = uint8_t(clampi(int(std::floor(x[i] * id + float(half_levels) + 0.5f)), 0, 2 * half_levels - 1));
  return d;
}

// Asymmetric blocks: [min, max] spread over levels 0..levels-1. Returns d, sets *min.
float quantize_affine(const float* x, int n, int levels, uint8_t* q, float* min_out) {
  float mn = x[0], mx = x[0];
  for (int i = 1; i < n; ++i) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
  }
  const float d = (mx - mn) / float(levels - 1);
  const float id = d != 0 ? 1.0f / d : 0.0f;
  for (int i = 0; i < n; ++i) q[i] = uint8_t(clampi(int(std::floor((x[i] - mn) * id + 0.5f)), 0, levels - 1));
  *min_out = mn;
  return d;
}

void quant_q4_0(const float* x, BlockQ4_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK4_0) {
    uint8_t q[QK4_0];
    b[i].d = fp32_to_fp16(quantize_symmetric(x, QK4_0, 8, q));
    for (int j = 0; j < QK4_0 / 2; ++j) b[i].qs[j] = uint8_t(q[j] | (q[j + QK4_0 / 2] << 4));
  }
}

void quant_q4_1(const float* x, BlockQ4_1* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK4_1) {
    uint8_t q[QK4_1];
    float mn;
    b[i].d = fp32_to_fp16(quantize_affine(x, QK4_1, 16, q, &mn));
    b[i].m = fp32_to_fp16(mn);
    for (int j = 0; j < QK4_1 / 2; ++j) b[i].qs[j] = uint8_t(q[j] | (q[j + QK4_1 / 2] << 4));
  }
}

// Splits 5-bit values into low nibbles (qs) and the 5th bits (qh, bit j = element j).
void pack_5bit(const uint8_t* q, uint8_t* qs, uint8_t* qh) {
  uint32_t h = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = uint8_t((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
    h |= uint32_t(q[j] >> 4) << j;
    h |= uint32_t(q[j + 16] >> 4) << (j + 16);
  }
  for (int k = 0; k < 4; ++k) qh[k] = uint8_t(h >> (8 * k));
}

void quant_q5_0(const float* x, BlockQ5_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK5_0) {
    uint8_t q[QK5_0];
    b[i].d = fp32_to_fp16(quantize_symmetric(x, QK5_0, 16, q));
    pack_5bit(q, b[i].qs, b[i].qh);
  }
}

void quant_q5_1(const float* x, BlockQ5_1* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK5_1) {
    uint8_t q[QK5_1];
    float mn;
    b[i].d = fp32_to_fp16(quantize_affine(x, QK5_1, 32, q, &mn));
    b[i].m = fp32_to_fp16(mn);
    pack_5bit(q, b[i].qs, b[i].qh);
  }
}

// d = max|x| / 127 and round-half-away (as llama.cpp does for activations).
float quantize_8bit(const float* x, int n, int8_t* q) {
  float amax = 0;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float d = amax / 127.0f;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  for (int i = 0; i < n; ++i) q[i] = int8_t(clampi(int(std::round(x[i] * id)), -127, 127));
  return d;
}

void quant_q8_0(const float* x, BlockQ8_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK8_0) b[i].d = fp32_to_fp16(quantize_8bit(x, QK8_0, b[i].qs));
}

void quant_q8_1(const float* x, BlockQ8_1* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK8_1) {
    const float d = quantize_8bit(x, QK8_1, b[i].qs);
    int sum = 0;
    for (int j = 0; j < QK8_1; ++j) sum += b[i].qs[j];
    b[i].d = fp32_to_fp16(d);
    b[i].s = fp32_to_fp16(d * float(sum));
  }
}

void quant_q8_k(const float* x, BlockQ8_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    float amax = 0;
    for (int j = 0; j < QK_K; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float id = amax != 0 ? 127.0f / amax : 0.0f;
    b[i].d = amax != 0 ? 1.0f / id : 0.0f;
    for (int j = 0; j < QK_K; ++j) b[i].qs[j] = int8_t(clampi(round_half_even(x[j] * id), -127, 127));
    for (int g = 0; g < QK_K / 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += b[i].qs[16 * g + j];
      b[i].bsums[g] = int16_t(sum);
    }
  }
}

// ---- K-quant sub-block fits ------------------------------------------------------

constexpr int kSearchSteps = 10;  // candidate scales: levels + k/10, k in [-10, 10]

// Fits x ~= s * q - m with q in [0, nmax], s >= 0, m >= 0 (the K-quant min is
// subtracted and stored unsigned). Tries candidate grids over [min(x, 0), max(x)],
// least-squares fits s and m to each rounding, and keeps the fit with the least
// squared error once values are re-rounded with it.
void fit_scale_min(const float* x, int n, int nmax, float* s_out, float* m_out) {
  float lo = 0, hi = x[0];
  for (int i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  if (hi <= lo) {  // every value equals lo <= 0
    *s_out = 0;
    *m_out = -lo;
    return;
  }
  auto error_of = [&](float s, float o) {
    double err = 0;
    for (int i = 0; i < n; ++i) {
      const int q = s > 0 ? clampi(round_half_even((x[i] - o) / s), 0, nmax) : 0;
      const double e = double(s) * q + o - x[i];
      err += e * e;
    }
    return err;
  };
  float best_s = (hi - lo) / float(nmax), best_o = lo;
  double best_err = error_of(best_s, best_o);
  for (int k = -kSearchSteps; k <= kSearchSteps; ++k) {
    const float iscale = (float(nmax) + 0.1f * float(k)) / (hi - lo);
    double sq = 0, sqq = 0, sx = 0, sqx = 0;
    for (int i = 0; i < n; ++i) {
      const int q = clampi(round_half_even((x[i] - lo) * iscale), 0, nmax);
      sq += q;
      sqq += double(q) * q;
      sx += x[i];
      sqx += double(q) * x[i];
    }
    const double det = n * sqq - sq * sq;
    if (det <= 0) continue;
    double s = (n * sqx - sq * sx) / det;
    double o = (sx - s * sq) / n;
    if (o > 0) {  // the offset must be <= 0: refit through the origin
      o = 0;
      s = sqq > 0 ? sqx / sqq : 0;
    }
    if (s <= 0) continue;
    const double err = error_of(float(s), float(o));
    if (err < best_err) {
      best_err = err;
      best_s = float(s);
      best_o = float(o);
    }
  }
  *s_out = best_s;
  *m_out = -best_o;
}

// Fits x ~= s * q with q in [qmin, qmax] (qmin = -qmax - 1); s may be negative so that
// the value of largest magnitude can use the extra negative level.
float fit_scale_symmetric(const float* x, int n, int qmin, int qmax) {
  float amax = 0, vmax = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      vmax = x[i];
    }
  }
  if (amax == 0) return 0;
  auto error_of = [&](float s) {
    double err = 0;
    for (int i = 0; i < n; ++i) {
      const double e = double(s) * clampi(round_half_even(x[i] / s), qmin, qmax) - x[i];
      err += e * e;
    }
    return err;
  };
  float best_s = vmax / float(qmin);
  double best_err = error_of(best_s);
  for (int k = -kSearchSteps; k <= kSearchSteps; ++k) {
    const float iscale = (float(qmin) - 0.1f * float(k)) / vmax;
    double sqq = 0, sqx = 0;
    for (int i = 0; i < n; ++i) {
      const int q = clampi(round_half_even(x[i] * iscale), qmin, qmax);
      sqq += double(q) * q;
      sqx += double(q) * x[i];
    }
    if (sqq <= 0) continue;
    const float s = float(sqx / sqq);
    if (s == 0) continue;
    const double err = error_of(s);
    if (err < best_err) {
      best_err = err;
      best_s = s;
    }
  }
  return best_s;
}

// Quantizes non-negative sub-block scales to integer codes times an fp16 super scale.
// Returns the stored super scale; codes[j] in [0, max_code].
uint16_t quantize_unsigned_scales(const float* s, int n, int max_code, uint8_t* codes) {
  float smax = 0;
  for (int j = 0; j < n; ++j) smax = std::max(smax, s[j]);
  const uint16_t stored = fp32_to_fp16(smax / float(max_code));
  const float d = fp16_to_fp32(stored);
  for (int j = 0; j < n; ++j) codes[j] = uint8_t(d > 0 ? clampi(round_half_even(s[j] / d), 0, max_code) : 0);
  return stored;
}

// Signed sub-block scales: the one of largest magnitude maps to code_min.
float quantize_signed_scales(const float* s, int n, int code_min, int code_max, int* codes) {
  float amax = 0, vmax = 0;
  for (int j = 0; j < n; ++j) {
    if (std::fabs(s[j]) > amax) {
      amax = std::fabs(s[j]);
      vmax = s[j];
    }
  }
  const float d = as_stored_fp16(vmax / float(code_min));
  for (int j = 0; j < n; ++j) codes[j] = d != 0 ? clampi(round_half_even(s[j] / d), code_min, code_max) : 0;
  return d;
}

// Asymmetric K-quant super-block (Q2_K: 16 x 16, nmax 3, 4-bit scales; Q4_K / Q5_K:
// 8 x 32, nmax 15 / 31, 6-bit scales). Outputs the final q per element.
void quantize_k_affine(const float* x, int n_sub, int sub_len, int nmax, int max_code, uint16_t* d,
                       uint16_t* dmin, uint8_t* sc, uint8_t* mc, uint8_t* q) {
  float s[16], m[16];
  for (int j = 0; j < n_sub; ++j) fit_scale_min(x + j * sub_len, sub_len, nmax, &s[j], &m[j]);
  *d = quantize_unsigned_scales(s, n_sub, max_code, sc);
  *dmin = quantize_unsigned_scales(m, n_sub, max_code, mc);
  const float df = fp16_to_fp32(*d), dminf = fp16_to_fp32(*dmin);
  for (int j = 0; j < n_sub; ++j) {
    const float dl = df * float(sc[j]), ml = dminf * float(mc[j]);
    for (int l = 0; l < sub_len; ++l) {
      const int i = j * sub_len + l;
      q[i] = uint8_t(dl > 0 ? clampi(round_half_even((x[i] + ml) / dl), 0, nmax) : 0);
    }
  }
}

void quant_q2_k(const float* x, BlockQ2_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    uint8_t sc[16], mc[16], q[QK_K];
    quantize_k_affine(x, 16, 16, 3, 15, &b[i].d, &b[i].dmin, sc, mc, q);
    for (int j = 0; j < 16; ++j) b[i].scales[j] = uint8_t(sc[j] | (mc[j] << 4));
    std::memset(b[i].qs, 0, sizeof(b[i].qs));
    // Element e: half e / 128, 2-bit plane (e % 128) / 32, byte e % 32 of that half.
    for (int e = 0; e < QK_K; ++e)
      b[i].qs[32 * (e / 128) + e % 32] |= uint8_t(q[e] << (2 * ((e % 128) / 32)));
  }
}

void quant_q3_k(const float* x, BlockQ3_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    float s[16];
    for (int j = 0; j < 16; ++j) s[j] = fit_scale_symmetric(x + 16 * j, 16, -4, 3);
    int codes[16];
    const float d = quantize_signed_scales(s, 16, -32, 31, codes);
    b[i].d = fp32_to_fp16(d);
    std::memset(b[i].scales, 0, sizeof(b[i].scales));
    for (int j = 0; j < 16; ++j) {
      const int u = codes[j] + 32;  // 6 bits: low 4 in bytes 0..7, high 2 in bytes 8..11
      if (j < 8)
        b[i].scales[j] |= uint8_t(u & 0xF);
      else
        b[i].scales[j - 8] |= uint8_t((u & 0xF) << 4);
      b[i].scales[8 + j % 4] |= uint8_t((u >> 4) << (2 * (j / 4)));
    }
    std::memset(b[i].qs, 0, sizeof(b[i].qs));
    std::memset(b[i].hmask, 0, sizeof(b[i].hmask));
    for (int e = 0; e < QK_K; ++e) {
      const float dl = d * float(codes[e / 16]);
      const int q = dl != 0 ? clampi(round_half_even(x[e] / dl), -4, 3) : 0;
      const int u = q + 4;  // low 2 bits in a qs plane, bit 2 in hmask
      const int half = e / 128, plane = (e % 128) / 32, l = e % 32;
      b[i].qs[32 * half + l] |= uint8_t((u & 3) << (2 * plane));
      if (u & 4) b[i].hmask[l] |= uint8_t(1u << (4 * half + plane));
    }
  }
}

void quant_q4_k(const float* x, BlockQ4_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    uint8_t sc[8], mc[8], q[QK_K];
    quantize_k_affine(x, 8, 32, 15, 63, &b[i].d, &b[i].dmin, sc, mc, q);
    pack_scale_min_k4(sc, mc, b[i].scales);
    // Sub-block s: chunk s / 2 of 32 bytes, low nibbles for even s, high for odd.
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) b[i].qs[32 * c + l] = uint8_t(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
  }
}

void quant_q5_k(const float* x, BlockQ5_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    uint8_t sc[8], mc[8], q[QK_K];
    quantize_k_affine(x, 8, 32, 31, 63, &b[i].d, &b[i].dmin, sc, mc, q);
    pack_scale_min_k4(sc, mc, b[i].scales);
    std::memset(b[i].qh, 0, sizeof(b[i].qh));
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l)
        b[i].qs[32 * c + l] = uint8_t((q[64 * c + l] & 0xF) | ((q[64 * c + 32 + l] & 0xF) << 4));
    for (int e = 0; e < QK_K; ++e) b[i].qh[e % 32] |= uint8_t((q[e] >> 4) << (e / 32));
  }
}

void quant_q6_k(const float* x, BlockQ6_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    float s[16];
    for (int j = 0; j < 16; ++j) s[j] = fit_scale_symmetric(x + 16 * j, 16, -32, 31);
    int codes[16];
    const float d = quantize_signed_scales(s, 16, -128, 127, codes);
    b[i].d = fp32_to_fp16(d);
    for (int j = 0; j < 16; ++j) b[i].scales[j] = int8_t(codes[j]);
    std::memset(b[i].ql, 0, sizeof(b[i].ql));
    std::memset(b[i].qh, 0, sizeof(b[i].qh));
    for (int e = 0; e < QK_K; ++e) {
      const float dl = d * float(codes[e / 16]);
      const int u = (dl != 0 ? clampi(round_half_even(x[e] / dl), -32, 31) : 0) + 32;
      // Half e / 128; in it, 2-bit plane k / 32: ql low nibbles hold planes 0-1,
      // high nibbles planes 2-3; qh holds the top 2 bits of every plane.
      const int half = e / 128, k = e % 128, plane = k / 32, l = k % 32;
      if (plane < 2)
        b[i].ql[64 * half + k] |= uint8_t(u & 0xF);
      else
        b[i].ql[64 * half + k - 64] |= uint8_t((u & 0xF) << 4);
      b[i].qh[32 * half + l] |= uint8_t((u >> 4) << (2 * plane));
    }
  }
}

}  // namespace

void quantize_row(GgmlType type, const float* src, void* dst, int64_t n) {
  const GgmlTypeTraits& t = ggml_traits(type);
  assert(n % t.block_size == 0);
  const int64_t nb = n / t.block_size;
  switch (type) {
    case GgmlType::F32: assert(false && "quantize_row: F32 is not a quantized type"); return;
    case GgmlType::F16: {
      auto* h = static_cast<uint8_t*>(dst);
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t v = fp32_to_fp16(src[i]);
        std::memcpy(h + 2 * i, &v, 2);
      }
      return;
    }
    case GgmlType::BF16: {
      auto* h = static_cast<uint8_t*>(dst);
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t v = fp32_to_bf16(src[i]);
        std::memcpy(h + 2 * i, &v, 2);
      }
      return;
    }
    case GgmlType::Q4_0: quant_q4_0(src, static_cast<BlockQ4_0*>(dst), nb); return;
    case GgmlType::Q4_1: quant_q4_1(src, static_cast<BlockQ4_1*>(dst), nb); return;
    case GgmlType::Q5_0: quant_q5_0(src, static_cast<BlockQ5_0*>(dst), nb); return;
    case GgmlType::Q5_1: quant_q5_1(src, static_cast<BlockQ5_1*>(dst), nb); return;
    case GgmlType::Q8_0: quant_q8_0(src, static_cast<BlockQ8_0*>(dst), nb); return;
    case GgmlType::Q8_1: quant_q8_1(src, static_cast<BlockQ8_1*>(dst), nb); return;
    case GgmlType::Q2_K: quant_q2_k(src, static_cast<BlockQ2_K*>(dst), nb); return;
    case GgmlType::Q3_K: quant_q3_k(src, static_cast<BlockQ3_K*>(dst), nb); return;
    case GgmlType::Q4_K: quant_q4_k(src, static_cast<BlockQ4_K*>(dst), nb); return;
    case GgmlType::Q5_K: quant_q5_k(src, static_cast<BlockQ5_K*>(dst), nb); return;
    case GgmlType::Q6_K: quant_q6_k(src, static_cast<BlockQ6_K*>(dst), nb); return;
    case GgmlType::Q8_K: quant_q8_k(src, static_cast<BlockQ8_K*>(dst), nb); return;
  }
  assert(false && "quantize_row: unknown type");
}

}  // namespace kvserve

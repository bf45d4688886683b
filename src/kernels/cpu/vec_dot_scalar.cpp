#include <cstring>

#include "core/half.h"
#include "gguf/quant_blocks.h"
#include "kernels/cpu/vec_dot.h"

namespace kvserve::detail {
namespace {

float h2f(uint16_t h) {
  return fp16_to_fp32(h);
}

// Float types: each element converted to f32, products summed in order.
template <class Elem, float (*ToF32)(Elem)>
float dot_float(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const Elem*>(w);
  const auto* b = static_cast<const Elem*>(x);
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += ToF32(a[i]) * ToF32(b[i]);
  return s;
}

float f32_identity(float v) {
  return v;
}
float dot_f32(int64_t n, const void* w, const void* x) {
  return dot_float<float, f32_identity>(n, w, x);
}
float dot_f16(int64_t n, const void* w, const void* x) {
  return dot_float<uint16_t, fp16_to_fp32>(n, w, x);
}
float dot_bf16(int64_t n, const void* w, const void* x) {
  return dot_float<uint16_t, bf16_to_fp32>(n, w, x);
}

float dot_q4_0(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ4_0*>(w);
  const auto* b = static_cast<const BlockQ8_0*>(x);
  float s = 0.0f;
  for (int64_t k = 0; k < n / QK4_0; ++k) {
    int sumi = 0;
    for (int j = 0; j < 16; ++j) {
      sumi += ((a[k].qs[j] & 0xf) - 8) * b[k].qs[j];
      sumi += ((a[k].qs[j] >> 4) - 8) * b[k].qs[j + 16];
    }
    s += h2f(a[k].d) * h2f(b[k].d) * float(sumi);
  }
  return s;
}

float dot_q4_1(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ4_1*>(w);
  const auto* b = static_cast<const BlockQ8_1*>(x);
  float s = 0.0f;
  for (int64_t k = 0; k < n / QK4_1; ++k) {
    int sumi = 0;
    for (int j = 0; j < 16; ++j) {
      sumi += (a[k].qs[j] & 0xf) * b[k].qs[j];
      sumi += (a[k].qs[j] >> 4) * b[k].qs[j + 16];
    }
    s += h2f(a[k].d) * h2f(b[k].d) * float(sumi) + h2f(a[k].m) * h2f(b[k].s);
  }
  return s;
}

// The 5th bits of a Q5 block: bit j of qh is element j's.
template <class Block>
uint32_t q5_high_bits(const Block& blk) {
  uint32_t qh;
  std::memcpy(&qh, blk.qh, 4);
  return qh;
}

float dot_q5_0(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ5_0*>(w);
  const auto* b = static_cast<const BlockQ8_0*>(x);
  float s = 0.0f;
  for (int64_t k = 0; k < n / QK5_0; ++k) {
    const uint32_t qh = q5_high_bits(a[k]);
    int sumi = 0;
    for (int j = 0; j < 16; ++j) {
      const int lo = (a[k].qs[j] & 0xf) | int(((qh >> j) & 1) << 4);
      const int hi = (a[k].qs[j] >> 4) | int(((qh >> (j + 16)) & 1) << 4);
      sumi += (lo - 16) * b[k].qs[j] + (hi - 16) * b[k].qs[j + 16];
    }
    s += h2f(a[k].d) * h2f(b[k].d) * float(sumi);
  }
  return s;
}

float dot_q5_1(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ5_1*>(w);
  const auto* b = static_cast<const BlockQ8_1*>(x);
  float s = 0.0f;
  for (int64_t k = 0; k < n / QK5_1; ++k) {
    const uint32_t qh = q5_high_bits(a[k]);
    int sumi = 0;
    for (int j = 0; j < 16; ++j) {
      const int lo = (a[k].qs[j] & 0xf) | int(((qh >> j) & 1) << 4);
      const int hi = (a[k].qs[j] >> 4) | int(((qh >> (j + 16)) & 1) << 4);
      sumi += lo * b[k].qs[j] + hi * b[k].qs[j + 16];
    }
    s += h2f(a[k].d) * h2f(b[k].d) * float(sumi) + h2f(a[k].m) * h2f(b[k].s);
  }
  return s;
}

float dot_q8_0(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ8_0*>(w);
  const auto* b = static_cast<const BlockQ8_0*>(x);
  float s = 0.0f;
  for (int64_t k = 0; k < n / QK8_0; ++k) {
    int sumi = 0;
    for (int j = 0; j < 32; ++j) sumi += a[k].qs[j] * b[k].qs[j];
    s += h2f(a[k].d) * h2f(b[k].d) * float(sumi);
  }
  return s;
}

// K-quants: a super-block holds 256 elements in 16-element groups (Q2_K, Q3_K, Q6_K) or
// 32-element sub-blocks (Q4_K, Q5_K). Per super-block: sumi = sum over groups of
// scale * dot(q, q8), and for types with mins summ = sum of min * (sum of q8 in group),
// which Q8_K's bsums give directly.

float dot_q2_k(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ2_K*>(w);
  const auto* b = static_cast<const BlockQ8_K*>(x);
  float s = 0.0f;
  for (int64_t k = 0; k < n / QK_K; ++k) {
    int sumi = 0, summ = 0;
    for (int g = 0; g < 16; ++g) {
      // Element e = 128h + 32j + l lives in qs[32h + l] at bits 2j; group g = e / 16.
      const int h = g / 8, j = (g % 8) / 2, l0 = (g % 2) * 16;
      int dot = 0;
      for (int l = l0; l < l0 + 16; ++l)
        dot += ((a[k].qs[32 * h + l] >> (2 * j)) & 3) * b[k].qs[128 * h + 32 * j + l];
      sumi += (a[k].scales[g] & 0xf) * dot;
      summ += (a[k].scales[g] >> 4) * b[k].bsums[g];
    }
    s += b[k].d * (h2f(a[k].d) * float(sumi) - h2f(a[k].dmin) * float(summ));
  }
  return s;
}

void unpack_q3_k_scales(const uint8_t* p, int* sc) {
  for (int g = 0; g < 16; ++g) {
    const int lo = g < 8 ? (p[g] & 0xf) : (p[g - 8] >> 4);
    const int hi = (p[8 + g % 4] >> (2 * (g / 4))) & 3;
    sc[g] = (lo | (hi << 4)) - 32;
  }
}

float dot_q3_k(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ3_K*>(w);
  const auto* b = static_cast<const BlockQ8_K*>(x);
  float s = 0.0f;
  for (int64_t k = 0; k < n / QK_K; ++k) {
    int sc[16];
    unpack_q3_k_scales(a[k].scales, sc);
    int sumi = 0;
    for (int g = 0; g < 16; ++g) {
      // Like Q2_K, plus a high bit in hmask[l] bit (4h + j); a clear bit subtracts 4.
      const int h = g / 8, j = (g % 8) / 2, l0 = (g % 2) * 16;
      int dot = 0;
      for (int l = l0; l < l0 + 16; ++l) {
        const int q = ((a[k].qs[32 * h + l] >> (2 * j)) & 3) - (((a[k].hmask[l] >> (4 * h + j)) & 1) ? 0 : 4);
        dot += q * b[k].qs[128 * h + 32 * j + l];
      }
      sumi += sc[g] * dot;
    }
    s += b[k].d * h2f(a[k].d) * float(sumi);
  }
  return s;
}

// Scale and min of Q4_K/Q5_K sub-block j (0..7), 6 bits each, packed in 12 bytes.
void scale_min_k4(int j, const uint8_t* q, int* sc, int* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

float dot_q4_k(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ4_K*>(w);
  const auto* b = static_cast<const BlockQ8_K*>(x);
  float s = 0.0f;
  for (int64_t k = 0; k < n / QK_K; ++k) {
    int sumi = 0, summ = 0;
    for (int sb = 0; sb < 8; ++sb) {
      // Sub-block sb: elements 32sb..32sb+31 are the low (even sb) or high (odd sb)
      // nibbles of qs[32 (sb/2) ..].
      int sc, m;
      scale_min_k4(sb, a[k].scales, &sc, &m);
      const uint8_t* q = a[k].qs + 32 * (sb / 2);
      const int shift = 4 * (sb % 2);
      int dot = 0;
      for (int l = 0; l < 32; ++l) dot += ((q[l] >> shift) & 0xf) * b[k].qs[32 * sb + l];
      sumi += sc * dot;
      summ += m * (b[k].bsums[2 * sb] + b[k].bsums[2 * sb + 1]);
    }
    s += b[k].d * (h2f(a[k].d) * float(sumi) - h2f(a[k].dmin) * float(summ));
  }
  return s;
}

float dot_q5_k(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ5_K*>(w);
  const auto* b = static_cast<const BlockQ8_K*>(x);
  float s = 0.0f;
  for (int64_t k = 0; k < n / QK_K; ++k) {
    int sumi = 0, summ = 0;
    for (int sb = 0; sb < 8; ++sb) {
      // As Q4_K, with the 5th bit of element 32sb + l in qh[l] bit sb.
      int sc, m;
      scale_min_k4(sb, a[k].scales, &sc, &m);
      const uint8_t* q = a[k].qs + 32 * (sb / 2);
      const int shift = 4 * (sb % 2);
      int dot = 0;
      for (int l = 0; l < 32; ++l) {
        const int v = ((q[l] >> shift) & 0xf) | (((a[k].qh[l] >> sb) & 1) << 4);
        dot += v * b[k].qs[32 * sb + l];
      }
      sumi += sc * dot;
      summ += m * (b[k].bsums[2 * sb] + b[k].bsums[2 * sb + 1]);
    }
    s += b[k].d * (h2f(a[k].d) * float(sumi) - h2f(a[k].dmin) * float(summ));
  }
  return s;
}

float dot_q6_k(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ6_K*>(w);
  const auto* b = static_cast<const BlockQ8_K*>(x);
  float s = 0.0f;
  for (int64_t k = 0; k < n / QK_K; ++k) {
    int sumi = 0;
    for (int g = 0; g < 16; ++g) {
      // Element e = 128h + 32j + l: low 4 bits are nibble (j / 2) of ql[64h + 32(j % 2)
      // + l], high 2 bits are bits 2j of qh[32h + l]; value minus 32.
      const int h = g / 8, j = (g % 8) / 2, l0 = (g % 2) * 16;
      const uint8_t* ql = a[k].ql + 64 * h + 32 * (j % 2);
      const uint8_t* qh = a[k].qh + 32 * h;
      int dot = 0;
      for (int l = l0; l < l0 + 16; ++l) {
        const int q = (((ql[l] >> (4 * (j / 2))) & 0xf) | (((qh[l] >> (2 * j)) & 3) << 4)) - 32;
        dot += q * b[k].qs[128 * h + 32 * j + l];
      }
      sumi += a[k].scales[g] * dot;
    }
    s += b[k].d * h2f(a[k].d) * float(sumi);
  }
  return s;
}

}  // namespace

VecDotFn vec_dot_fn_scalar(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return dot_f32;
    case GgmlType::F16: return dot_f16;
    case GgmlType::BF16: return dot_bf16;
    case GgmlType::Q4_0: return dot_q4_0;
    case GgmlType::Q4_1: return dot_q4_1;
    case GgmlType::Q5_0: return dot_q5_0;
    case GgmlType::Q5_1: return dot_q5_1;
    case GgmlType::Q8_0: return dot_q8_0;
    case GgmlType::Q2_K: return dot_q2_k;
    case GgmlType::Q3_K: return dot_q3_k;
    case GgmlType::Q4_K: return dot_q4_k;
    case GgmlType::Q5_K: return dot_q5_k;
    case GgmlType::Q6_K: return dot_q6_k;
    default: return nullptr;
  }
}

}  // namespace kvserve::detail

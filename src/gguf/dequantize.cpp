#include "gguf/dequantize.h"

#include <cassert>
#include <cstring>

#include "core/half.h"
#include "gguf/quant_blocks.h"

namespace kvserve {

void unpack_scale_min_k4(int j, const uint8_t* q, uint8_t* scale, uint8_t* min) {
  // Sub-blocks 0..3 keep their 6 bits in bytes 0..7; sub-blocks 4..7 keep their low
  // 4 bits in bytes 8..11 and their top 2 bits in the spare top bits of bytes 0..7.
  if (j < 4) {
    *scale = q[j] & 63;
    *min = q[j + 4] & 63;
  } else {
    *scale = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *min = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

void unpack_scales_q3_k(const uint8_t* packed, int8_t* scales) {
  // Low 4 bits: bytes 0..7 (low nibble for scales 0..7, high nibble for 8..15).
  // High 2 bits: bytes 8..11, scale i at byte 8 + i % 4, bit pair i / 4.
  for (int i = 0; i < 16; ++i) {
    const int lo = i < 8 ? (packed[i] & 0xF) : (packed[i - 8] >> 4);
    const int hi = (packed[8 + i % 4] >> (2 * (i / 4))) & 3;
    scales[i] = int8_t((lo | (hi << 4)) - 32);
  }
}

namespace {

void dequant_q4_0(const BlockQ4_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK4_0) {
    const float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < QK4_0 / 2; ++j) {
      y[j] = d * float((b[i].qs[j] & 0xF) - 8);
      y[j + QK4_0 / 2] = d * float((b[i].qs[j] >> 4) - 8);
    }
  }
}

void dequant_q4_1(const BlockQ4_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK4_1) {
    const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
    for (int j = 0; j < QK4_1 / 2; ++j) {
      y[j] = d * float(b[i].qs[j] & 0xF) + m;
      y[j + QK4_1 / 2] = d * float(b[i].qs[j] >> 4) + m;
    }
  }
}

// The 5th bits: bit j of the little-endian 32-bit qh belongs to element j.
inline uint32_t load_qh(const uint8_t* qh) {
  return uint32_t(qh[0]) | uint32_t(qh[1]) << 8 | uint32_t(qh[2]) << 16 | uint32_t(qh[3]) << 24;
}

void dequant_q5_0(const BlockQ5_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK5_0) {
    const float d = fp16_to_fp32(b[i].d);
    const uint32_t qh = load_qh(b[i].qh);
    for (int j = 0; j < QK5_0 / 2; ++j) {
      const int lo = (b[i].qs[j] & 0xF) | int((qh >> j) & 1) << 4;
      const int hi = (b[i].qs[j] >> 4) | int((qh >> (j + 16)) & 1) << 4;
      y[j] = d * float(lo - 16);
      y[j + QK5_0 / 2] = d * float(hi - 16);
    }
  }
}

void dequant_q5_1(const BlockQ5_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK5_1) {
    const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
    const uint32_t qh = load_qh(b[i].qh);
    for (int j = 0; j < QK5_1 / 2; ++j) {
      const int lo = (b[i].qs[j] & 0xF) | int((qh >> j) & 1) << 4;
      const int hi = (b[i].qs[j] >> 4) | int((qh >> (j + 16)) & 1) << 4;
      y[j] = d * float(lo) + m;
      y[j + QK5_1 / 2] = d * float(hi) + m;
    }
  }
}

void dequant_q8_0(const BlockQ8_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK8_0) {
    const float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < QK8_0; ++j) y[j] = d * float(b[i].qs[j]);
  }
}

void dequant_q8_1(const BlockQ8_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK8_1) {
    const float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < QK8_1; ++j) y[j] = d * float(b[i].qs[j]);
  }
}

// Q2_K: 16 sub-blocks of 16; each scales byte holds a 4-bit scale (low) and min (high).
// Each 32-byte half of qs holds 128 elements as four 2-bit planes: plane p of byte l
// is element 32 * p + l (l < 32) of that half.
void dequant_q2_k(const BlockQ2_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    for (int half = 0; half < 2; ++half) {
      const uint8_t* q = b[i].qs + 32 * half;
      for (int plane = 0; plane < 4; ++plane) {
        for (int part = 0; part < 2; ++part) {  // two sub-blocks of 16 per plane
          const uint8_t sc = b[i].scales[half * 8 + plane * 2 + part];
          const float dl = d * float(sc & 0xF), ml = dmin * float(sc >> 4);
          for (int l = 0; l < 16; ++l) {
            const int v = (q[part * 16 + l] >> (2 * plane)) & 3;
            *y++ = dl * float(v) - ml;
          }
        }
      }
    }
  }
}

// Q3_K: like Q2_K's 2-bit planes, plus a high bit per element in hmask (bit k of
// hmask[l] for plane k over both halves); a cleared high bit subtracts 4.
void dequant_q3_k(const BlockQ3_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(b[i].d);
    int8_t scales[16];
    unpack_scales_q3_k(b[i].scales, scales);
    for (int half = 0; half < 2; ++half) {
      const uint8_t* q = b[i].qs + 32 * half;
      for (int plane = 0; plane < 4; ++plane) {
        const uint8_t mask = uint8_t(1u << (half * 4 + plane));
        for (int part = 0; part < 2; ++part) {
          const float dl = d * float(scales[half * 8 + plane * 2 + part]);
          for (int l = 0; l < 16; ++l) {
            const int idx = part * 16 + l;
            const int v = ((q[idx] >> (2 * plane)) & 3) - ((b[i].hmask[idx] & mask) ? 0 : 4);
            *y++ = dl * float(v);
          }
        }
      }
    }
  }
}

// Q4_K: 8 sub-blocks of 32 with 6-bit scale and min; each 32-byte chunk of qs holds two
// sub-blocks (low nibbles first, then high nibbles).
void dequant_q4_k(const BlockQ4_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    for (int chunk = 0; chunk < 4; ++chunk) {
      const uint8_t* q = b[i].qs + 32 * chunk;
      for (int nib = 0; nib < 2; ++nib) {
        uint8_t sc, m;
        unpack_scale_min_k4(chunk * 2 + nib, b[i].scales, &sc, &m);
        const float dl = d * float(sc), ml = dmin * float(m);
        for (int l = 0; l < 32; ++l) *y++ = dl * float((q[l] >> (4 * nib)) & 0xF) - ml;
      }
    }
  }
}

// Q5_K: Q4_K plus a 5th bit per element: bit s of qh[l] for sub-block s, element l.
void dequant_q5_k(const BlockQ5_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    for (int chunk = 0; chunk < 4; ++chunk) {
      const uint8_t* q = b[i].qs + 32 * chunk;
      for (int nib = 0; nib < 2; ++nib) {
        const int sub = chunk * 2 + nib;
        uint8_t sc, m;
        unpack_scale_min_k4(sub, b[i].scales, &sc, &m);
        const float dl = d * float(sc), ml = dmin * float(m);
        for (int l = 0; l < 32; ++l) {
          const int v = ((q[l] >> (4 * nib)) & 0xF) | (((b[i].qh[l] >> sub) & 1) << 4);
          *y++ = dl * float(v) - ml;
        }
      }
    }
  }
}

// Q6_K: two halves of 128. In a half, ql holds 64 bytes (low nibbles: elements 0..63,
// high nibbles: 64..127) and qh 32 bytes of four 2-bit planes (plane p: 32 * p + l).
// 16 sub-blocks of 16 with signed 8-bit scales; values are 6-bit minus 32.
void dequant_q6_k(const BlockQ6_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(b[i].d);
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = b[i].ql + 64 * half;
      const uint8_t* qh = b[i].qh + 32 * half;
      const int8_t* sc = b[i].scales + 8 * half;
      for (int k = 0; k < 128; ++k) {
        const int plane = k / 32, l = k % 32;
        const int lo = plane < 2 ? (ql[k] & 0xF) : (ql[k - 64] >> 4);
        const int hi = (qh[l] >> (2 * plane)) & 3;
        y[k] = d * float(sc[k / 16]) * float((lo | (hi << 4)) - 32);
      }
      y += 128;
    }
  }
}

void dequant_q8_k(const BlockQ8_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK_K) {
    for (int j = 0; j < QK_K; ++j) y[j] = b[i].d * float(b[i].qs[j]);
  }
}

}  // namespace

void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n) {
  const GgmlTypeTraits& t = ggml_traits(type);
  assert(n % t.block_size == 0);
  const int64_t nb = n / t.block_size;
  switch (type) {
    case GgmlType::F32: std::memcpy(dst, src, size_t(n) * sizeof(float)); return;
    case GgmlType::F16: {
      const auto* h = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, h + 2 * i, 2);
        dst[i] = fp16_to_fp32(v);
      }
      return;
    }
    case GgmlType::BF16: {
      const auto* h = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, h + 2 * i, 2);
        dst[i] = bf16_to_fp32(v);
      }
      return;
    }
    case GgmlType::Q4_0: dequant_q4_0(static_cast<const BlockQ4_0*>(src), dst, nb); return;
    case GgmlType::Q4_1: dequant_q4_1(static_cast<const BlockQ4_1*>(src), dst, nb); return;
    case GgmlType::Q5_0: dequant_q5_0(static_cast<const BlockQ5_0*>(src), dst, nb); return;
    case GgmlType::Q5_1: dequant_q5_1(static_cast<const BlockQ5_1*>(src), dst, nb); return;
    case GgmlType::Q8_0: dequant_q8_0(static_cast<const BlockQ8_0*>(src), dst, nb); return;
    case GgmlType::Q8_1: dequant_q8_1(static_cast<const BlockQ8_1*>(src), dst, nb); return;
    case GgmlType::Q2_K: dequant_q2_k(static_cast<const BlockQ2_K*>(src), dst, nb); return;
    case GgmlType::Q3_K: dequant_q3_k(static_cast<const BlockQ3_K*>(src), dst, nb); return;
    case GgmlType::Q4_K: dequant_q4_k(static_cast<const BlockQ4_K*>(src), dst, nb); return;
    case GgmlType::Q5_K: dequant_q5_k(static_cast<const BlockQ5_K*>(src), dst, nb); return;
    case GgmlType::Q6_K: dequant_q6_k(static_cast<const BlockQ6_K*>(src), dst, nb); return;
    case GgmlType::Q8_K: dequant_q8_k(static_cast<const BlockQ8_K*>(src), dst, nb); return;
  }
  assert(false && "dequantize_row: unknown type");
}

}  // namespace kvserve

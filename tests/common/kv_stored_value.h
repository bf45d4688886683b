// What the attention kernels may see of a stored KV element, decoded independently of
// the kernels (from the layout in src/cache/kv_cache.h and kvserve/kv_dtype.h), so tests
// can build their references from the stored, rounded values.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/half.h"
#include "kvserve/kv_dtype.h"

namespace kvserve {

inline constexpr KvDtype kAllKvDtypes[] = {KvDtype::F32, KvDtype::F16, KvDtype::BF16, KvDtype::Int8,
                                           KvDtype::Fp8};

// E4M3 by its definition: exponent bias 7, 3 mantissa bits, subnormals below 2^-6.
inline float fp8_e4m3_reference(uint8_t c) {
  const int e = (c >> 3) & 15, m = c & 7;
  const float a = e == 0 ? std::ldexp(float(m), -9) : std::ldexp(float(8 + m), e - 10);
  return (c & 0x80) ? -a : a;
}

// Element d of slot `slot` in one KV head's K (is_k: [head_dim][bs]) or V ([bs][head_dim])
// region of a block, as a float (times its slot's scale for int8 / fp8).
inline float stored_kv_value(const char* region, KvDtype t, int bs, int hd, int slot, int d, bool is_k) {
  const int64_t i = is_k ? int64_t(d) * bs + slot : int64_t(slot) * hd + d;
  float scale = 1.0f;
  if (kv_dtype_scaled(t)) std::memcpy(&scale, region + int64_t(bs) * hd + 4 * int64_t(slot), 4);
  switch (t) {
    case KvDtype::F32: {
      float f;
      std::memcpy(&f, region + 4 * i, 4);
      return f;
    }
    case KvDtype::F16:
    case KvDtype::BF16: {
      uint16_t h;
      std::memcpy(&h, region + 2 * i, 2);
      return t == KvDtype::F16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
    }
    case KvDtype::Int8: return float(int8_t(region[i])) * scale;
    case KvDtype::Fp8: return fp8_e4m3_reference(uint8_t(region[i])) * scale;
  }
  return NAN;
}

}  // namespace kvserve

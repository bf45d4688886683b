#include "core/cpu_features.h"

#include <cpuid.h>

#include <cstdlib>
#include <cstring>

namespace kvserve {
namespace {

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  f.fma = (c >> 12) & 1;
  f.f16c = (c >> 29) & 1;
  const bool osxsave = (c >> 27) & 1;
  if (!osxsave) return f;
  unsigned xlo, xhi;
  __asm__("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
  const bool ymm = (xlo & 0x6) == 0x6;
  const bool zmm = (xlo & 0xe6) == 0xe6;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  f.avx2 = ymm && ((b >> 5) & 1);
  f.avx512f = zmm && ((b >> 16) & 1);
  f.avx512dq = zmm && ((b >> 17) & 1);
  f.avx512bw = zmm && ((b >> 30) & 1);
  f.avx512vl = zmm && ((b >> 31) & 1);
  f.avx512vnni = zmm && ((c >> 11) & 1);
  unsigned a1, b1, c1, d1;
  if (__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1)) f.avx512bf16 = zmm && ((a1 >> 5) & 1);
  return f;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

Isa cpu_isa() {
  static const Isa isa = [] {
    const CpuFeatures& f = cpu_features();
    Isa best = Isa::Scalar;
    if (f.avx2 && f.fma && f.f16c) best = Isa::Avx2;
    if (best == Isa::Avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vnni &&
        f.avx512bf16)
      best = Isa::Avx512;
    return best;
  }();
  return isa;
}

Isa best_isa() {
  static const Isa isa = [] {
    Isa best = cpu_isa();
    if (const char* env = std::getenv("KVSERVE_ISA")) {
      Isa cap = best;
      if (std::strcmp(env, "scalar") == 0) cap = Isa::Scalar;
      if (std::strcmp(env, "avx2") == 0) cap = Isa::Avx2;
      if (int(cap) < int(best)) best = cap;
    }
    return best;
  }();
  return isa;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "?";
}

}  // namespace kvserve

// Run-time CPU feature detection for choosing SIMD kernels.
#pragma once

namespace kvserve {

enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2 };

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512vnni = false;
  bool avx512bf16 = false;
};

const CpuFeatures& cpu_features();

// The best ISA this CPU supports, lowered by the environment variable
// KVSERVE_ISA=scalar|avx2|avx512 (for testing the fallbacks on a fast machine).
Isa best_isa();
// The best ISA this CPU supports, whatever KVSERVE_ISA says (tests comparing ISAs).
Isa cpu_isa();
const char* isa_name(Isa isa);

}  // namespace kvserve

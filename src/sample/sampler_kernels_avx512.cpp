// The sampler's row kernels with 64-byte vectors; this file is compiled with AVX512 flags.
#include "sample/sampler_kernels_impl.h"

namespace kvserve {

const SamplerKernels& sampler_kernels_avx512() {
  using VF = float __attribute__((vector_size(64)));
  using VI = int32_t __attribute__((vector_size(64)));
  static const SamplerKernels k = sampler_kernels_impl::Impl<VF, VI>::table();
  return k;
}

}  // namespace kvserve

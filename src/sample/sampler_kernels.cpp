#include "sample/sampler_kernels.h"

#include "sample/sampler_kernels_impl.h"

namespace kvserve {

const SamplerKernels& sampler_kernels_generic() {
  using VF = float __attribute__((vector_size(16)));
  using VI = int32_t __attribute__((vector_size(16)));
  static const SamplerKernels k = sampler_kernels_impl::Impl<VF, VI>::table();
  return k;
}

const SamplerKernels& sampler_kernels_for(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return sampler_kernels_avx512();
    case Isa::Avx2: return sampler_kernels_avx2();
    case Isa::Scalar: break;
  }
  return sampler_kernels_generic();
}

const SamplerKernels& sampler_kernels() {
  static const SamplerKernels& k = sampler_kernels_for(best_isa());
  return k;
}

}  // namespace kvserve

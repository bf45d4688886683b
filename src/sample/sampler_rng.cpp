#include "sample/sampler_rng.h"

#include <atomic>
#include <random>

namespace kvserve {

void SamplerRng::seed_random() {
  // One random_device read per process (it may open a device file); a counter keeps
  // sequences started in the same process distinct.
  static const uint64_t base = [] {
    std::random_device rd;
    return (uint64_t(rd()) << 32) ^ uint64_t(rd());
  }();
  static std::atomic<uint64_t> counter{0};
  seed(base, counter.fetch_add(1, std::memory_order_relaxed));
}

}  // namespace kvserve

// The sampler's random number generator: xoshiro256** (32 bytes of state, fast, good
// statistical quality), seeded through splitmix64. A fixed (seed, stream) always gives the
// same sequence on every platform, unlike std:: distributions whose output is unspecified.
#pragma once

#include <cstdint>

namespace kvserve {

class SamplerRng {
 public:
  SamplerRng() { seed(0, 0); }
  SamplerRng(uint64_t seed_value, uint64_t stream) { seed(seed_value, stream); }

  // `stream` separates the generators of one seeded request's n sequences.
  void seed(uint64_t seed_value, uint64_t stream) {
    uint64_t sm = seed_value ^ (stream * 0xD1B54A32D192ED03ull);
    for (auto& w : s_) w = splitmix64(sm);
  }

  // Seeds from the process's random source (std::random_device, read once) mixed with a
  // counter, so unseeded sequences differ from each other and from run to run.
  void seed_random();

  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t splitmix64(uint64_t& x) {
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t s_[4];
};

}  // namespace kvserve

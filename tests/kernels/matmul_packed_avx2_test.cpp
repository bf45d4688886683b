// The AVX2 kernels on the packed layout (matmul_packed_avx2.cpp), Q4_0/Q4_1/Q5_0/Q5_1/Q4_K:
// within the reference's tolerance, bit-identical to the AVX-512 kernels where the CPU
// has them, and the same for a token whatever the token count (batch invariance).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "kernels/cpu/isa_dispatch.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/matmul_pack.h"
#include "matmul_test_util.h"

namespace kvserve {
namespace {

class PackedAvx2Test : public ::testing::TestWithParam<GgmlType> {};

TEST_P(PackedAvx2Test, MatchesReferenceAndAvx512BitExact) {
  if (!test::isa_available(Isa::Avx2)) GTEST_SKIP() << "no AVX2";
  const GgmlType t = GetParam();
  ASSERT_NE(detail::kMatmulKernels[Isa::Avx2].packed(t), nullptr);
  ThreadPool pool1(1), pool2(2);
  uint32_t seed = 7;
  for (int64_t n_in : {32, 96, 256, 576, 1536})
    for (int64_t n_out : {16, 48}) {
      if (n_in % ggml_traits(t).block_size != 0) continue;
      std::mt19937 rng(seed++);
      const auto w = test::random_weights(t, n_out, n_in, rng);
      const WeightView wv{t, w.data(), n_in, n_out};
      std::unique_ptr<uint8_t, decltype(&std::free)> packed(
          static_cast<uint8_t*>(std::aligned_alloc(64, (w.size() + 63) / 64 * 64)), &std::free);
      matmul_pack(wv, packed.get());
      WeightView pv = wv;
      pv.packed = packed.get();
      constexpr int64_t kMaxTokens = 9;
      auto x = test::random_floats(size_t(n_in * kMaxTokens), rng);
      for (int64_t k = 0; k < n_in; ++k) x[size_t(2 * n_in + k)] = 0.0f;  // an all-zero token
      x[size_t(n_in + n_in / 2)] = 40.0f;                                 // an outlier
      const auto ref = test::reference_matmul(t, w.data(), n_out, n_in, x.data(), kMaxTokens);
      std::vector<float> all(size_t(kMaxTokens * n_out));
      matmul_isa(Isa::Avx2, pv, x.data(), kMaxTokens, all.data(), pool2);
      for (size_t i = 0; i < all.size(); ++i)
        ASSERT_LE(std::fabs(double(all[i]) - ref.y[i]), ref.tol[i])
            << ggml_type_name(t) << " n_in=" << n_in << " token " << i / size_t(n_out) << " row "
            << i % size_t(n_out);
      // Each token alone, and the batch split differently, give the same bits.
      std::vector<float> got(all.size());
      for (int64_t n : {1, 2, 3, 5}) {
        for (int64_t t0 = 0; t0 + n <= kMaxTokens; t0 += n) {
          matmul_isa(Isa::Avx2, pv, x.data() + t0 * n_in, n, got.data(), pool1);
          ASSERT_EQ(std::memcmp(got.data(), all.data() + t0 * n_out, size_t(n * n_out) * sizeof(float)), 0)
              << ggml_type_name(t) << " n_in=" << n_in << " tokens " << t0 << "+" << n;
        }
      }
      if (test::isa_available(Isa::Avx512)) {
        std::vector<float> want(all.size());
        matmul_isa(Isa::Avx512, wv, x.data(), kMaxTokens, want.data(), pool1);
        ASSERT_EQ(std::memcmp(want.data(), all.data(), all.size() * sizeof(float)), 0)
            << ggml_type_name(t) << " n_in=" << n_in << ": AVX2 packed != AVX-512";
      }
    }
}

INSTANTIATE_TEST_SUITE_P(Types, PackedAvx2Test,
                         ::testing::Values(GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                                           GgmlType::Q4_K),
                         [](const auto& info) { return std::string(ggml_type_name(info.param)); });

}  // namespace
}  // namespace kvserve

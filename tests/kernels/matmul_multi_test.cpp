// matmul_multi: several weights over the same activations in one dispatch give, per
// output, exactly the bytes of separate matmul calls (shared activation conversion,
// mixed types, packed and file layouts, any token and thread count).
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/matmul_pack.h"
#include "kernels/cpu/rmsnorm.h"
#include "kernels/matmul_test_util.h"

namespace kvserve {
namespace {

constexpr Isa kIsas[] = {Isa::Scalar, Isa::Avx2, Isa::Avx512};

// Outputs of different sizes (a partial 16-row tile, rows split mid-weight) and types.
struct Case {
  GgmlType types[3];
  int64_t n_out[3];
  bool pack;
};

// matmul_multi_isa over c's three weights against separate matmul_isa calls, for several
// token and thread counts. With `normed`, the multi call norms x itself (RowNorm) and the
// separate calls read rmsnorm_rows(x); 130 tokens make the conversion run on the pool.
void check_case(const Case& c, int64_t n_in, bool normed = false) {
  std::mt19937 rng(77u + uint32_t(c.types[0]) * 3u + uint32_t(c.types[2]) + (normed ? 1000u : 0u));
  std::vector<std::vector<uint8_t>> w(3);
  WeightView wv[3];
  PackedWeights store[3];
  for (int i = 0; i < 3; ++i) {
    w[size_t(i)] = test::random_weights(c.types[i], c.n_out[i], n_in, rng);
    wv[i] = WeightView{c.types[i], w[size_t(i)].data(), n_in, c.n_out[i]};
    if (c.pack && matmul_packable(wv[i])) {
      ASSERT_TRUE(store[i].pack(wv[i], /*release_source=*/false));
    }
  }
  constexpr int64_t kTokens = 130;
  auto x = test::random_floats(size_t(kTokens * n_in), rng);
  const auto nw = test::random_floats(size_t(n_in), rng);
  const RowNorm norm{nw.data(), 1e-5f};
  std::vector<float> x_ref = x;  // what the separate calls read
  if (normed) {
    for (float& v : x) v *= 7.0f;  // rows far from unit RMS, so the norm matters
    rmsnorm_rows(x.data(), nw.data(), x_ref.data(), kTokens, n_in, norm.eps);
  }
  ThreadPool pool1(1), pool2(2), pool3(3);
  for (Isa isa : kIsas) {
    if (!test::isa_available(isa)) continue;
    for (int64_t n : {int64_t(1), int64_t(2), int64_t(5), int64_t(13), kTokens}) {
      std::vector<float> want[3], got[3];
      for (int i = 0; i < 3; ++i) {
        want[i].assign(size_t(n * c.n_out[i]), 0.0f);
        matmul_isa(isa, wv[i], x_ref.data(), n, want[i].data(), pool1);
      }
      for (ThreadPool* pool : {&pool1, &pool2, &pool3}) {
        for (int i = 0; i < 3; ++i) got[i].assign(want[i].size(), -1.0f);
        const MatmulOutput outs[] = {
            {&wv[0], got[0].data()}, {&wv[1], got[1].data()}, {&wv[2], got[2].data()}};
        std::vector<float> scratch(size_t(n * n_in), -2.0f);
        matmul_multi_isa(isa, outs, x.data(), normed ? &norm : nullptr, scratch.data(), n, *pool);
        for (int i = 0; i < 3; ++i)
          ASSERT_EQ(std::memcmp(got[i].data(), want[i].data(), want[i].size() * sizeof(float)), 0)
              << "output " << i << " " << ggml_type_name(c.types[i]) << " " << isa_name(isa)
              << " n_tokens=" << n << " threads=" << pool->size() << " normed=" << normed;
      }
    }
  }
}

TEST(MatmulMulti, SameTypeMatchesSeparateCallsBitExact) {
  for (bool pack : {false, true}) {
    check_case({{GgmlType::Q4_0, GgmlType::Q4_0, GgmlType::Q4_0}, {96, 32, 48}, pack}, 19 * 32);
    check_case({{GgmlType::Q4_1, GgmlType::Q4_1, GgmlType::Q4_1}, {64, 16, 16}, pack}, 6 * 32);
    check_case({{GgmlType::F16, GgmlType::F16, GgmlType::F16}, {48, 16, 32}, pack}, 5 * 32);
  }
}

TEST(MatmulMulti, MixedTypesMatchSeparateCallsBitExact) {
  for (bool pack : {false, true}) {
    check_case({{GgmlType::Q4_K, GgmlType::Q4_K, GgmlType::Q6_K}, {64, 32, 32}, pack}, 2 * 256);
    check_case({{GgmlType::Q8_0, GgmlType::F32, GgmlType::Q5_1}, {48, 40, 16}, pack}, 8 * 32);
  }
}

// The RMSNorm folded into the activation conversion gives exactly rmsnorm_rows followed
// by separate matmuls: every quantized format (fused per row) and a float-activation
// weight among them (normed rows written out first).
TEST(MatmulMulti, NormedActivationsMatchNormThenMatmulBitExact) {
  for (bool pack : {false, true}) {
    check_case({{GgmlType::Q4_0, GgmlType::Q4_0, GgmlType::Q5_0}, {96, 32, 48}, pack}, 19 * 32,
               /*normed=*/true);
    check_case({{GgmlType::Q4_K, GgmlType::Q4_K, GgmlType::Q6_K}, {64, 32, 32}, pack}, 2 * 256,
               /*normed=*/true);
    check_case({{GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::F16}, {32, 16, 16}, pack}, 18 * 32,
               /*normed=*/true);
    check_case({{GgmlType::Q8_0, GgmlType::F32, GgmlType::Q5_1}, {48, 40, 16}, pack}, 18 * 32,
               /*normed=*/true);
  }
}

}  // namespace
}  // namespace kvserve

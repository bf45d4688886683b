// Batch invariance of matmul: for a fixed ISA, y[t, o] is bit-identical whatever the
// number of tokens in the call, wherever token t sits in the batch and whatever the
// thread count. Greedy "batched == alone" and "preempted == not" rest on this.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/matmul_pack.h"
#include "kernels/matmul_test_util.h"

namespace kvserve {
namespace {

constexpr GgmlType kTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1,
                               GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q2_K, GgmlType::Q3_K,
                               GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};
constexpr Isa kIsas[] = {Isa::Scalar, Isa::Avx2, Isa::Avx512};
constexpr int64_t kMaxTokens = 40;

class MatmulInvarianceTest : public ::testing::TestWithParam<GgmlType> {};

TEST_P(MatmulInvarianceTest, EveryTokenMatchesItselfAloneBitExact) {
  const GgmlType t = GetParam();
  const bool k = ggml_traits(t).block_size == QK_K;
  // 40 rows: a partial 16-row group and, with 2 threads, rows split mid-way; an odd
  // number of 32-element blocks (19) exercises the tails of the pairwise kernels.
  const int64_t n_out = 40, n_in = k ? 3 * 256 : 19 * 32;
  std::mt19937 rng(1234u + uint32_t(t));
  const auto w = test::random_weights(t, n_out, n_in, rng);
  auto x = test::random_floats(size_t(kMaxTokens * n_in), rng);
  for (int64_t i = 0; i < n_in; ++i) x[size_t(5 * n_in + i)] = 0.0f;  // an all-zero token
  x[size_t(7 * n_in + 3)] = 40.0f;                                    // an outlier
  const WeightView wv{t, w.data(), n_in, n_out};
  ThreadPool pool1(1), pool2(2);
  for (Isa isa : kIsas) {
    if (!test::isa_available(isa)) continue;
    std::vector<float> alone(size_t(kMaxTokens * n_out));
    for (int64_t tok = 0; tok < kMaxTokens; ++tok)
      matmul_isa(isa, wv, x.data() + tok * n_in, 1, alone.data() + tok * n_out, pool1);
    std::vector<float> y(size_t(kMaxTokens * n_out));
    for (ThreadPool* pool : {&pool1, &pool2}) {
      for (int64_t n = 1; n <= kMaxTokens; ++n) {
        const int64_t s = (n * 13) % (kMaxTokens + 1 - n);  // tokens [s, s + n)
        matmul_isa(isa, wv, x.data() + s * n_in, n, y.data(), *pool);
        for (int64_t i = 0; i < n; ++i) {
          const float* got = y.data() + i * n_out;
          const float* want = alone.data() + (s + i) * n_out;
          if (std::memcmp(got, want, size_t(n_out) * sizeof(float)) == 0) continue;
          int64_t o = 0;
          while (got[o] == want[o]) ++o;
          FAIL() << ggml_type_name(t) << " " << isa_name(isa) << " threads=" << pool->size()
                 << " n_tokens=" << n << " token " << i << " (alone: " << s + i << ") row " << o << ": "
                 << got[o] << " vs alone " << want[o];
        }
      }
    }
  }
}

// Weights packed at load (matmul_pack.h) give bit-identical results to the file layout,
// for every token count (direct and panel kernels on one side, the packed kernel on
// the other) and thread count.
TEST(MatmulPacked, MatchesFileLayoutBitExact) {
  for (GgmlType t : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                     GgmlType::Q4_K, GgmlType::Q6_K}) {
    const int64_t n_out = 48, n_in = ggml_traits(t).block_size == QK_K ? 3 * 256 : 19 * 32;
    std::mt19937 rng(99u + uint32_t(t));
    const auto w = test::random_weights(t, n_out, n_in, rng);
    auto x = test::random_floats(size_t(kMaxTokens * n_in), rng);
    for (int64_t i = 0; i < n_in; ++i) x[size_t(3 * n_in + i)] = 0.0f;  // an all-zero token
    const WeightView wv{t, w.data(), n_in, n_out};
    if (!matmul_packable(wv) || !test::isa_available(Isa::Avx512))
      GTEST_SKIP() << "no AVX-512 packed kernels here";
    ASSERT_EQ(matmul_packed_bytes(wv), w.size());
    PackedWeights store;
    WeightView pv = wv;
    ASSERT_TRUE(store.pack(pv, /*release_source=*/false));
    ASSERT_NE(pv.packed, nullptr);
    ThreadPool pool1(1), pool2(2);
    std::vector<float> want(size_t(kMaxTokens * n_out)), got(want.size());
    for (int64_t n : {int64_t(1), int64_t(2), int64_t(3), int64_t(5), int64_t(8), int64_t(11), int64_t(12),
                      int64_t(17), kMaxTokens}) {
      matmul_isa(Isa::Avx512, wv, x.data(), n, want.data(), pool1);
      for (ThreadPool* pool : {&pool1, &pool2}) {
        std::fill(got.begin(), got.end(), -1.0f);
        matmul_isa(Isa::Avx512, pv, x.data(), n, got.data(), *pool);
        ASSERT_EQ(std::memcmp(got.data(), want.data(), size_t(n * n_out) * sizeof(float)), 0)
            << ggml_type_name(t) << " n_tokens=" << n << " threads=" << pool->size();
      }
    }
    // AVX2 has packed kernels for the 4- and 5-bit block types (bit-identical to the
    // AVX-512 ones) and ignores the packed copy of the others.
    if (test::isa_available(Isa::Avx2)) {
      const bool avx2_packed = detail::matmul_packed_fn_avx2(t) != nullptr;
      matmul_isa(avx2_packed ? Isa::Avx512 : Isa::Avx2, wv, x.data(), 4, want.data(), pool1);
      matmul_isa(Isa::Avx2, pv, x.data(), 4, got.data(), pool1);
      ASSERT_EQ(std::memcmp(got.data(), want.data(), size_t(4 * n_out) * sizeof(float)), 0);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, MatmulInvarianceTest, ::testing::ValuesIn(kTypes),
                         [](const auto& info) { return std::string(ggml_type_name(info.param)); });

}  // namespace
}  // namespace kvserve

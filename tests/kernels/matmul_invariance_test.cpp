// Batch invariance of matmul: for a fixed ISA, y[t, o] is bit-identical whatever the
// number of tokens in the call, wherever token t sits in the batch and whatever the
// thread count. Greedy "batched == alone" and "preempted == not" rest on this.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/isa_dispatch.h"
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
  // number of 32-element blocks (37) exercises the tails of the pairwise kernels, and
  // more than 32 of them the stages of the AVX2 batch kernels (sums carried through y).
  const int64_t n_out = 40, n_in = k ? 5 * 256 : 37 * 32;
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
// the other) and thread count. Each ISA's part runs wherever the CPU has that ISA.
TEST(MatmulPacked, MatchesFileLayoutBitExact) {
  const bool has_avx512 = test::isa_available(Isa::Avx512), has_avx2 = test::isa_available(Isa::Avx2);
  if (!has_avx2) GTEST_SKIP() << "this CPU (or KVSERVE_ISA) has neither AVX2 nor AVX-512: no packed kernels";
  int checked = 0;
  for (GgmlType t : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                     GgmlType::Q4_K, GgmlType::Q6_K}) {
    const int64_t n_out = 48, n_in = ggml_traits(t).block_size == QK_K ? 3 * 256 : 19 * 32;
    std::mt19937 rng(99u + uint32_t(t));
    const auto w = test::random_weights(t, n_out, n_in, rng);
    auto x = test::random_floats(size_t(kMaxTokens * n_in), rng);
    for (int64_t i = 0; i < n_in; ++i) x[size_t(3 * n_in + i)] = 0.0f;  // an all-zero token
    const WeightView wv{t, w.data(), n_in, n_out};
    // AVX-512 packs all these types; AVX2 only the 4- and 5-bit block types.
    const bool avx2_packed = detail::kMatmulKernels[Isa::Avx2].packed(t) != nullptr;
    ASSERT_EQ(matmul_packable(wv), has_avx512 || avx2_packed) << ggml_type_name(t);
    if (!matmul_packable(wv)) continue;
    ASSERT_EQ(matmul_packed_bytes(wv), w.size());
    PackedWeights store;
    WeightView pv = wv;
    ASSERT_TRUE(store.pack(pv, /*release_source=*/false));
    ASSERT_NE(pv.packed, nullptr);
    ++checked;
    ThreadPool pool1(1), pool2(2);
    const int64_t token_counts[] = {1, 2, 3, 5, 8, 11, 12, 17, kMaxTokens};
    std::vector<float> want(size_t(kMaxTokens * n_out)), got(want.size());
    if (has_avx512) {
      for (int64_t n : token_counts) {
        matmul_isa(Isa::Avx512, wv, x.data(), n, want.data(), pool1);
        for (ThreadPool* pool : {&pool1, &pool2}) {
          std::fill(got.begin(), got.end(), -1.0f);
          matmul_isa(Isa::Avx512, pv, x.data(), n, got.data(), *pool);
          ASSERT_EQ(std::memcmp(got.data(), want.data(), size_t(n * n_out) * sizeof(float)), 0)
              << ggml_type_name(t) << " n_tokens=" << n << " threads=" << pool->size();
        }
      }
      // AVX2's packed kernels do the AVX-512 arithmetic; it ignores the packed copy of
      // the types it has no packed kernel for (its own file-layout kernels run).
      matmul_isa(avx2_packed ? Isa::Avx512 : Isa::Avx2, wv, x.data(), 4, want.data(), pool1);
      matmul_isa(Isa::Avx2, pv, x.data(), 4, got.data(), pool1);
      ASSERT_EQ(std::memcmp(got.data(), want.data(), size_t(4 * n_out) * sizeof(float)), 0)
          << ggml_type_name(t) << " AVX2";
      continue;
    }
    // AVX2 without AVX-512: the packed kernels' reference arithmetic (AVX-512's) is not
    // here, so check what is: every token count and thread count gives each token's bits
    // alone, and those are the AVX2 file layout's result up to rounding.
    std::vector<float> alone(want.size()), file(want.size());
    for (int64_t i = 0; i < kMaxTokens; ++i)
      matmul_isa(Isa::Avx2, pv, x.data() + i * n_in, 1, alone.data() + i * n_out, pool1);
    matmul_isa(Isa::Avx2, wv, x.data(), kMaxTokens, file.data(), pool1);
    for (size_t i = 0; i < file.size(); ++i)
      ASSERT_NEAR(alone[i], file[i], 1e-3f * (1.0f + std::fabs(file[i])))
          << ggml_type_name(t) << " token " << i / size_t(n_out) << " row " << i % size_t(n_out);
    for (int64_t n : token_counts)
      for (ThreadPool* pool : {&pool1, &pool2}) {
        std::fill(got.begin(), got.end(), -1.0f);
        matmul_isa(Isa::Avx2, pv, x.data(), n, got.data(), *pool);
        ASSERT_EQ(std::memcmp(got.data(), alone.data(), size_t(n * n_out) * sizeof(float)), 0)
            << ggml_type_name(t) << " AVX2 n_tokens=" << n << " threads=" << pool->size();
      }
  }
  EXPECT_GE(checked, 5);  // at least the 4- and 5-bit block types were packed and checked
}

INSTANTIATE_TEST_SUITE_P(AllTypes, MatmulInvarianceTest, ::testing::ValuesIn(kTypes),
                         [](const auto& info) { return std::string(ggml_type_name(info.param)); });

}  // namespace
}  // namespace kvserve

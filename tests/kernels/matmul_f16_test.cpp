// The AVX-512 F16 kernel's own paths: one-token GEMV (8-row groups with prefetch, one
// lane sum per row) and the multi-token panel kernel (6 x 4 tiles over fp16 weight rows
// for up to 16 or 32 tokens, over widened panels beyond; token blocks, 768-column chunks,
// 16 or 8 lane sums at once). Shapes here reach what the generic tests do not: an n_in
// tail (not a multiple of 16), one, two and three column chunks, row counts leaving 4-,
// 2- and 1-row remainders, token tails of 1 to 3, both weight paths and batches crossing
// the token block edge. Every output must match the reference and, bit for bit,
// the same token computed alone.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/matmul_test_util.h"

namespace kvserve {
namespace {

struct Shape {
  int64_t n_out, n_in;
};

class MatmulF16 : public ::testing::TestWithParam<Shape> {};

TEST_P(MatmulF16, BlockEdgesAndTailsMatchReferenceAndTokenAlone) {
  if (!test::isa_available(Isa::Avx512)) GTEST_SKIP() << "no AVX-512";
  const int64_t n_out = GetParam().n_out, n_in = GetParam().n_in;
  constexpr int64_t kMaxTokens = 140;
  std::mt19937 rng(7);
  const auto w = test::random_weights(GgmlType::F16, n_out, n_in, rng);
  const auto x = test::random_floats(size_t(kMaxTokens * n_in), rng);
  const WeightView wv{GgmlType::F16, w.data(), n_in, n_out};
  const auto ref = test::reference_matmul(GgmlType::F16, w.data(), n_out, n_in, x.data(), kMaxTokens);

  ThreadPool pool1(1), pool2(2);
  std::vector<float> alone(size_t(kMaxTokens * n_out));  // [kMaxTokens, n_out]
  for (int64_t t = 0; t < kMaxTokens; ++t)
    matmul_isa(Isa::Avx512, wv, x.data() + t * n_in, 1, alone.data() + t * n_out, pool1);
  for (size_t i = 0; i < alone.size(); ++i)
    ASSERT_LE(std::fabs(double(alone[i]) - ref.y[i]), ref.tol[i])
        << "token " << i / n_out << " row " << i % n_out;

  std::vector<float> y(size_t(kMaxTokens * n_out));  // [n, n_out]
  for (ThreadPool* pool : {&pool1, &pool2}) {
    for (int64_t n : {2, 5, 6, 7, 13, 16, 17, 32, 33, 127, 128, 129, 140}) {
      const int64_t s = kMaxTokens - n;  // tokens [s, s + n)
      matmul_isa(Isa::Avx512, wv, x.data() + s * n_in, n, y.data(), *pool);
      for (int64_t i = 0; i < n * n_out; ++i)
        ASSERT_EQ(std::memcmp(&y[size_t(i)], &alone[size_t(s * n_out + i)], sizeof(float)), 0)
            << "threads=" << pool->size() << " n_tokens=" << n << " token " << i / n_out << " row "
            << i % n_out << ": " << y[size_t(i)] << " vs alone " << alone[size_t(s * n_out + i)];
    }
  }
}

// Rows are split in chunks of 16 or more: 45 and 46 leave 6-row panels and 4-, 2- and
// 1-row rests, 128 (chunks of 32 = 6 * 4 + 4 + 4) and 64 too. 605, 1000 and 1700
// columns: one, two and three chunks.
INSTANTIATE_TEST_SUITE_P(Shapes, MatmulF16,
                         ::testing::Values(Shape{45, 605}, Shape{46, 1000}, Shape{46, 1700}, Shape{64, 576},
                                           Shape{128, 576}),
                         [](const auto& info) {
                           return std::to_string(info.param.n_out) + "x" + std::to_string(info.param.n_in);
                         });

}  // namespace
}  // namespace kvserve

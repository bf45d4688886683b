// matmul for every weight type and ISA against a double-precision reference from
// dequantize_row and llama.cpp's activation rounding.
#include "kernels/cpu/matmul.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "common/test_paths.h"
#include "gguf/gguf_file.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/matmul_test_util.h"

namespace kvserve {
namespace {

constexpr GgmlType kAllTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0,
                                  GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                                  GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K,
                                  GgmlType::Q6_K};
constexpr Isa kAllIsas[] = {Isa::Scalar, Isa::Avx2, Isa::Avx512};

// Runs matmul_isa on weights w and random activations and checks every output against
// the reference; returns the worst error / tolerance ratio.
double check_weights(Isa isa, GgmlType t, const uint8_t* w, int64_t n_out, int64_t n_in, int64_t n_tokens,
                     ThreadPool& pool, std::mt19937& rng) {
  auto x = test::random_floats(size_t(n_in * n_tokens), rng);
  // An all-zero token exercises the zero-scale path; a large outlier the clamp.
  if (n_tokens > 2)
    for (int64_t k = 0; k < n_in; ++k) x[size_t(2 * n_in + k)] = 0.0f;
  if (n_tokens > 1) x[size_t(n_in + n_in / 2)] = 40.0f;
  const auto ref = test::reference_matmul(t, w, n_out, n_in, x.data(), n_tokens);
  std::vector<float> y(size_t(n_tokens * n_out), -12345.0f);
  matmul_isa(isa, WeightView{t, w, n_in, n_out}, x.data(), n_tokens, y.data(), pool);
  double worst = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const double err = std::fabs(double(y[i]) - ref.y[i]);
    worst = std::max(worst, err / ref.tol[i]);
    if (err > ref.tol[i]) {
      ADD_FAILURE() << ggml_type_name(t) << " " << isa_name(isa) << " n_out=" << n_out << " n_in=" << n_in
                    << " n_tokens=" << n_tokens << " token " << i / n_out << " row " << i % n_out << ": got "
                    << y[i] << " want " << ref.y[i] << " tol " << ref.tol[i];
      return worst;
    }
  }
  return worst;
}

double check(Isa isa, GgmlType t, int64_t n_out, int64_t n_in, int64_t n_tokens, ThreadPool& pool,
             uint32_t seed) {
  std::mt19937 rng(seed);
  const auto w = test::random_weights(t, n_out, n_in, rng);
  return check_weights(isa, t, w.data(), n_out, n_in, n_tokens, pool, rng);
}

class MatmulTypeTest : public ::testing::TestWithParam<GgmlType> {};

TEST_P(MatmulTypeTest, MatchesReferenceOnEveryIsaAndShape) {
  const GgmlType t = GetParam();
  ASSERT_TRUE(matmul_supports(t));
  const int64_t bs = ggml_traits(t).block_size;
  // For 32-blocks, 37 blocks make the panel kernel split K into several chunks.
  std::vector<int64_t> n_ins = {bs, 3 * bs, bs == 32 ? 37 * bs : 2 * bs};
  if (bs == 1) n_ins = {8, 37, 64, 256, 300};
  ThreadPool pool(2);
  uint32_t seed = 1;
  for (Isa isa : kAllIsas) {
    if (!test::isa_available(isa)) continue;
    double worst = 0;
    for (int64_t n_in : n_ins)
      for (int64_t n_out : {1, 7, 70})
        for (int64_t n_tokens : {1, 2, 3, 5, 8, 17}) {
          worst = std::max(worst, check(isa, t, n_out, n_in, n_tokens, pool, seed++));
          if (HasFailure()) return;
        }
    RecordProperty(std::string("worst_err_over_tol_") + isa_name(isa), std::to_string(worst));
  }
}

TEST_P(MatmulTypeTest, ActivationConversionIsIdenticalOnEveryIsa) {
  const ActFormat f = act_format(GetParam());
  const int64_t bs = act_block_size(f);
  for (uint32_t seed = 0; seed < 20; ++seed) {
    const int64_t n = bs == 1 ? 1 + seed * 13 : bs * (1 + seed % 3);
    std::mt19937 rng(seed);
    // Magnitudes from 1e-6 to 1e3, zeros, and a repeated extreme value of either sign.
    auto x = test::random_floats(size_t(n), rng, std::pow(10.0f, float(seed % 10) - 6.0f));
    x[0] = 0.0f;
    if (n > 9) x[9] = -x[n - 1];
    const auto ref = test::reference_acts(f, x.data(), n);
    for (Isa isa : kAllIsas) {
      if (!test::isa_available(isa)) continue;
      std::vector<uint8_t> got(act_row_bytes(f, n), 0xcd);
      quantize_act_row(isa, f, x.data(), n, got.data());
      EXPECT_EQ(got, ref.bytes) << act_format_name(f) << " " << isa_name(isa) << " seed " << seed;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, MatmulTypeTest, ::testing::ValuesIn(kAllTypes),
                         [](const auto& info) { return std::string(ggml_type_name(info.param)); });

TEST(Matmul, LargeShapeAndSingleThreadPool) {
  ThreadPool pool(1);
  for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_1, GgmlType::Q4_K, GgmlType::F16})
    for (Isa isa : kAllIsas)
      if (test::isa_available(isa))
        for (int64_t n_tokens : {9, 21}) check(isa, t, 300, 1536, n_tokens, pool, 99);
}

// Weights quantized by llama.cpp (realistic scale and min distributions), every tensor
// type present in each synth-3m file, on the direct and the panel paths.
TEST(Matmul, RealWeightsFromSharedModels) {
  ThreadPool pool(2);
  int checked = 0;
  for (const char* name : {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_k_m", "q5_k_m", "q6_k"}) {
    const std::string path = test::shared_path(std::string("models/synth-3m-") + name + ".gguf");
    auto file = GgufFile::open(path);
    ASSERT_TRUE(file) << path << ": " << file.error().message;
    std::vector<GgmlType> seen;
    for (const GgufTensor& t : (*file)->tensors()) {
      if (t.shape.size() != 2 || std::find(seen.begin(), seen.end(), t.type) != seen.end()) continue;
      if (!matmul_supports(t.type)) continue;
      seen.push_back(t.type);
      // At most 100 rows keep the double-precision reference quick.
      const int64_t n_out = std::min<int64_t>(t.ne(1), 100);
      std::mt19937 rng(3);
      for (Isa isa : kAllIsas) {
        if (!test::isa_available(isa)) continue;
        for (int64_t n_tokens : {1, 4, 13}) {
          check_weights(isa, t.type, t.data, n_out, t.ne(0), n_tokens, pool, rng);
          if (HasFailure()) {
            ADD_FAILURE() << "tensor " << t.name << " of " << path;
            return;
          }
          ++checked;
        }
      }
    }
  }
  EXPECT_GE(checked, 9 * 3);
}

TEST(Matmul, UnsupportedTypes) {
  EXPECT_FALSE(matmul_supports(GgmlType::Q8_1));
  EXPECT_FALSE(matmul_supports(GgmlType::Q8_K));
}

}  // namespace
}  // namespace kvserve

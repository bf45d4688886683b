#include "sample/logprobs.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "sample/sampler_math.h"

namespace kvserve {
namespace {

std::vector<float> random_row(int32_t n, uint64_t seed, float scale, float offset = 0.0f) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(offset, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(g);
  return v;
}

double reference_lse(const std::vector<float>& x) {
  double m = -INFINITY;
  for (float v : x) m = std::max(m, double(v));
  double s = 0.0;
  for (float v : x) s += std::exp(double(v) - m);
  return m + std::log(s);
}

TEST(Logprobs, ExpApproximationIsAccurate) {
  double worst = 0.0;
  for (float x = -87.0f; x <= 0.0f; x += 0.001f) {
    const double ref = std::exp(double(x));
    worst = std::max(worst, std::abs(sampler_math::exp_nonpos(x) - ref) / ref);
  }
  EXPECT_LT(worst, 5e-7);
  EXPECT_EQ(sampler_math::exp_nonpos(0.0f), 1.0f);
  EXPECT_EQ(sampler_math::exp_nonpos(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(sampler_math::exp_nonpos(-100.0f), 0.0f);
}

TEST(Logprobs, LogSoftmaxSumsToOneInProbabilitySpace) {
  for (int32_t n : {1, 7, 1000, 49152, 128256}) {
    auto x = random_row(n, uint64_t(n), 4.0f);
    std::vector<float> out(static_cast<size_t>(n));
    log_softmax(x.data(), n, out.data());
    double s = 0.0;
    for (float v : out) s += std::exp(double(v));
    EXPECT_NEAR(s, 1.0, 1e-5) << "n=" << n;
    EXPECT_NEAR(log_sum_exp(x.data(), n), reference_lse(x), 1e-5 * std::abs(reference_lse(x)) + 1e-5);
  }
}

TEST(Logprobs, StableForLargeAndNegativeInfiniteLogits) {
  std::vector<float> x = {1.0e4f, 1.0e4f - 1.0f, -std::numeric_limits<float>::infinity(), -1.0e4f};
  std::vector<float> out(x.size());
  log_softmax(x.data(), 4, out.data());
  const double l0 = -std::log1p(std::exp(-1.0));
  EXPECT_NEAR(out[0], l0, 1e-3);  // float precision at 1e4 is ~1e-3
  EXPECT_NEAR(out[1], l0 - 1.0, 1e-3);
  EXPECT_TRUE(std::isinf(out[2]) && out[2] < 0);
  EXPECT_TRUE(std::isfinite(out[3]));
}

TEST(Logprobs, TopKMatchesFullSort) {
  const int32_t n = 50000;
  auto x = random_row(n, 5, 2.0f);
  x[123] = x[456] = 20.0f;  // a tie: lower id first
  const float lse = log_sum_exp(x.data(), n);
  std::vector<TokenLogprob> top;
  top_k_logprobs(x.data(), n, 20, lse, top);
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return x[a] > x[b]; });
  ASSERT_EQ(top.size(), 20u);
  EXPECT_EQ(top[0].token, 123);
  EXPECT_EQ(top[1].token, 456);
  for (size_t i = 0; i < 20; ++i) {
    EXPECT_EQ(top[i].token, order[i]);
    EXPECT_FLOAT_EQ(top[i].logprob, x[size_t(order[i])] - lse);
  }
  top_k_logprobs(x.data(), n, 0, lse, top);
  EXPECT_TRUE(top.empty());
  top_k_logprobs(x.data(), 3, 10, lse, top);  // k clamped to n
  EXPECT_EQ(top.size(), 3u);
}

TEST(Logprobs, ComputeLogprobsRank) {
  const std::vector<float> x = {0.5f, 2.0f, 1.0f, 2.0f, -1.0f};
  LogprobsEntry e;
  compute_logprobs(x.data(), 5, 2, 2, e);
  EXPECT_EQ(e.token, 2);
  EXPECT_EQ(e.rank, 3);  // two tokens are strictly more likely
  EXPECT_NEAR(e.logprob, 1.0 - reference_lse(x), 1e-6);
  ASSERT_EQ(e.top.size(), 2u);
  EXPECT_EQ(e.top[0].token, 1);
  EXPECT_EQ(e.top[1].token, 3);
  compute_logprobs(x.data(), 5, 1, 0, e);
  EXPECT_EQ(e.rank, 1);
  EXPECT_TRUE(e.top.empty());
}

}  // namespace
}  // namespace kvserve

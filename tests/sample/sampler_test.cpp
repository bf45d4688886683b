#include "sample/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>

#include "sampler_reference.h"

namespace kvserve {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<float> random_logits(int32_t n, uint64_t seed, float scale = 3.0f) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(g);
  return v;
}

SamplingParams seeded(uint64_t seed) {
  SamplingParams p;
  p.seed = seed;
  return p;
}

SequenceSamplerState make_state(const SamplingParams& p, std::vector<int32_t> prompt = {},
                                uint64_t stream = 0) {
  SequenceSamplerState s;
  s.init(p, prompt, stream);
  return s;
}

TEST(Sampler, GreedyIsArgmax) {
  const int32_t n = 50000;
  Sampler sampler(n);
  SamplingParams p;
  p.temperature = 0.0f;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    auto logits = random_logits(n, seed);
    auto st = make_state(p);
    const int32_t expect = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    EXPECT_EQ(sampler.sample(logits.data(), p, st), expect);
  }
}

TEST(Sampler, GreedyTiesGoToLowestId) {
  const int32_t n = 1000;
  Sampler sampler(n);
  SamplingParams p;
  p.temperature = 0.0f;
  std::vector<float> logits(n, 0.0f);
  logits[700] = 5.0f;
  logits[300] = 5.0f;
  logits[999] = 5.0f;
  auto st = make_state(p);
  EXPECT_EQ(sampler.sample(logits.data(), p, st), 300);
}

TEST(Sampler, SeededSamplingIsReproducibleAndSeedsDiffer) {
  const int32_t n = 32000;
  Sampler sampler(n);
  const auto logits = random_logits(n, 7, 1.0f);  // flat-ish: many plausible tokens
  auto run = [&](const SamplingParams& p, uint64_t stream) {
    auto st = make_state(p, {}, stream);
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i) out.push_back(sampler.sample(logits.data(), p, st));
    return out;
  };
  for (float top_p : {1.0f, 0.9f}) {
    SamplingParams a = seeded(1234), b = seeded(1234), c = seeded(99);
    a.top_p = b.top_p = c.top_p = top_p;
    EXPECT_EQ(run(a, 0), run(b, 0));
    EXPECT_NE(run(a, 0), run(c, 0));
    EXPECT_NE(run(a, 0), run(a, 1));  // the n sequences of one seeded request differ
  }
  SamplingParams unseeded;
  EXPECT_NE(run(unseeded, 0), run(unseeded, 0));
}

// Draws `n_samples` tokens and checks the frequencies against the reference distribution.
void expect_matches_reference(const std::vector<float>& logits, const SamplingParams& p, int64_t n_samples) {
  Sampler sampler(int32_t(logits.size()));
  auto st = make_state(p);
  std::vector<int64_t> counts(logits.size(), 0);
  for (int64_t i = 0; i < n_samples; ++i) ++counts[size_t(sampler.sample(logits.data(), p, st))];
  const auto prob = test::reference_distribution(logits, p);
  for (size_t i = 0; i < prob.size(); ++i) {
    if (prob[i] == 0.0) {
      ASSERT_EQ(counts[i], 0) << "token " << i << " is outside the allowed set";
    }
  }
  const auto [stat, df] = test::chi_square(counts, prob, n_samples);
  EXPECT_LT(stat, test::chi_square_bound(df)) << "df=" << df << " T=" << p.temperature << " top_k=" << p.top_k
                                              << " top_p=" << p.top_p << " min_p=" << p.min_p;
}

TEST(Sampler, TemperatureOneMatchesSoftmax) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 2.5f, 0.0f, -3.0f};
  expect_matches_reference(logits, seeded(42), 200000);
}

TEST(Sampler, TemperatureScalesDistribution) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 2.5f, 0.0f, -3.0f};
  for (float t : {0.3f, 0.7f, 1.5f}) {
    SamplingParams p = seeded(5);
    p.temperature = t;
    expect_matches_reference(logits, p, 100000);
  }
}

TEST(Sampler, TruncationMatchesReference) {
  // Every combination of the truncating filters, on a small and a mid-size vocabulary.
  uint64_t seed = 100;
  for (int32_t n : {40, 3000}) {
    for (int top_k : {-1, 1, 5, 30}) {
      for (float top_p : {1.0f, 0.8f, 0.95f}) {
        for (float min_p : {0.0f, 0.05f}) {
          SamplingParams p = seeded(++seed);
          p.temperature = 0.8f;
          p.top_k = top_k;
          p.top_p = top_p;
          p.min_p = min_p;
          expect_matches_reference(random_logits(n, seed, 2.0f), p, 20000);
        }
      }
    }
  }
}

TEST(Sampler, TopPOutsideNearWindowStillExact) {
  // One dominant token and a flat tail beyond the sampler's near window: top-p close to 1
  // must reach into the tail, so the fast path cannot be used.
  std::vector<float> logits(2000, 0.0f);
  logits[17] = 20.0f;
  SamplingParams p = seeded(3);
  p.top_p = 0.9999999f;
  const auto prob = test::reference_distribution(logits, p);
  int kept = 0;
  for (double x : prob) kept += x > 0.0;
  ASSERT_GT(kept, 1);  // the tail is in the nucleus
  expect_matches_reference(logits, p, 20000);
}

TEST(Sampler, TopKOneAndTinyTopPAreGreedy) {
  const int32_t n = 49152;
  Sampler sampler(n);
  for (uint64_t seed = 0; seed < 20; ++seed) {
    auto logits = random_logits(n, seed, 1.0f);
    logits[size_t(seed * 31)] = logits[size_t(seed * 97 + 5)] = 10.0f;  // a tie at the top
    const int32_t expect = std::min(int32_t(seed * 31), int32_t(seed * 97 + 5));
    SamplingParams k1 = seeded(seed), p0 = seeded(seed);
    k1.top_k = 1;
    p0.top_p = 1e-6f;
    auto s1 = make_state(k1), s2 = make_state(p0);
    EXPECT_EQ(sampler.sample(logits.data(), k1, s1), expect);
    EXPECT_EQ(sampler.sample(logits.data(), p0, s2), expect);
  }
}

TEST(Sampler, MinPFilters) {
  // probs proportional to 1, 0.6, 0.3, 0.1: min_p = 0.5 keeps the first two only.
  const std::vector<float> logits = {0.0f, std::log(0.6f), std::log(0.3f), std::log(0.1f)};
  SamplingParams p = seeded(11);
  p.min_p = 0.5f;
  Sampler sampler(4);
  auto st = make_state(p);
  int64_t counts[4] = {};
  const int64_t n = 40000;
  for (int64_t i = 0; i < n; ++i) ++counts[sampler.sample(logits.data(), p, st)];
  EXPECT_EQ(counts[2], 0);
  EXPECT_EQ(counts[3], 0);
  EXPECT_NEAR(double(counts[0]) / n, 1.0 / 1.6, 0.01);
  expect_matches_reference(logits, p, n);
}

TEST(Sampler, RepetitionPenaltyExactValues) {
  const std::vector<float> logits = {4.0f, -1.0f, 3.0f, 2.0f, -2.0f};
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  Sampler sampler(5);
  auto st = make_state(p, {0, 1});
  st.accept(2);
  const float* adj = sampler.adjusted_logits(logits.data(), p, st);
  EXPECT_FLOAT_EQ(adj[0], 2.0f);   // positive, prompt: divided
  EXPECT_FLOAT_EQ(adj[1], -2.0f);  // negative, prompt: multiplied
  EXPECT_FLOAT_EQ(adj[2], 1.5f);   // output token
  EXPECT_FLOAT_EQ(adj[3], 2.0f);   // unseen
  EXPECT_FLOAT_EQ(adj[4], -2.0f);
}

TEST(Sampler, PresenceAndFrequencyPenaltiesExactValues) {
  const std::vector<float> logits = {4.0f, -1.0f, 3.0f, 2.0f, -2.0f};
  SamplingParams p;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  Sampler sampler(5);
  auto st = make_state(p, {0, 4});  // prompt tokens are not penalised by these
  for (int32_t t : {2, 3, 3, 3}) st.accept(t);
  const float* adj = sampler.adjusted_logits(logits.data(), p, st);
  EXPECT_FLOAT_EQ(adj[0], 4.0f);
  EXPECT_FLOAT_EQ(adj[1], -1.0f);
  EXPECT_FLOAT_EQ(adj[2], 3.0f - 0.25f - 0.5f);
  EXPECT_FLOAT_EQ(adj[3], 2.0f - 3 * 0.25f - 0.5f);
  EXPECT_FLOAT_EQ(adj[4], -2.0f);

  // Rolling back two of the 3s lowers the count.
  const int32_t dropped[] = {3, 3};
  st.rollback(dropped);
  adj = sampler.adjusted_logits(logits.data(), p, st);
  EXPECT_FLOAT_EQ(adj[3], 2.0f - 0.25f - 0.5f);
  EXPECT_EQ(st.n_generated(), 2);
}

TEST(Sampler, PenaltiesCombineInOrder) {
  // bias, then repetition, then frequency / presence.
  const std::vector<float> logits = {1.0f, 1.0f};
  SamplingParams p;
  p.logit_bias = {{0, 3.0f}};
  p.repetition_penalty = 2.0f;
  p.frequency_penalty = 1.0f;
  p.presence_penalty = 0.5f;
  Sampler sampler(2);
  auto st = make_state(p);
  st.accept(0);
  st.accept(0);
  const float* adj = sampler.adjusted_logits(logits.data(), p, st);
  EXPECT_FLOAT_EQ(adj[0], (1.0f + 3.0f) / 2.0f - 2.0f - 0.5f);
  EXPECT_FLOAT_EQ(adj[1], 1.0f);
}

TEST(Sampler, PenaltyChangesGreedyChoice) {
  const std::vector<float> logits = {2.0f, 1.9f, 0.0f};
  SamplingParams p;
  p.temperature = 0.0f;
  p.presence_penalty = 0.2f;
  Sampler sampler(3);
  auto st = make_state(p);
  EXPECT_EQ(sampler.sample(logits.data(), p, st), 0);
  st.accept(0);
  EXPECT_EQ(sampler.sample(logits.data(), p, st), 1);
}

TEST(Sampler, LogitBiasForcesAndExcludes) {
  const int32_t n = 5000;
  Sampler sampler(n);
  const auto logits = random_logits(n, 77);
  const int32_t top = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  {
    SamplingParams p;
    p.temperature = 0.0f;
    p.logit_bias = {{top, -kInf}};
    auto st = make_state(p);
    EXPECT_NE(sampler.sample(logits.data(), p, st), top);
  }
  {
    SamplingParams p = seeded(8);
    p.logit_bias = {{1234, 100.0f}};
    auto st = make_state(p);
    for (int i = 0; i < 200; ++i) EXPECT_EQ(sampler.sample(logits.data(), p, st), 1234);
  }
  {
    SamplingParams p = seeded(9);
    p.top_p = 0.5f;
    p.logit_bias = {{top, -kInf}};
    auto st = make_state(p);
    for (int i = 0; i < 500; ++i) EXPECT_NE(sampler.sample(logits.data(), p, st), top);
  }
  {
    SamplingParams p = seeded(10);
    for (int32_t t = 0; t < n; ++t)
      if (t != 42) p.logit_bias.push_back({t, -kInf});
    auto st = make_state(p);
    for (int i = 0; i < 50; ++i) EXPECT_EQ(sampler.sample(logits.data(), p, st), 42);
  }
}

TEST(Sampler, MinTokensSuppressesEosAndStopTokens) {
  const std::vector<float> logits = {0.0f, 10.0f, 9.0f, 1.0f};  // EOS = 1, stop token = 2
  SamplingParams p;
  p.temperature = 0.0f;
  p.min_tokens = 2;
  p.stop_token_ids = {2};
  Sampler sampler(4, {1});
  auto st = make_state(p);
  EXPECT_EQ(sampler.sample(logits.data(), p, st), 3);
  st.accept(3);
  EXPECT_EQ(sampler.sample(logits.data(), p, st), 3);
  st.accept(3);
  EXPECT_EQ(sampler.sample(logits.data(), p, st), 1);  // min_tokens reached
}

TEST(Sampler, LogprobsAreOfRawLogits) {
  const int32_t n = 1000;
  Sampler sampler(n);
  auto logits = random_logits(n, 21);
  SamplingParams p = seeded(2);
  p.temperature = 0.5f;
  p.top_k = 10;
  p.presence_penalty = 1.0f;
  p.logit_bias = {{5, 2.0f}};
  p.logprobs = 5;
  auto st = make_state(p);
  st.accept(3);
  LogprobsEntry lp;
  const int32_t tok = sampler.sample(logits.data(), p, st, &lp);
  std::vector<float> ref(n);
  log_softmax(logits.data(), n, ref.data());
  EXPECT_EQ(lp.token, tok);
  EXPECT_NEAR(lp.logprob, ref[size_t(tok)], 1e-5);
  ASSERT_EQ(lp.top.size(), 5u);
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(lp.top[i].token, order[i]);
    EXPECT_NEAR(lp.top[i].logprob, ref[size_t(order[i])], 1e-5);
  }
  EXPECT_EQ(order[size_t(lp.rank - 1)], tok);
}

TEST(Sampler, DistributionMatchesReference) {
  uint64_t seed = 500;
  for (int32_t n : {50, 5000}) {
    Sampler sampler(n);
    for (int top_k : {-1, 3, 100}) {
      for (float top_p : {1.0f, 0.7f}) {
        for (float min_p : {0.0f, 0.1f}) {
          SamplingParams p = seeded(++seed);
          p.temperature = 0.9f;
          p.top_k = top_k;
          p.top_p = top_p;
          p.min_p = min_p;
          const auto logits = random_logits(n, seed, 2.0f);
          const auto ref = test::reference_distribution(logits, p);
          auto st = make_state(p);
          std::vector<float> probs(static_cast<size_t>(n));
          sampler.distribution(logits.data(), p, st, probs.data());
          double sum = 0.0, worst = 0.0;
          for (size_t i = 0; i < probs.size(); ++i) {
            sum += probs[i];
            worst = std::max(worst, std::abs(probs[i] - ref[i]));
            if (ref[i] == 0.0) {
              ASSERT_EQ(probs[i], 0.0f) << i;
            }
          }
          EXPECT_NEAR(sum, 1.0, 1e-5);
          EXPECT_LT(worst, 1e-5) << "n=" << n << " top_k=" << top_k << " top_p=" << top_p
                                 << " min_p=" << min_p;
        }
      }
    }
  }
}

TEST(Sampler, DistributionIsOneHotWhenGreedy) {
  const std::vector<float> logits = {0.1f, 3.0f, 3.0f, -1.0f};
  SamplingParams p;
  p.temperature = 0.0f;
  Sampler sampler(4);
  auto st = make_state(p);
  std::vector<float> probs(4);
  sampler.distribution(logits.data(), p, st, probs.data());
  EXPECT_EQ(probs, (std::vector<float>{0.0f, 1.0f, 0.0f, 0.0f}));
}

TEST(Sampler, SampleFromWeights) {
  const std::vector<float> weights = {0.0f, 2.0f, 1.0f, 0.0f, 5.0f, 0.5f};
  Sampler sampler(6);
  SamplerRng rng(17, 0);
  std::vector<int64_t> counts(6, 0);
  const int64_t n = 60000;
  for (int64_t i = 0; i < n; ++i) ++counts[size_t(sampler.sample_from(weights.data(), rng))];
  EXPECT_EQ(counts[0], 0);
  EXPECT_EQ(counts[3], 0);
  std::vector<double> prob;
  for (float w : weights) prob.push_back(w / 8.5);
  const auto [stat, df] = test::chi_square(counts, prob, n);
  EXPECT_LT(stat, test::chi_square_bound(df));
}

}  // namespace
}  // namespace kvserve

// RMSNorm, RoPE (both pairings, linear and llama3 scaling), softmax and SwiGLU against
// plain double-precision references.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <random>
#include <vector>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/rmsnorm.h"
#include "kernels/cpu/rope.h"

namespace kvserve {
namespace {

std::vector<float> randn(size_t n, uint32_t seed, float sd = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

TEST(RmsNorm, MatchesReference) {
  for (const int n : {1, 8, 63, 576}) {
    const auto x = randn(size_t(3 * n), n), w = randn(size_t(n), n + 1);
    std::vector<float> y(x.size());
    rmsnorm_rows(x.data(), w.data(), y.data(), 3, n, 1e-5f);
    for (int r = 0; r < 3; ++r) {
      double ss = 0;
      for (int i = 0; i < n; ++i) ss += double(x[size_t(r * n + i)]) * x[size_t(r * n + i)];
      const double inv = 1.0 / std::sqrt(ss / n + 1e-5);
      for (int i = 0; i < n; ++i)
        EXPECT_NEAR(y[size_t(r * n + i)], x[size_t(r * n + i)] * inv * w[size_t(i)], 1e-5);
    }
  }
  // In place.
  auto x = randn(16, 3);
  const auto w = randn(16, 4);
  std::vector<float> y(16);
  rmsnorm(x.data(), w.data(), y.data(), 16, 1e-6f);
  rmsnorm(x.data(), w.data(), x.data(), 16, 1e-6f);
  EXPECT_EQ(x, y);
}

// Reference rotation: pair (a, b) rotated by theta = pos * base^(-2i/n_rot).
void ref_rope(std::vector<double>& x, int n_heads, int hd, int n_rot, int64_t pos, double base, bool neox,
              double pos_scale) {
  for (int h = 0; h < n_heads; ++h)
    for (int i = 0; i < n_rot / 2; ++i) {
      const double theta = double(pos) * pos_scale * std::pow(base, -2.0 * i / n_rot);
      const size_t ia = size_t(h * hd + (neox ? i : 2 * i));
      const size_t ib = size_t(h * hd + (neox ? i + n_rot / 2 : 2 * i + 1));
      const double a = x[ia], b = x[ib];
      x[ia] = a * std::cos(theta) - b * std::sin(theta);
      x[ib] = a * std::sin(theta) + b * std::cos(theta);
    }
}

TEST(Rope, BothPairingsMatchReference) {
  for (const bool neox : {false, true})
    for (const auto& [hd, n_rot] : {std::pair{64, 64}, std::pair{16, 8}, std::pair{6, 6}})
      for (const int64_t pos : {0, 1, 7, 1000, 30000}) {
        SCOPED_TRACE(::testing::Message()
                     << "neox " << neox << " hd " << hd << " n_rot " << n_rot << " pos " << pos);
        const int n_heads = 3;
        auto x = randn(size_t(n_heads * hd), uint32_t(pos + hd));
        std::vector<double> ref(x.begin(), x.end());
        ref_rope(ref, n_heads, hd, n_rot, pos, 10000.0, neox, 1.0);
        const auto inv = rope_inv_freq(n_rot, 10000.0f, RopeScaling{}, nullptr);
        std::vector<float> cs(static_cast<size_t>(n_rot));
        rope_cos_sin(pos, inv.data(), n_rot, cs.data());
        rope_apply(x.data(), n_heads, hd, n_rot, cs.data(), neox ? RopeStyle::Neox : RopeStyle::Normal);
        for (size_t i = 0; i < x.size();
             ++i)  // inv_freq is float (as in llama.cpp): theta's error grows with the position.
          EXPECT_NEAR(x[i], ref[i], (2e-4 + 2e-7 * double(pos)) * (1 + std::abs(ref[i]))) << i;
      }
}

TEST(Rope, NormalPairsAreAdjacentNeoxAreHalves) {
  // A vector with only x[1] set: Normal pairs it with x[0], NeoX with x[1 + n_rot/2].
  const int hd = 8;
  std::vector<float> cs(hd);
  const auto inv = rope_inv_freq(hd, 10000.0f, RopeScaling{}, nullptr);
  rope_cos_sin(5, inv.data(), hd, cs.data());
  std::vector<float> a(hd, 0.0f), b(hd, 0.0f);
  a[1] = b[1] = 1.0f;
  rope_apply(a.data(), 1, hd, hd, cs.data(), RopeStyle::Normal);
  rope_apply(b.data(), 1, hd, hd, cs.data(), RopeStyle::Neox);
  EXPECT_NE(a[0], 0.0f);
  EXPECT_EQ(a[5], 0.0f);
  EXPECT_EQ(b[0], 0.0f);
  EXPECT_NE(b[5], 0.0f);
}

TEST(Rope, LinearScalingDividesPositions) {
  RopeScaling s;
  s.type = RopeScaling::Type::Linear;
  s.factor = 4.0f;
  const auto plain = rope_inv_freq(32, 10000.0f, RopeScaling{}, nullptr);
  const auto scaled = rope_inv_freq(32, 10000.0f, s, nullptr);
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_FLOAT_EQ(scaled[i], plain[i] / 4.0f);
}

TEST(Rope, Llama3ScalingFollowsMetaRule) {
  RopeScaling s;
  s.type = RopeScaling::Type::Llama3;
  s.factor = 8.0f;
  s.low_freq_factor = 1.0f;
  s.high_freq_factor = 4.0f;
  s.original_context = 8192;
  const int n_rot = 128;
  const auto plain = rope_inv_freq(n_rot, 500000.0f, RopeScaling{}, nullptr);
  const auto scaled = rope_inv_freq(n_rot, 500000.0f, s, nullptr);
  int kept = 0, divided = 0, blended = 0;
  for (size_t i = 0; i < plain.size(); ++i) {
    const double wavelen = 2 * std::numbers::pi / plain[i];
    if (wavelen < 8192.0 / 4.0) {
      EXPECT_FLOAT_EQ(scaled[i], plain[i]);
      ++kept;
    } else if (wavelen > 8192.0) {
      EXPECT_FLOAT_EQ(scaled[i], plain[i] / 8.0f);
      ++divided;
    } else {
      const double smooth = (8192.0 / wavelen - 1.0) / 3.0;
      EXPECT_NEAR(scaled[i], (1 - smooth) * plain[i] / 8.0 + smooth * plain[i], 1e-6 * plain[i]);
      ++blended;
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(divided, 0);
  EXPECT_GT(blended, 0);
  // Precomputed factors (rope_freqs) divide the plain frequencies and replace the rule.
  std::vector<float> factors(size_t(n_rot / 2), 2.0f);
  const auto with_factors = rope_inv_freq(n_rot, 500000.0f, s, factors.data());
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_FLOAT_EQ(with_factors[i], plain[i] / 2.0f);
}

TEST(Softmax, MatchesReferenceAndReturnsLogNormalizer) {
  auto x = randn(100, 5, 10.0f);
  const auto orig = x;
  double mx = -1e30;
  for (float v : orig) mx = std::max(mx, double(v));
  double sum = 0;
  for (float v : orig) sum += std::exp(v - mx);
  const float lse = logsumexp(x.data(), 100);
  EXPECT_NEAR(lse, mx + std::log(sum), 1e-4);
  EXPECT_NEAR(softmax(x.data(), 100), mx + std::log(sum), 1e-4);
  double total = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_NEAR(x[i], std::exp(orig[i] - mx) / sum, 1e-6);
    total += x[i];
  }
  EXPECT_NEAR(total, 1.0, 1e-5);
}

TEST(SiluMul, MatchesReference) {
  auto g = randn(101, 1, 4.0f);
  g[0] = -100.0f;  // exp saturates: silu -> 0
  g[1] = 100.0f;   // silu -> g
  g[2] = 0.0f;
  g[3] = -87.5f;
  const auto u = randn(101, 2);
  for (const bool dispatched : {false, true}) {
    std::vector<float> out(g.size());
    (dispatched ? silu_mul : silu_mul_scalar)(g.data(), u.data(), out.data(), int64_t(g.size()));
    for (size_t i = 0; i < g.size(); ++i)
      EXPECT_NEAR(out[i], g[i] / (1.0 + std::exp(-double(g[i]))) * u[i], 1e-6 + 2e-6 * std::abs(out[i]))
          << (dispatched ? "dispatched " : "scalar ") << i << " g " << g[i];
  }
  // In place, on a length that is not a multiple of the vector width.
  std::vector<float> a(g.begin(), g.begin() + 37), ref(37);
  silu_mul_scalar(a.data(), u.data(), ref.data(), 37);
  silu_mul(a.data(), u.data(), a.data(), 37);
  for (size_t i = 0; i < 37; ++i) EXPECT_NEAR(a[i], ref[i], 1e-6 + 2e-6 * std::abs(ref[i]));
}

}  // namespace
}  // namespace kvserve

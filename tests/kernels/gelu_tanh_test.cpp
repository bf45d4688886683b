// gelu_tanh_mul (GeGLU's gating with the tanh approximation of GELU): every ISA's kernel
// and the dispatched one against a double-precision reference over a wide range of
// inputs, large magnitudes included, and each element's bits independent of n and of
// where the element sits (vector tails computed like full vectors).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/cpu_features.h"
#include "kernels/cpu/activation.h"

namespace kvserve {
namespace {

struct Kernel {
  const char* name;
  Isa isa;
  GeluTanhMulFn fn;
};
const Kernel kKernels[] = {{"scalar", Isa::Scalar, gelu_tanh_mul_for(Isa::Scalar)},
                           {"avx2", Isa::Avx2, gelu_tanh_mul_for(Isa::Avx2)},
                           {"avx512", Isa::Avx512, gelu_tanh_mul_for(Isa::Avx512)},
                           {"dispatched", Isa::Scalar, gelu_tanh_mul}};

// 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)): the same function without 1 + tanh(u)'s
// cancellation for negative x, so the reference keeps its relative accuracy there.
double gelu_tanh_ref(double x) {
  const double u = std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
  return x / (1.0 + std::exp(-2.0 * u));
}

// Inputs over every scale: around 0 (most activations), the tails where gelu -> x or
// -> 0, and magnitudes where x^3 overflows a float.
std::vector<float> gate_inputs() {
  std::vector<float> g = {0.0f,
                          -0.0f,
                          1e-30f,
                          -1e-30f,
                          1e-6f,
                          -1e-6f,
                          0.5f,
                          -0.5f,
                          3.0f,
                          -3.0f,
                          9.9f,
                          -9.9f,
                          10.1f,
                          -10.1f,
                          87.0f,
                          -87.0f,
                          1e13f,
                          -1e13f,
                          1e30f,
                          -1e30f,
                          std::numeric_limits<float>::max(),
                          -std::numeric_limits<float>::max(),
                          std::numeric_limits<float>::denorm_min(),
                          -std::numeric_limits<float>::min()};
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> ud(-12.0f, 12.0f), ed(-30.0f, 30.0f);
  for (int i = 0; i < 2000; ++i) g.push_back(3.0f * nd(rng));
  for (int i = 0; i < 2000; ++i) g.push_back(ud(rng));
  for (int i = 0; i < 500; ++i) g.push_back((i % 2 ? 1.0f : -1.0f) * std::exp(ed(rng)));  // 1e-13 .. 1e13
  for (float x = -12.0f; x <= 12.0f; x += 1.0f / 64) g.push_back(x);  // a dense sweep of the bend
  return g;
}

TEST(GeluTanhMul, EveryIsaMatchesDoubleReference) {
  const std::vector<float> g = gate_inputs();
  std::vector<float> u(g.size());
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> ud(-1.0f, 1.0f);  // gelu(x) * up stays finite for x = FLT_MAX
  for (float& x : u) x = ud(rng);
  u[0] = 1.0f;
  for (const Kernel& k : kKernels) {
    if (int(k.isa) > int(best_isa())) continue;
    std::vector<float> out(g.size(), -1.0f);
    k.fn(g.data(), u.data(), out.data(), int64_t(g.size()));
    for (size_t i = 0; i < g.size(); ++i) {
      const double want = gelu_tanh_ref(g[i]) * u[i];
      ASSERT_TRUE(std::isfinite(out[i])) << k.name << " gelu_tanh(" << g[i] << ")";
      // 1e-6 relative; for negative x, gelu(x) ~ x exp(2 t) (t = sqrt(2/pi) (x + 0.044715
      // x^3)) and the float rounding of t (|t| up to ~44 before the result underflows)
      // costs about |t| ulps in any float implementation, so the bound grows with |t|.
      const double x = g[i], t = std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
      EXPECT_NEAR(out[i], want, 1e-6 * std::max(1.0, std::abs(t)) * std::abs(want) + 1e-30)
          << k.name << " gelu_tanh(" << g[i] << ") * " << u[i];
    }
  }
}

// The reference is GELU's tanh form: the identity it relies on, checked where both are
// accurate in double.
TEST(GeluTanhMul, ReferenceIsTheTanhForm) {
  for (double x = -6.0; x <= 6.0; x += 0.01) {
    const double tanh_form = 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    EXPECT_NEAR(gelu_tanh_ref(x), tanh_form, 1e-12) << x;
  }
  EXPECT_NEAR(gelu_tanh_ref(1.0), 0.8411919906082768, 1e-15);  // torch gelu(1, approximate="tanh")
}

// An element's bits do not depend on n or on its index: every length and offset of a
// slice, with vector tails, give the bits of the whole array's run; out may alias.
TEST(GeluTanhMul, ElementsIndependentOfLengthAndOffsetBitExact) {
  std::vector<float> g = gate_inputs();
  g.resize(203);
  std::vector<float> u(g.size());
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (float& x : u) x = nd(rng);
  for (const Kernel& k : kKernels) {
    if (int(k.isa) > int(best_isa())) continue;
    std::vector<float> whole(g.size());
    k.fn(g.data(), u.data(), whole.data(), int64_t(g.size()));
    for (int off = 0; off < 40; off += 3)
      for (int n = 0; n + off <= int(g.size()); n += n < 40 ? 1 : 17) {
        std::vector<float> out(size_t(n) + 1, -7.0f);
        k.fn(g.data() + off, u.data() + off, out.data(), n);
        ASSERT_EQ(0, std::memcmp(out.data(), whole.data() + off, sizeof(float) * size_t(n)))
            << k.name << " n " << n << " offset " << off;
        ASSERT_EQ(out[size_t(n)], -7.0f) << k.name << " wrote past n = " << n;
      }
    std::vector<float> a(g.begin(), g.end()), b(u.begin(), u.end());
    k.fn(a.data(), u.data(), a.data(), int64_t(a.size()));  // out = gate
    k.fn(g.data(), b.data(), b.data(), int64_t(b.size()));  // out = up
    ASSERT_EQ(a, whole) << k.name << " in place over gate";
    ASSERT_EQ(b, whole) << k.name << " in place over up";
  }
}

}  // namespace
}  // namespace kvserve

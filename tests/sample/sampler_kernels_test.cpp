// Every ISA's row kernels against plain scalar loops, on rows whose lengths exercise the
// vector bodies, the block boundaries and the scalar tails.
#include "sample/sampler_kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace kvserve {
namespace {

std::vector<Isa> supported_isas() {
  std::vector<Isa> out = {Isa::Scalar};
  const auto& f = cpu_features();
  if (f.avx2 && f.fma) out.push_back(Isa::Avx2);
  if (f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq) out.push_back(Isa::Avx512);
  return out;
}

std::vector<float> row(int32_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.0f, 4.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(g);
  if (n > 10) v[size_t(n / 3)] = -std::numeric_limits<float>::infinity();
  return v;
}

TEST(SamplerKernels, AllIsasMatchScalarLoops) {
  for (Isa isa : supported_isas()) {
    const SamplerKernels& k = sampler_kernels_for(isa);
    for (int32_t n : {1, 7, 33, 1024, 1031, 5000, 49152}) {
      SCOPED_TRACE(std::string(isa_name(isa)) + " n=" + std::to_string(n));
      const auto x = row(n, uint64_t(n));
      float m = -INFINITY;
      for (float v : x) m = std::max(m, v);
      EXPECT_EQ(k.row_max(x.data(), n), m);

      const float inv_t = 1.0f / 0.7f;
      double ref_z = 0.0;
      std::vector<double> e(x.size());
      for (size_t i = 0; i < x.size(); ++i) ref_z += e[i] = std::exp(double((x[i] - m) * inv_t));
      EXPECT_NEAR(k.sum_exp(x.data(), n, m, inv_t), ref_z, 1e-6 * ref_z);

      std::vector<float> w(x.size());
      std::vector<double> blocks(size_t((n + SamplerKernels::kBlock - 1) / SamplerKernels::kBlock));
      const float min_logit = m - 3.0f;
      double ref_w = 0.0;
      for (size_t i = 0; i < x.size(); ++i) ref_w += x[i] >= min_logit ? e[i] : 0.0;
      const double tw = k.exp_weights(x.data(), n, m, inv_t, min_logit, w.data(), blocks.data());
      EXPECT_NEAR(tw, ref_w, 1e-6 * ref_w);
      double block_total = 0.0;
      for (double b : blocks) block_total += b;
      EXPECT_NEAR(block_total, tw, 1e-9 * tw);
      for (size_t i = 0; i < x.size(); ++i) {
        if (x[i] < min_logit) {
          ASSERT_EQ(w[i], 0.0f);
        } else {
          ASSERT_NEAR(w[i], e[i], 1e-6 * e[i] + 1e-30);
        }
      }

      float lo[SamplerKernels::kWindows];
      double mass[SamplerKernels::kWindows];
      int32_t count[SamplerKernels::kWindows];
      for (int j = 0; j < SamplerKernels::kWindows; ++j) lo[j] = m - SamplerKernels::kWindowNats[j] * 0.7f;
      EXPECT_NEAR(k.window_masses(x.data(), n, m, inv_t, lo, mass, count, w.data()), ref_z, 1e-6 * ref_z);
      for (int j = 0; j < SamplerKernels::kWindows; ++j) {
        double rm = 0.0;
        int32_t rc = 0;
        for (size_t i = 0; i < x.size(); ++i)
          if (x[i] >= lo[j]) rm += e[i], ++rc;
        EXPECT_EQ(count[j], rc);
        EXPECT_NEAR(mass[j], rm, 1e-6 * rm);
      }
      for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(w[i], e[i], 1e-6 * e[i] + 1e-30);

      const float v = x[0];
      int32_t rc = 0;
      std::vector<int32_t> ref_idx;
      for (int32_t i = 0; i < n; ++i) {
        rc += x[size_t(i)] > v;
        if (x[size_t(i)] >= v) ref_idx.push_back(i);
      }
      EXPECT_EQ(k.count_greater(x.data(), n, v), rc);
      std::vector<int32_t> idx(x.size());
      idx.resize(size_t(k.select_at_least(x.data(), n, v, idx.data())));
      EXPECT_EQ(idx, ref_idx);
      for (int32_t from : {0, 1, n / 2, n - 1}) {
        int32_t ref = n;
        for (int32_t i = from; i < n; ++i)
          if (x[size_t(i)] > v) {
            ref = i;
            break;
          }
        EXPECT_EQ(k.first_greater(x.data(), n, from, v), ref) << "from=" << from;
      }
    }
  }
}

}  // namespace
}  // namespace kvserve

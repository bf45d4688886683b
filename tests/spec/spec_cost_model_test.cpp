// SpecCostModel: unmeasured sizes (plain first, then drafting), the throughput comparison in memory-bound,
// compute-bound and mixed regimes, interpolation.
#include "spec/spec_cost_model.h"

#include <gtest/gtest.h>

namespace kvserve {
namespace {

TEST(SpecCostModel, MeasuresThePlainStepFirstThenTheDraftingOne) {
  SpecCostModel m(64);
  EXPECT_EQ(m.step_time(4), 0.0);
  // Plain step size unknown: no (that step measures it).
  EXPECT_FALSE(m.worth(4, 4, 0.1));
  EXPECT_FALSE(m.worth(1, 16, 3.0));
  m.observe(4, 0.010);
  m.observe(1, 0.008);
  // Now only the drafting size is unknown: yes, to measure it.
  EXPECT_TRUE(m.worth(4, 4, 0.1));
  EXPECT_TRUE(m.worth(1, 16, 0.0));
  // Nothing to draft, or nothing to decode: never.
  EXPECT_FALSE(m.worth(4, 0, 1.0));
  EXPECT_FALSE(m.worth(0, 4, 1.0));
}

TEST(SpecCostModel, MemoryBoundFlatStepTimeMakesDraftingWorthIt) {
  SpecCostModel m(64);
  for (int t = 1; t <= 64; ++t) m.observe(t, 0.020);
  EXPECT_TRUE(m.worth(4, 4, 1.2));
  EXPECT_TRUE(m.worth(1, 8, 0.05));
  EXPECT_TRUE(m.worth(32, 16, 0.5));
  EXPECT_FALSE(m.worth(4, 4, 0.0));  // nothing accepted: the same tokens, no gain
}

TEST(SpecCostModel, ComputeBoundLinearStepTimeWithLowAcceptanceIsNotWorthIt) {
  SpecCostModel m(64);
  for (int t = 1; t <= 64; ++t) m.observe(t, 0.001 * t);
  EXPECT_FALSE(m.worth(4, 4, 1.2));
  EXPECT_FALSE(m.worth(16, 8, 4.0));
  EXPECT_FALSE(m.worth(1, 2, 0.4));
}

TEST(SpecCostModel, FixedCostPlusPerTokenCostHasABreakEven) {
  // t(n) = 10 ms + 1 ms * n. B = 4, D = 4: worth iff (4 + A) * 14 > 4 * 18, A > 8/7.
  SpecCostModel m(32);
  for (int t = 1; t <= 32; ++t) m.observe(t, 0.010 + 0.001 * t);
  EXPECT_FALSE(m.worth(4, 4, 1.0));
  EXPECT_TRUE(m.worth(4, 4, 1.3));
  EXPECT_NEAR(m.step_time(8), 0.018, 1e-12);
}

TEST(SpecCostModel, InterpolatesBetweenMeasuredSizesOnly) {
  SpecCostModel m(32);
  m.observe(2, 0.002);
  m.observe(10, 0.010);
  EXPECT_DOUBLE_EQ(m.step_time(2), 0.002);
  EXPECT_DOUBLE_EQ(m.step_time(10), 0.010);
  EXPECT_NEAR(m.step_time(6), 0.006, 1e-12);
  EXPECT_NEAR(m.step_time(3), 0.003, 1e-12);
  EXPECT_NEAR(m.step_time(9), 0.009, 1e-12);
  // Outside the measured range: unknown.
  EXPECT_EQ(m.step_time(1), 0.0);
  EXPECT_EQ(m.step_time(11), 0.0);
  EXPECT_EQ(m.step_time(32), 0.0);
  // Interpolated linear cost: not worth it; beyond the last measurement: measure it.
  EXPECT_FALSE(m.worth(4, 4, 1.0));
  EXPECT_TRUE(m.worth(8, 4, 1.0));
  // A new measurement in between bends the curve.
  m.observe(6, 0.002);
  EXPECT_NEAR(m.step_time(4), 0.002, 1e-12);
  EXPECT_NEAR(m.step_time(8), 0.006, 1e-12);
}

TEST(SpecCostModel, ObserveAveragesAndIgnoresNonsense) {
  SpecCostModel m(8);
  m.observe(4, 1.0);
  EXPECT_DOUBLE_EQ(m.step_time(4), 1.0);
  m.observe(4, 2.0);
  EXPECT_NEAR(m.step_time(4), 1.2, 1e-12);  // 0.8 * 1.0 + 0.2 * 2.0
  m.observe(0, 5.0);
  m.observe(-3, 5.0);
  m.observe(9, 5.0);  // past max_tokens
  m.observe(5, 0.0);
  m.observe(5, -1.0);
  EXPECT_EQ(m.step_time(5), 0.0);
  EXPECT_EQ(m.step_time(3), 0.0);
  EXPECT_NEAR(m.step_time(4), 1.2, 1e-12);
}

}  // namespace
}  // namespace kvserve

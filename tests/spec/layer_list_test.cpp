// --speculative-skip-layers parsing and the default skip set.
#include "spec/layer_list.h"

#include <gtest/gtest.h>

namespace kvserve {
namespace {

std::vector<uint8_t> flags(std::initializer_list<int> skipped, int n) {
  std::vector<uint8_t> f(size_t(n), 0);
  for (int l : skipped) f[size_t(l)] = 1;
  return f;
}

TEST(SkipLayers, ParsesLayersAndRanges) {
  auto r = parse_skip_layers("3,5-7,0", 10);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, flags({0, 3, 5, 6, 7}, 10));
  r = parse_skip_layers("9", 10);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, flags({9}, 10));
  r = parse_skip_layers("2-2,2", 4);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, flags({2}, 4));
}

TEST(SkipLayers, RejectsWhatIsNotALayerListWithTheItem) {
  for (const char* bad : {"", "a", "1,", ",1", "1-", "-1", "3-1", "1.5", "1 ,2", "1--2"}) {
    auto r = parse_skip_layers(bad, 10);
    ASSERT_FALSE(r.ok()) << "'" << bad << "'";
    EXPECT_NE(r.error().message.find("--speculative-skip-layers"), std::string::npos);
  }
  auto r = parse_skip_layers("4-10", 10);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("'4-10' is outside the model's layers 0-9"), std::string::npos)
      << r.error().message;
  r = parse_skip_layers("0-2,4", 5);
  ASSERT_TRUE(r.ok());
  r = parse_skip_layers("0-4", 5);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("skips every one of the 5 layers"), std::string::npos);
}

TEST(SkipLayers, DefaultSkipsEveryOtherLayerOfTheMiddleHalf) {
  // 30 layers (SmolLM2-135M): [7, 22) at odd offsets -> 8, 10, ..., 20.
  EXPECT_EQ(default_skip_layers(30), flags({8, 10, 12, 14, 16, 18, 20}, 30));
  EXPECT_EQ(default_skip_layers(8), flags({3, 5}, 8));
  EXPECT_EQ(default_skip_layers(5), flags({2}, 5));
  for (int n = 1; n <= 64; ++n) {
    const auto f = default_skip_layers(n);
    ASSERT_EQ(int(f.size()), n);
    if (n > 0) {  // the first and last layers always run
      EXPECT_EQ(f.front(), 0) << n;
    }
    if (n > 1) {
      EXPECT_EQ(f.back(), 0) << n;
    }
  }
}

}  // namespace
}  // namespace kvserve

// SpeculativeConfig::validate(): usable defaults, and a message naming the flag for each
// out-of-range setting.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "kvserve/speculative.h"

namespace kvserve {
namespace {

std::string error_of(const std::function<void(SpeculativeConfig&)>& edit) {
  SpeculativeConfig c;
  c.method = SpecMethod::Ngram;
  edit(c);
  return c.validate();
}

TEST(SpeculativeConfig, DefaultsAreValid) {
  EXPECT_EQ(error_of([](SpeculativeConfig&) {}), "");
  EXPECT_EQ(SpeculativeConfig{}.validate(), "");
  EXPECT_FALSE(SpeculativeConfig{}.enabled());
  SpeculativeConfig ngram;
  ngram.method = SpecMethod::Ngram;
  EXPECT_TRUE(ngram.enabled());
}

TEST(SpeculativeConfig, NumTokensOutOfRange) {
  for (int k : {0, -1, 17, 1000}) {
    const std::string e = error_of([k](SpeculativeConfig& c) { c.num_tokens = k; });
    EXPECT_NE(e, "") << k;
    EXPECT_NE(e.find("--num-speculative-tokens"), std::string::npos) << e;
    EXPECT_NE(e.find(std::to_string(k)), std::string::npos) << e;
  }
  for (int k : {1, 4, 16}) EXPECT_EQ(error_of([k](SpeculativeConfig& c) { c.num_tokens = k; }), "") << k;
}

TEST(SpeculativeConfig, NgramBoundsOutOfRange) {
  const std::string e = error_of([](SpeculativeConfig& c) {
    c.ngram_min = 4;
    c.ngram_max = 3;
  });
  EXPECT_NE(e, "");
  EXPECT_NE(e.find("--ngram-min"), std::string::npos) << e;
  EXPECT_NE(error_of([](SpeculativeConfig& c) { c.ngram_min = 0; }), "");
  EXPECT_NE(error_of([](SpeculativeConfig& c) { c.ngram_max = 17; }), "");
  EXPECT_EQ(error_of([](SpeculativeConfig& c) {
              c.ngram_min = 3;
              c.ngram_max = 3;
            }),
            "");
  EXPECT_EQ(error_of([](SpeculativeConfig& c) {
              c.ngram_min = 1;
              c.ngram_max = 16;
            }),
            "");
}

TEST(SpeculativeConfig, NegativeSharedCacheIsRejectedAndZeroTurnsItOff) {
  EXPECT_NE(error_of([](SpeculativeConfig& c) { c.shared_cache_entries = -1; }), "");
  EXPECT_EQ(error_of([](SpeculativeConfig& c) { c.shared_cache_entries = 0; }), "");
}

TEST(SpeculativeConfig, DisabledSettingsAreNotChecked) {
  SpeculativeConfig c;
  c.num_tokens = 0;
  c.ngram_min = 9;
  c.ngram_max = 2;
  EXPECT_EQ(c.validate(), "");
  c.method = SpecMethod::Ngram;
  EXPECT_NE(c.validate(), "");  // the same settings, enabled
}

TEST(SpeculativeConfig, MethodNamesRoundTrip) {
  for (SpecMethod m : {SpecMethod::None, SpecMethod::Ngram})
    EXPECT_EQ(parse_spec_method(spec_method_name(m)), m);
  EXPECT_EQ(parse_spec_method("eagle"), std::nullopt);
}

}  // namespace
}  // namespace kvserve

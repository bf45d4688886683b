#include "engine/stop_matcher.h"

#include <gtest/gtest.h>

#include <random>

namespace kvserve {
namespace {

SamplingParams with_stops(std::vector<std::string> stops, bool include = false) {
  SamplingParams p;
  p.stop = std::move(stops);
  p.include_stop_str_in_output = include;
  p.max_tokens = 1000;
  return p;
}

TEST(StopMatcher, StopStringAcrossTokenBoundaries) {
  StopMatcher m(with_stops({"lo Wo"}));
  auto r = m.push("Hel");
  EXPECT_EQ(r.text, "He");  // "l" could start "lo Wo": held back
  EXPECT_FALSE(r.stopped);
  r = m.push("lo W");
  EXPECT_EQ(r.text, "l");  // "lo W" still could
  EXPECT_FALSE(r.stopped);
  r = m.push("orld");
  EXPECT_EQ(r.text, "");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(m.stop_string(), "lo Wo");
  EXPECT_EQ(m.push("more").text, "");  // nothing after a stop
}

TEST(StopMatcher, IncludeStopString) {
  StopMatcher m(with_stops({"lo Wo"}, true));
  std::string out = m.push("Hel").text;
  out += m.push("lo W").text;
  auto r = m.push("orld");
  out += r.text;
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(out, "Hello Wo");
}

TEST(StopMatcher, HeldBackTextIsReleasedOnMismatch) {
  StopMatcher m(with_stops({"xyz"}));
  EXPECT_EQ(m.push("ax").text, "a");
  EXPECT_EQ(m.push("y").text, "");
  EXPECT_EQ(m.push("b").text, "xyb");
  EXPECT_EQ(m.push("xy").text, "");
  EXPECT_EQ(m.flush(), "xy");  // generation ended for another reason
}

TEST(StopMatcher, StopInsideOneTokenAndEarliestWins) {
  StopMatcher m(with_stops({"END", "D!"}));
  auto r = m.push("abcEND!tail");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "abc");
  EXPECT_EQ(m.stop_string(), "END");
}

TEST(StopMatcher, SelfOverlappingStopString) {
  StopMatcher m(with_stops({"aab"}));
  std::string out;
  for (const char* piece : {"a", "a", "a", "a", "b", "c"}) {
    auto r = m.push(piece);
    out += r.text;
    if (r.stopped) break;
  }
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(out, "aa");
}

TEST(StopMatcher, RandomSplitsMatchReference) {
  // Emitted text, concatenated, must equal the text before the earliest stop string,
  // however the text is split into tokens: no text is emitted that was later cut.
  std::mt19937_64 g(2024);
  const std::vector<std::string> stops = {"abc", "bca", "cc", "abab"};
  for (int trial = 0; trial < 2000; ++trial) {
    std::string text;
    const int len = int(g() % 40);
    for (int i = 0; i < len; ++i) text += char('a' + g() % 3);
    const bool include = trial % 2;
    size_t cut = std::string::npos, stop_len = 0;
    for (const auto& s : stops) {
      const size_t pos = text.find(s);
      if (pos < cut) cut = pos, stop_len = s.size();
    }
    const std::string expect =
        cut == std::string::npos ? text : text.substr(0, cut + (include ? stop_len : 0));

    StopMatcher m(with_stops(stops, include));
    std::string out;
    bool stopped = false;
    for (size_t i = 0; i < text.size() && !stopped;) {
      const size_t piece = 1 + g() % 4;
      auto r = m.push(std::string_view(text).substr(i, piece));
      out += r.text;
      stopped = r.stopped;
      i += piece;
    }
    if (!stopped) out += m.flush();
    EXPECT_EQ(stopped, cut != std::string::npos) << text;
    EXPECT_EQ(out, expect) << text;
  }
}

TEST(StopMatcher, StopTokenIdAndEos) {
  SamplingParams p = with_stops({"zz"});
  p.stop_token_ids = {7};
  const int32_t eos[] = {2};
  {
    StopMatcher m(p, eos);
    EXPECT_EQ(m.push_token(5, "hello z").text, "hello ");
    auto r = m.push_token(7, "<stop>");
    EXPECT_EQ(r.finish, FinishReason::Stop);
    EXPECT_EQ(r.text, "z");  // held text released, the stop token's text dropped
    EXPECT_EQ(m.stop_token(), 7);
  }
  {
    p.include_stop_str_in_output = true;
    StopMatcher m(p, eos);
    auto r = m.push_token(7, "<stop>");
    EXPECT_EQ(r.text, "<stop>");
    p.include_stop_str_in_output = false;
  }
  {
    StopMatcher m(p, eos);
    auto r = m.push_token(2, "</s>");
    EXPECT_EQ(r.finish, FinishReason::Stop);
    EXPECT_EQ(r.text, "");
    EXPECT_EQ(m.stop_token(), -1);
  }
  {
    p.ignore_eos = true;
    StopMatcher m(p, eos);
    auto r = m.push_token(2, "</s>");
    EXPECT_EQ(r.finish, FinishReason::None);
    EXPECT_EQ(r.text, "</s>");
  }
}

TEST(StopMatcher, MaxTokensGivesLengthAndReleasesHeldText) {
  SamplingParams p = with_stops({"STOP"});
  p.max_tokens = 3;
  StopMatcher m(p);
  EXPECT_EQ(m.push_token(10, "a").finish, FinishReason::None);
  EXPECT_EQ(m.push_token(11, "b").finish, FinishReason::None);
  auto r = m.push_token(12, "ST");
  EXPECT_EQ(r.finish, FinishReason::Length);
  EXPECT_EQ(r.text, "ST");
  EXPECT_STREQ(finish_reason_name(r.finish), "length");
  EXPECT_STREQ(finish_reason_name(FinishReason::Stop), "stop");
  EXPECT_EQ(m.push_token(13, "x").finish, FinishReason::None);  // finished: ignored
  EXPECT_EQ(m.n_tokens(), 3);
}

TEST(StopMatcher, StopStringOnLastTokenIsStopNotLength) {
  SamplingParams p = with_stops({"!"});
  p.max_tokens = 2;
  StopMatcher m(p);
  m.push_token(1, "hi");
  auto r = m.push_token(2, "!");
  EXPECT_EQ(r.finish, FinishReason::Stop);
  EXPECT_EQ(r.text, "");
}

TEST(StopMatcher, MinTokensDefersStops) {
  SamplingParams p = with_stops({"x"});
  p.min_tokens = 2;
  p.stop_token_ids = {9};
  StopMatcher m(p);
  auto r = m.push_token(1, "x");  // 1 token < min_tokens: no stop
  EXPECT_EQ(r.finish, FinishReason::None);
  EXPECT_EQ(r.text, "x");
  r = m.push_token(1, "ax");
  EXPECT_EQ(r.finish, FinishReason::Stop);
  EXPECT_EQ(r.text, "a");
}

}  // namespace
}  // namespace kvserve

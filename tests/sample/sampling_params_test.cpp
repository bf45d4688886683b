#include "kvserve/sampling_params.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>

namespace kvserve {
namespace {

std::string error_of(const std::function<void(SamplingParams&)>& edit, int32_t n_vocab = 1000) {
  SamplingParams p;
  edit(p);
  const Status s = p.validate(n_vocab);
  return s.ok() ? "" : s.error().message;
}

TEST(SamplingParams, DefaultsAreValid) {
  EXPECT_EQ(error_of([](SamplingParams&) {}), "");
  EXPECT_FALSE(SamplingParams{}.greedy());
  EXPECT_EQ(SamplingParams{}.effective_best_of(), 1);
}

TEST(SamplingParams, GreedyAndBestOf) {
  SamplingParams p;
  p.temperature = 0.0f;
  EXPECT_TRUE(p.greedy());
  p.n = 3;
  EXPECT_EQ(p.effective_best_of(), 3);
  p.best_of = 5;
  EXPECT_EQ(p.effective_best_of(), 5);
}

TEST(SamplingParams, ErrorMessages) {
  EXPECT_EQ(error_of([](auto& p) { p.n = 0; }), "n must be at least 1, got 0.");
  EXPECT_EQ(error_of([](auto& p) { p.n = 3, p.best_of = 2; }),
            "best_of must be greater than or equal to n, got n=3 and best_of=2.");
  EXPECT_EQ(error_of([](auto& p) { p.temperature = -0.5f; }), "temperature must be non-negative, got -0.5.");
  EXPECT_EQ(error_of([](auto& p) { p.temperature = NAN; }), "temperature must be non-negative, got nan.");
  EXPECT_EQ(error_of([](auto& p) { p.top_p = 0.0f; }), "top_p must be in (0, 1], got 0.");
  EXPECT_EQ(error_of([](auto& p) { p.top_p = 1.5f; }), "top_p must be in (0, 1], got 1.5.");
  EXPECT_EQ(error_of([](auto& p) { p.top_k = -2; }), "top_k must be -1 (disable), or at least 1, got -2.");
  EXPECT_EQ(error_of([](auto& p) { p.min_p = 1.5f; }), "min_p must be in [0, 1], got 1.5.");
  EXPECT_EQ(error_of([](auto& p) { p.repetition_penalty = 0.0f; }),
            "repetition_penalty must be greater than zero, got 0.");
  EXPECT_EQ(error_of([](auto& p) { p.presence_penalty = 2.5f; }),
            "presence_penalty must be in [-2, 2], got 2.5.");
  EXPECT_EQ(error_of([](auto& p) { p.frequency_penalty = -3.0f; }),
            "frequency_penalty must be in [-2, 2], got -3.");
  EXPECT_EQ(error_of([](auto& p) { p.max_tokens = 0; }), "max_tokens must be at least 1, got 0.");
  EXPECT_EQ(error_of([](auto& p) { p.min_tokens = -1; }),
            "min_tokens must be greater than or equal to 0, got -1.");
  EXPECT_EQ(error_of([](auto& p) { p.min_tokens = 20; }),
            "min_tokens must be less than or equal to max_tokens=16, got 20.");
  EXPECT_EQ(error_of([](auto& p) { p.logprobs = -2; }), "logprobs must be non-negative, got -2.");
  EXPECT_EQ(error_of([](auto& p) { p.logprobs = 2000; }),
            "logprobs must be at most the vocabulary size 1000, got 2000.");
  EXPECT_EQ(error_of([](auto& p) { p.prompt_logprobs = -5; }),
            "prompt_logprobs must be non-negative, got -5.");
  EXPECT_EQ(error_of([](auto& p) {
              p.logit_bias = {{5, 1.0f}, {1000, 2.0f}};
            }),
            "token_id 1000 in logit_bias is out of vocabulary. Vocabulary size: 1000.");
  EXPECT_EQ(error_of([](auto& p) {
              p.logit_bias = {{-1, 1.0f}};
            }),
            "token_id -1 in logit_bias is out of vocabulary. Vocabulary size: 1000.");
  EXPECT_EQ(error_of([](auto& p) { p.logit_bias = {{3, NAN}}; }), "logit_bias value for token_id 3 is NaN.");
  EXPECT_EQ(error_of([](auto& p) {
              p.stop_token_ids = {7, 5000};
            }),
            "token_id 5000 in stop_token_ids is out of vocabulary. Vocabulary size: 1000.");
  EXPECT_EQ(error_of([](auto& p) { p.stop = {"ok", ""}; }), "stop strings must not be empty.");
}

TEST(SamplingParams, BoundaryValuesAreAccepted) {
  EXPECT_EQ(error_of([](auto& p) {
              p.temperature = 0.0f;
              p.top_p = 1.0f;
              p.top_k = 1;
              p.min_p = 1.0f;
              p.presence_penalty = -2.0f;
              p.frequency_penalty = 2.0f;
              p.logprobs = 0;
              p.prompt_logprobs = 1000;
              p.logit_bias = {{0, -INFINITY}, {999, 100.0f}};
              p.min_tokens = 16;
            }),
            "");
}

}  // namespace
}  // namespace kvserve

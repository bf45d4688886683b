// sample() must not allocate once warmed up: this binary counts global operator new calls.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <random>

#include "sample/sampler.h"

namespace {
std::atomic<int64_t> g_allocations{0};
}

void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size ? size : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

namespace kvserve {
namespace {

TEST(SamplerAlloc, NoAllocationAfterWarmUp) {
  const int32_t n = 49152;
  std::mt19937_64 g(1);
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> logits(static_cast<size_t>(n));
  for (auto& x : logits) x = d(g);

  Sampler sampler(n, {0});
  std::vector<SamplingParams> configs(6);
  configs[0].temperature = 0.0f;
  configs[1].top_p = 0.9f;
  configs[2].top_k = 40;
  configs[2].top_p = 0.95f;
  configs[3].min_p = 0.05f;
  configs[3].logprobs = 5;
  configs[4].repetition_penalty = 1.3f;
  configs[4].presence_penalty = 0.5f;
  configs[4].logit_bias = {{3, 2.0f}};
  configs[5].top_k = 5000;  // the partition path
  configs[5].min_tokens = 4;
  for (auto& c : configs) c.seed = 7;

  const int64_t start = g_allocations.load();
  std::vector<SequenceSamplerState> states(configs.size());
  const std::vector<int32_t> prompt = {1, 2, 3, 4};
  for (size_t i = 0; i < configs.size(); ++i) states[i].init(configs[i], prompt);
  LogprobsEntry lp;
  for (size_t i = 0; i < configs.size(); ++i) sampler.sample(logits.data(), configs[i], states[i], &lp);

  const int64_t before = g_allocations.load();
  ASSERT_GT(before, start);  // the counter does see allocations (the states' tables)
  for (int round = 0; round < 20; ++round)
    for (size_t i = 0; i < configs.size(); ++i) sampler.sample(logits.data(), configs[i], states[i], &lp);
  EXPECT_EQ(g_allocations.load() - before, 0);
}

}  // namespace
}  // namespace kvserve

// NgramSharedCache: frequency voting, multi-token chaining, the `from` boundary, and a
// tiny (few-bucket) cache under random load.
#include "spec/ngram_shared_cache.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace kvserve {
namespace {

using Tokens = std::vector<int32_t>;

void add(NgramSharedCache& c, const Tokens& t, int from = 0) {
  c.add(std::span<const int32_t>(t), from);
}

// The proposal for `context`, up to `max_out` tokens.
Tokens lookup(const NgramSharedCache& c, const Tokens& context, int max_out) {
  Tokens out(size_t(max_out), -7);
  const int k = c.lookup(std::span<const int32_t>(context), std::span<int32_t>(out));
  EXPECT_GE(k, 0);
  EXPECT_LE(k, max_out);
  out.resize(size_t(std::max(k, 0)));
  return out;
}

TEST(NgramSharedCache, BucketCountIsAPowerOfTwoAtLeastOne) {
  EXPECT_EQ(NgramSharedCache(2, 3, 0).buckets(), 1);
  EXPECT_EQ(NgramSharedCache(2, 3, 4).buckets(), 4);
  EXPECT_EQ(NgramSharedCache(2, 3, 5).buckets(), 8);
  EXPECT_EQ(NgramSharedCache(2, 3, 1 << 16).buckets(), 1 << 16);
}

TEST(NgramSharedCache, EmptyCacheProposesNothing) {
  NgramSharedCache c(2, 3, 64);
  EXPECT_EQ(lookup(c, {1, 2, 3}, 4), Tokens{});
}

TEST(NgramSharedCache, MostFrequentContinuationWins) {
  NgramSharedCache c(2, 2, 1024);
  add(c, {1, 2, 3});
  add(c, {1, 2, 3});
  add(c, {1, 2, 4});  // the latest, but seen once
  EXPECT_EQ(lookup(c, {1, 2}, 1), Tokens{3});
  add(c, {1, 2, 4});
  add(c, {1, 2, 4});  // now 3 times against 2
  EXPECT_EQ(lookup(c, {1, 2}, 1), Tokens{4});
}

TEST(NgramSharedCache, FifthContinuationEvictsALeastSeenOne) {
  NgramSharedCache c(2, 2, 1024);
  for (int i = 0; i < 5; ++i) add(c, {1, 2, 10});
  for (int32_t t : {11, 12, 13})
    for (int i = 0; i < 3; ++i) add(c, {1, 2, t});
  EXPECT_EQ(lookup(c, {1, 2}, 1), Tokens{10});
  add(c, {1, 2, 14});  // all four ways taken: replaces a 3-count way (not 10), counting from 1
  EXPECT_EQ(lookup(c, {1, 2}, 1), Tokens{10});
  for (int i = 0; i < 3; ++i) add(c, {1, 2, 14});  // 14 seen 4 times, 10 five times
  EXPECT_EQ(lookup(c, {1, 2}, 1), Tokens{10});
  for (int i = 0; i < 2; ++i) add(c, {1, 2, 14});  // 6 against 5
  EXPECT_EQ(lookup(c, {1, 2}, 1), Tokens{14});
}

TEST(NgramSharedCache, ChainsSeveralTokensThroughItsOwnProposals) {
  NgramSharedCache c(2, 3, 1024);
  add(c, {1, 2, 3, 4, 5, 6});
  // (1 2)->3, then (1 2 3)/(2 3)->4, ... until (5 6) has no known continuation.
  EXPECT_EQ(lookup(c, {9, 1, 2}, 4), (Tokens{3, 4, 5, 6}));
  EXPECT_EQ(lookup(c, {9, 1, 2}, 8), (Tokens{3, 4, 5, 6}));
  EXPECT_EQ(lookup(c, {9, 1, 2}, 2), (Tokens{3, 4}));
  EXPECT_EQ(lookup(c, {3, 4}, 8), (Tokens{5, 6}));
  EXPECT_EQ(lookup(c, {9, 1, 2}, 0), Tokens{});
  // Shorter than n_min: nothing to match.
  EXPECT_EQ(lookup(c, {2}, 4), Tokens{});
  EXPECT_EQ(lookup(c, {}, 4), Tokens{});
}

TEST(NgramSharedCache, LongestKnownSuffixIsTriedFirst) {
  NgramSharedCache c(2, 3, 1024);
  add(c, {0, 1, 2, 5});
  add(c, {9, 1, 2, 4});
  add(c, {8, 1, 2, 4});  // the bigram (1 2) votes 4 two to one
  EXPECT_EQ(lookup(c, {0, 1, 2}, 1), Tokens{5});
  EXPECT_EQ(lookup(c, {7, 1, 2}, 1), Tokens{4});
}

TEST(NgramSharedCache, RecordsNgramsWhoseNextTokenIsAtOrAfterFrom) {
  NgramSharedCache c(2, 3, 1024);
  const Tokens t{1, 2, 3, 4, 5, 6};  // prompt 1 2 3 4, output 5 6
  add(c, t, 4);
  // Entirely in the prompt (continuation included): not recorded.
  EXPECT_EQ(lookup(c, {1, 2}, 1), Tokens{});
  EXPECT_EQ(lookup(c, {2, 3}, 1), Tokens{});
  EXPECT_EQ(lookup(c, {1, 2, 3}, 1), Tokens{});
  // The join between prompt and output counts: n-grams that start in the prompt.
  EXPECT_EQ(lookup(c, {3, 4}, 1), Tokens{5});
  EXPECT_EQ(lookup(c, {2, 3, 4}, 2), (Tokens{5, 6}));
  EXPECT_EQ(lookup(c, {4, 5}, 1), Tokens{6});
  // from at or past the end records nothing.
  NgramSharedCache d(2, 3, 1024);
  add(d, t, 6);
  add(d, t, 100);
  EXPECT_EQ(lookup(d, {4, 5}, 1), Tokens{});
  EXPECT_EQ(lookup(d, {3, 4}, 1), Tokens{});
}

TEST(NgramSharedCache, TinyCacheSurvivesRandomLoadAndAnswersForTheLatestData) {
  std::mt19937_64 rng(5);
  for (int buckets : {0, 1, 2, 4, 16}) {
    for (auto [n_min, n_max] : {std::pair{2, 3}, std::pair{1, 4}, std::pair{3, 16}}) {
      SCOPED_TRACE(testing::Message() << "buckets " << buckets << " n " << n_min << ".." << n_max);
      NgramSharedCache c(n_min, n_max, buckets);
      int answered = 0;
      for (int round = 0; round < 60; ++round) {
        // Small-vocabulary noise keeps every bucket busy and every way full.
        Tokens noise(size_t(1 + rng() % 200));
        for (auto& x : noise) x = int32_t(rng() % 6);
        const int from = int(rng() % (noise.size() + 2));
        add(c, noise, from);
        if (int(noise.size()) > n_max && from < int(noise.size())) {
          // Its last n_max-gram was the last one recorded: the cache knows a continuation.
          const Tokens ctx(noise.end() - 1 - n_max, noise.end() - 1);
          const Tokens out = lookup(c, ctx, 1);
          ASSERT_EQ(out.size(), 1u) << "round " << round;
          ++answered;
        }
        // Random lookups of any length: bounded, and only ever tokens that were added
        // after n-grams of the noise vocabulary (fresh tokens only follow fresh ones).
        for (int q = 0; q < 20; ++q) {
          Tokens context(size_t(rng() % 40));
          for (auto& x : context) x = int32_t(rng() % 6);
          const int max_out = int(rng() % 40);
          for (int32_t x : lookup(c, context, max_out)) {
            ASSERT_GE(x, 0);
            ASSERT_LT(x, 6);
          }
        }
        // A sequence of fresh tokens: its last n_max-gram is unique and the last recorded,
        // so the answer is exactly the token that followed it.
        Tokens fresh(size_t(n_max + 1 + rng() % 20));
        for (auto& x : fresh) x = int32_t(1000 + rng() % 1000000);
        add(c, fresh, int(rng() % fresh.size()));
        const Tokens ctx(fresh.end() - 1 - n_max, fresh.end() - 1);
        ASSERT_EQ(lookup(c, ctx, 1), Tokens{fresh.back()}) << "round " << round;
      }
      EXPECT_GT(answered, 0);
    }
  }
}

}  // namespace
}  // namespace kvserve

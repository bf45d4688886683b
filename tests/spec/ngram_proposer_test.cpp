// NgramProposer and make_proposer(): own-sequence lookup first, the shared cache of
// finished sequences second, slot reuse, and the hit counters.
#include "spec/ngram_proposer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "spec/proposer.h"

namespace kvserve {
namespace {

using Tokens = std::vector<int32_t>;

SpeculativeConfig ngram_config(int shared_entries = 1024) {
  SpeculativeConfig c;
  c.method = SpecMethod::Ngram;
  c.ngram_min = 2;
  c.ngram_max = 3;
  c.shared_cache_entries = shared_entries;
  return c;
}

// Never called: the n-gram proposer needs no model logits.
struct NoChooser final : DraftChooser {
  int32_t choose(size_t, int, const float*) override {
    ADD_FAILURE() << "n-gram proposer asked for a choice";
    return 0;
  }
  void top(size_t, int, const float*, std::span<int32_t>) override {
    ADD_FAILURE() << "n-gram proposer asked for a choice";
  }
};

Tokens propose(Proposer& p, int32_t seq, const Tokens& tokens, int k) {
  Tokens out(size_t(k), -1);
  DraftItem item;
  item.seq = seq;
  item.tokens = tokens;
  item.out = out;
  NoChooser chooser;
  p.propose(std::span<DraftItem>(&item, 1), chooser);
  const int n = item.n;
  EXPECT_GE(n, 0);
  EXPECT_LE(n, k);
  out.resize(size_t(std::max(n, 0)));
  return out;
}

TEST(MakeProposer, NgramMethodMakesANgramProposerAndNoneMakesNothing) {
  auto p = make_proposer(ngram_config());
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(std::string(p->name()), "ngram");
  EXPECT_NE(dynamic_cast<NgramProposer*>(p.get()), nullptr);
  SpeculativeConfig none;
  EXPECT_EQ(make_proposer(none), nullptr);
}

TEST(NgramProposer, OwnSequenceIsPreferredOverTheSharedCache) {
  NgramProposer p(ngram_config());
  p.start(1, 64);
  p.finish(1, Tokens{1, 2, 9, 9}, 0);  // shared: (1 2) -> 9
  p.start(0, 64);
  EXPECT_EQ(propose(p, 0, {1, 2, 5, 6, 1, 2}, 2), (Tokens{5, 6}));
  EXPECT_EQ(p.own_hits(), 1);
  EXPECT_EQ(p.shared_hits(), 0);
}

TEST(NgramProposer, FallsBackToTheSharedCacheOfFinishedSequences) {
  NgramProposer p(ngram_config());
  p.start(0, 64);
  p.start(1, 64);
  const Tokens mine{7, 8, 1, 2};
  EXPECT_EQ(propose(p, 0, mine, 3), Tokens{});  // nothing known yet
  EXPECT_EQ(p.own_hits() + p.shared_hits(), 0);
  // Sequence 1: prompt 4 3 6, output 1 2 9 5.
  p.finish(1, Tokens{4, 3, 6, 1, 2, 9, 5}, 3);
  EXPECT_EQ(propose(p, 0, mine, 3), (Tokens{9, 5}));
  EXPECT_EQ(p.own_hits(), 0);
  EXPECT_EQ(p.shared_hits(), 1);
  // Within the prompt nothing was shared: (4 3) -> 6 lies before num_prompt.
  EXPECT_EQ(propose(p, 0, Tokens{7, 8, 1, 2, 4, 3}, 3), Tokens{});
  EXPECT_EQ(p.shared_hits(), 1);
  // As sequence 0 grows its own match takes over again.
  EXPECT_EQ(propose(p, 0, Tokens{7, 8, 1, 2, 4, 3, 7, 8}, 2), (Tokens{1, 2}));
  EXPECT_EQ(p.own_hits(), 1);
  EXPECT_EQ(p.shared_hits(), 1);
}

TEST(NgramProposer, WithoutASharedCacheOnlyTheOwnSequenceCounts) {
  NgramProposer p(ngram_config(0));
  p.start(0, 64);
  p.start(1, 64);
  p.finish(1, Tokens{1, 2, 9, 5}, 0);
  EXPECT_EQ(propose(p, 0, {7, 8, 1, 2}, 3), Tokens{});
  EXPECT_EQ(propose(p, 0, {7, 8, 1, 2, 3, 1, 2}, 1), Tokens{3});
  EXPECT_EQ(p.own_hits(), 1);
  EXPECT_EQ(p.shared_hits(), 0);
}

TEST(NgramProposer, StartOfAReusedSlotForgetsTheOldSequence) {
  NgramProposer p(ngram_config(0));
  p.start(3, 64);  // slots need not start at 0
  Tokens old_tokens;
  for (int i = 0; i < 30; ++i) old_tokens.push_back(100 + i % 4);
  EXPECT_EQ(propose(p, 3, old_tokens, 2), (Tokens{102, 103}));
  p.finish(3, old_tokens, 10);  // no shared cache: nothing kept
  p.start(3, 64);
  // The new sequence is indexed from its first token: (1 2) -> 3 is found.
  EXPECT_EQ(propose(p, 3, {1, 2, 3, 1, 2}, 2), (Tokens{3, 1}));
  p.start(3, 64);
  // And the old sequence's n-grams are gone.
  EXPECT_EQ(propose(p, 3, {5, 100, 101}, 2), Tokens{});
  EXPECT_EQ(p.own_hits(), 2);
}

TEST(NgramProposer, SequencesDoNotSeeEachOthersUnfinishedTokens) {
  NgramProposer p(ngram_config());
  p.start(0, 64);
  p.start(1, 64);
  EXPECT_EQ(propose(p, 0, {1, 2, 3, 4, 1, 2, 3}, 1), Tokens{4});
  EXPECT_EQ(propose(p, 1, {9, 1, 2, 3}, 1), Tokens{});  // 0 has not finished
  EXPECT_EQ(p.own_hits(), 1);
  EXPECT_EQ(p.shared_hits(), 0);
}

TEST(NgramProposer, IncrementalGrowthKeepsProposingTheCycle) {
  NgramProposer p(ngram_config(0));
  p.start(0, 128);
  Tokens t{4, 5, 6};
  int hits = 0;
  // Accept each proposal as if verified: the sequence keeps repeating 4 5 6.
  for (int step = 0; step < 20; ++step) {
    Tokens d = propose(p, 0, t, 3);
    if (!d.empty()) {
      ++hits;
      for (size_t i = 0; i < d.size(); ++i) EXPECT_EQ(d[i], 4 + int32_t((t.size() + i) % 3));
    }
    t.push_back(4 + int32_t(t.size() % 3));
  }
  EXPECT_EQ(hits, 18);  // from the 5th token on: (4 5) recurs first at size 5
  EXPECT_EQ(p.own_hits(), hits);
}

}  // namespace
}  // namespace kvserve

// NgramIndex: unit cases, and a property test against a brute-force reference over many
// random small-vocabulary sequences, indexed one token at a time and in chunks.
#include "spec/ngram_index.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace kvserve {
namespace {

// The brute-force answer: for n from min(n_max, size - 1) down to n_min, the latest e <
// size (e >= n) with tokens[e - n, e) equal to the last n tokens; then copy what followed,
// running on into the copy itself. Returns the count written (0: no n matched).
int reference_lookup(const std::vector<int32_t>& t, int n_min, int n_max, std::vector<int32_t>& out) {
  const int size = int(t.size());
  for (int n = std::min(n_max, size - 1); n >= n_min; --n) {
    for (int e = size - 1; e >= n; --e) {
      bool eq = true;
      for (int i = 0; i < n && eq; ++i) eq = t[size_t(e - n + i)] == t[size_t(size - n + i)];
      if (!eq) continue;
      for (int k = 0; k < int(out.size()); ++k)
        out[size_t(k)] = e + k < size ? t[size_t(e + k)] : out[size_t(e + k - size)];
      return int(out.size());
    }
  }
  return 0;
}

int lookup(const NgramIndex& idx, const std::vector<int32_t>& t, std::vector<int32_t>& out) {
  return idx.lookup(std::span<const int32_t>(t), std::span<int32_t>(out));
}

TEST(NgramIndexRef, ReferenceItselfAnswersKnownCases) {
  // Guards the reference the property test trusts.
  std::vector<int32_t> out(5);
  EXPECT_EQ(reference_lookup({1, 2, 1, 2}, 2, 2, out), 5);
  EXPECT_EQ(out, (std::vector<int32_t>{1, 2, 1, 2, 1}));
  std::vector<int32_t> one(1);
  EXPECT_EQ(reference_lookup({1, 2, 3}, 1, 3, one), 0);
  // Latest occurrence: "1 2" is followed by 3, later by 4.
  EXPECT_EQ(reference_lookup({1, 2, 3, 1, 2, 4, 1, 2}, 2, 2, one), 1);
  EXPECT_EQ(one[0], 4);
  // Longest n first: "0 1 2" occurred followed by 5; "1 2" latest was followed by 4.
  EXPECT_EQ(reference_lookup({0, 1, 2, 5, 1, 2, 4, 0, 1, 2}, 2, 3, one), 1);
  EXPECT_EQ(one[0], 5);
}

TEST(NgramIndex, RepeatingPatternProposesTheContinuationCyclically) {
  NgramIndex idx;
  idx.reset(2, 4, 64);
  const int32_t a = 7, b = 9;
  std::vector<int32_t> t{a, b, a, b, a, b};
  idx.update(t);
  EXPECT_EQ(idx.indexed(), 6);
  std::vector<int32_t> out(7, -1);
  ASSERT_EQ(lookup(idx, t, out), 7);
  EXPECT_EQ(out, (std::vector<int32_t>{a, b, a, b, a, b, a}));
  // Period 3, the match runs on past the end of the sequence into its own copy.
  std::vector<int32_t> t3{1, 2, 3, 1, 2};
  idx.reset(2, 4, 64);
  idx.update(t3);
  std::vector<int32_t> out3(5, -1);
  ASSERT_EQ(lookup(idx, t3, out3), 5);
  EXPECT_EQ(out3, (std::vector<int32_t>{3, 1, 2, 3, 1}));
}

TEST(NgramIndex, LongestSuffixWinsOverLaterShorterMatch) {
  NgramIndex idx;
  idx.reset(2, 3, 64);
  std::vector<int32_t> t{0, 1, 2, 5, 1, 2, 4, 0, 1, 2};
  idx.update(t);
  std::vector<int32_t> out(1, -1);
  ASSERT_EQ(lookup(idx, t, out), 1);
  EXPECT_EQ(out[0], 5);  // "0 1 2" -> 5 beats the later "1 2" -> 4
  idx.reset(2, 2, 64);   // with only bigrams the latest "1 2" wins
  idx.update(t);
  ASSERT_EQ(lookup(idx, t, out), 1);
  EXPECT_EQ(out[0], 4);
}

TEST(NgramIndex, NoMatchReturnsZero) {
  NgramIndex idx;
  idx.reset(2, 4, 64);
  std::vector<int32_t> t{1, 2, 3, 4, 5, 6};
  idx.update(t);
  std::vector<int32_t> out(4, -1);
  EXPECT_EQ(lookup(idx, t, out), 0);
  // Too short to hold an earlier occurrence of any n >= n_min.
  std::vector<int32_t> s{3, 3};
  idx.reset(2, 4, 64);
  idx.update(s);
  EXPECT_EQ(lookup(idx, s, out), 0);
  // An empty `out` writes nothing even when there is a match.
  std::vector<int32_t> rep{1, 2, 1, 2};
  idx.reset(2, 4, 64);
  idx.update(rep);
  std::vector<int32_t> none;
  EXPECT_EQ(lookup(idx, rep, none), 0);
  ASSERT_EQ(lookup(idx, rep, out), 4);  // positive control
}

TEST(NgramIndex, ResetForgets) {
  NgramIndex idx;
  idx.reset(2, 3, 64);
  std::vector<int32_t> old_tokens;
  for (int i = 0; i < 40; ++i) old_tokens.push_back(100 + i % 5);
  idx.update(old_tokens);
  std::vector<int32_t> out(3, -1);
  ASSERT_EQ(lookup(idx, old_tokens, out), 3);
  idx.reset(2, 3, 64);
  EXPECT_EQ(idx.indexed(), 0);
  // A new, shorter sequence is indexed from position 0 again...
  std::vector<int32_t> t{1, 2, 3, 1, 2};
  idx.update(t);
  EXPECT_EQ(idx.indexed(), 5);
  ASSERT_EQ(lookup(idx, t, out), 3);
  EXPECT_EQ(out, (std::vector<int32_t>{3, 1, 2}));
  // ...and old n-grams are gone: "100 101" was followed by 102 before the reset.
  idx.reset(2, 3, 64);
  std::vector<int32_t> u{7, 100, 101};
  idx.update(u);
  EXPECT_EQ(lookup(idx, u, out), 0);
}

struct Params {
  int n_min, n_max, vocab;
};

void run_property(uint64_t seed, const Params& p, bool chunked) {
  std::mt19937_64 rng(seed);
  const int max_len = 300;
  NgramIndex idx;
  int checked = 0, matched = 0;
  for (int seq = 0; seq < 25; ++seq) {
    idx.reset(p.n_min, p.n_max, max_len);
    std::vector<int32_t> t;
    const int len = 1 + int(rng() % max_len);
    // Some sequences repeat a random motif with noise, so long matches happen too.
    std::vector<int32_t> motif(size_t(1 + rng() % 7));
    for (auto& x : motif) x = int32_t(rng() % uint64_t(p.vocab));
    const bool motif_mode = rng() % 2;
    while (int(t.size()) < len) {
      const int step = chunked ? 1 + int(rng() % 9) : 1;
      for (int i = 0; i < step && int(t.size()) < len; ++i) {
        if (motif_mode && rng() % 8 != 0)
          t.push_back(motif[t.size() % motif.size()]);
        else
          t.push_back(int32_t(rng() % uint64_t(p.vocab)));
      }
      idx.update(t);
      ASSERT_EQ(idx.indexed(), int(t.size()));
      for (int out_len : {1, 1 + int(rng() % 12)}) {
        std::vector<int32_t> want(size_t(out_len), -1), got(size_t(out_len), -2);
        const int w = reference_lookup(t, p.n_min, p.n_max, want);
        const int g = lookup(idx, t, got);
        ASSERT_EQ(g, w) << "seed " << seed << " seq " << seq << " size " << t.size();
        for (int k = 0; k < w; ++k)
          ASSERT_EQ(got[size_t(k)], want[size_t(k)]) << "seed " << seed << " size " << t.size() << " k " << k;
        ++checked;
        matched += w > 0;
      }
    }
  }
  // Both outcomes must have been exercised.
  EXPECT_GT(matched, 0);
  EXPECT_LT(matched, checked);
}

TEST(NgramIndexProperty, MatchesBruteForceTokenByToken) {
  for (Params p : {Params{2, 4, 3}, Params{1, 3, 4}, Params{2, 2, 5}, Params{3, 5, 6}, Params{1, 1, 6}})
    for (uint64_t seed = 1; seed <= 4; ++seed) {
      SCOPED_TRACE(testing::Message() << "n " << p.n_min << ".." << p.n_max << " vocab " << p.vocab);
      run_property(seed, p, false);
    }
}

TEST(NgramIndexProperty, MatchesBruteForceInChunks) {
  for (Params p : {Params{2, 4, 3}, Params{1, 3, 4}, Params{2, 2, 5}, Params{3, 5, 6}, Params{1, 1, 6}})
    for (uint64_t seed = 11; seed <= 14; ++seed) {
      SCOPED_TRACE(testing::Message() << "n " << p.n_min << ".." << p.n_max << " vocab " << p.vocab);
      run_property(seed, p, true);
    }
}

}  // namespace
}  // namespace kvserve

namespace kvserve {
namespace {

// The brute-force occurrences: for n from min(n_max, size - 1) down to n_min, every e <
// size (latest first) whose preceding n tokens equal the last n, each e once.
std::vector<int32_t> reference_occurrences(const std::vector<int32_t>& t, int n_min, int n_max) {
  const int size = int(t.size());
  std::vector<int32_t> ends;
  for (int n = std::min(n_max, size - 1); n >= n_min; --n)
    for (int e = size - 1; e >= n; --e) {
      bool eq = true;
      for (int i = 0; i < n && eq; ++i) eq = t[size_t(e - n + i)] == t[size_t(size - n + i)];
      if (eq && std::find(ends.begin(), ends.end(), e) == ends.end()) ends.push_back(e);
    }
  return ends;
}

TEST(NgramIndex, OccurrencesListEveryEarlierMatchLongestThenLatestFirst) {
  NgramIndex idx;
  // The suffix "6 7 8" occurred before 5 (end 6) and before 3 (end 11); "7 8" also
  // before 9 (end 2).
  const std::vector<int32_t> t = {7, 8, 9, 6, 7, 8, 5, 4, 6, 7, 8, 3, 6, 7, 8};
  idx.reset(2, 3, 64);
  idx.update(t);
  std::vector<int32_t> ends(8);
  const int n = idx.occurrences(t, ends);
  ends.resize(size_t(n));
  EXPECT_EQ(ends, (std::vector<int32_t>{11, 6, 2}));
  EXPECT_EQ(ends, reference_occurrences(t, 2, 3));
  // A bounded output keeps the first ones.
  std::vector<int32_t> two(2);
  EXPECT_EQ(idx.occurrences(t, two), 2);
  EXPECT_EQ(two, (std::vector<int32_t>{11, 6}));
}

TEST(NgramIndexProperty, OccurrencesMatchBruteForce) {
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 300; ++trial) {
    const int n_min = 1 + int(rng() % 2), n_max = n_min + int(rng() % 3);
    std::vector<int32_t> t;
    NgramIndex idx;
    idx.reset(n_min, n_max, 80);
    const int len = 2 + int(rng() % 70), vocab = 2 + int(rng() % 5);
    for (int i = 0; i < len; ++i) {
      t.push_back(int32_t(rng() % uint64_t(vocab)));
      if (rng() % 3 == 0 || i + 1 == len) {
        idx.update(t);
        std::vector<int32_t> ends(256);
        ends.resize(size_t(idx.occurrences(t, ends)));
        ASSERT_EQ(ends, reference_occurrences(t, n_min, n_max))
            << "trial " << trial << " length " << t.size();
      }
    }
  }
}

}  // namespace
}  // namespace kvserve

// Scheduler without a model: a harness plays the engine (commit the step, append a
// "sampled" token for every request that reached the end of its tokens, finish at
// max_tokens) and checks the scheduler's decisions and the memory they imply.
#include "engine/scheduler.h"

#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <random>

namespace kvserve {
namespace {

struct Harness {
  BlockManager blocks;
  Scheduler sched;
  std::deque<Request> reqs;  // stable addresses
  std::deque<SamplingParams> params;
  uint64_t next_arrival = 0;
  int finished = 0;

  Harness(int n_blocks, int bs, const SchedulerConfig& sc, bool caching = true)
      : blocks(BlockManagerConfig{n_blocks, bs, caching, 0, ~0ULL}), sched(sc, blocks) {}

  Request* add(std::vector<int32_t> prompt, int max_tokens, int priority = 0) {
    params.emplace_back();
    params.back().max_tokens = max_tokens;
    Request& r = reqs.emplace_back();
    r.seq = SeqId(reqs.size() - 1);
    r.token_ids = std::move(prompt);
    r.num_prompt_tokens = r.num_tokens();
    r.params = &params.back();
    r.priority = priority;
    r.arrival = next_arrival++;
    EXPECT_TRUE(sched.check_admissible(r.num_prompt_tokens, max_tokens).ok());
    sched.add(&r);
    return &r;
  }

  // One engine step; returns the output for inspection (before commit).
  SchedulerOutput step() {
    SchedulerOutput out = sched.schedule();  // copy: inspected after commit
    EXPECT_LE(out.num_batched_tokens, sched.config().max_num_batched_tokens);
    EXPECT_LE(int(out.seqs.size()), sched.config().max_num_seqs);
    int sum = 0;
    std::vector<bool> sampling;
    for (const ScheduledSeq& s : out.seqs) {
      EXPECT_GT(s.num_new_tokens, 0);
      EXPECT_EQ(s.req->status, RequestStatus::Running);
      EXPECT_LE(s.req->num_computed_tokens + s.num_new_tokens, s.req->num_tokens());
      // The block table covers every position written this step.
      EXPECT_GE(int64_t(blocks.block_table(s.req->seq).size()) * blocks.block_size(),
                s.req->num_computed_tokens + s.num_new_tokens);
      sum += s.num_new_tokens;
      sampling.push_back(s.samples());
    }
    EXPECT_EQ(sum, out.num_batched_tokens);
    blocks.clear_pending_copies();
    sched.commit_step();
    for (size_t i = 0; i < out.seqs.size(); ++i) {
      if (!sampling[i]) continue;
      Request* r = out.seqs[i].req;
      r->token_ids.push_back(int32_t(1000 + r->num_output_tokens()));
      if (r->num_output_tokens() >= r->params->max_tokens) {
        sched.remove(r);
        ++finished;
      }
    }
    EXPECT_TRUE(blocks.check_invariants());
    return out;
  }
};

std::vector<int32_t> prompt(int n, int salt) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[i] = salt * 100 + i % 50;
  return t;
}

SchedulerConfig sc(int max_seqs, int budget, int max_len = 1024) {
  SchedulerConfig c;
  c.max_num_seqs = max_seqs;
  c.max_num_batched_tokens = budget;
  c.max_model_len = max_len;
  return c;
}

TEST(Scheduler, LongPromptIsChunkedWhileDecodesKeepFlowing) {
  Harness h(64, 4, sc(8, 16));
  Request* a = h.add(prompt(5, 1), 20);
  h.step();  // a's prompt
  Request* b = h.add(prompt(50, 2), 2);
  for (int i = 0; i < 4; ++i) {
    auto out = h.step();
    ASSERT_EQ(out.seqs.size(), 2u);
    EXPECT_EQ(out.seqs[0].req, a);  // the decode goes first...
    EXPECT_EQ(out.seqs[0].num_new_tokens, 1);
    EXPECT_EQ(out.seqs[1].req, b);  // ...and the prompt gets the rest of the budget
    EXPECT_EQ(out.seqs[1].num_new_tokens, i < 3 ? 15 : 5);
  }
  EXPECT_EQ(b->num_computed_tokens, 50);
  EXPECT_EQ(b->num_output_tokens(), 1);
}

TEST(Scheduler, RespectsMaxNumSeqs) {
  Harness h(256, 4, sc(3, 512));
  for (int i = 0; i < 7; ++i) h.add(prompt(6, i), 4);
  auto out = h.step();
  EXPECT_EQ(out.seqs.size(), 3u);
  EXPECT_EQ(h.sched.num_waiting(), 4);
  while (h.sched.has_unfinished()) h.step();
  EXPECT_EQ(h.finished, 7);
  EXPECT_EQ(h.blocks.num_free_blocks(), 256);
}

TEST(Scheduler, HigherPriorityIsAdmittedFirstAndFcfsWithinPriority) {
  Harness h(256, 4, sc(1, 512));
  Request* low = h.add(prompt(4, 1), 2, /*priority=*/5);
  Request* high1 = h.add(prompt(4, 2), 2, 0);
  Request* high2 = h.add(prompt(4, 3), 2, 0);
  EXPECT_EQ(h.step().seqs[0].req, high1);
  h.step();  // high1 finishes (2 tokens)
  EXPECT_EQ(h.step().seqs[0].req, high2);
  h.step();
  EXPECT_EQ(h.step().seqs[0].req, low);
}

TEST(Scheduler, PreemptsLatestArrivalWhenBlocksRunOut) {
  // 6 blocks of 4 tokens: two requests that grow to 14 tokens (4 blocks) cannot both fit.
  Harness h(6, 4, sc(8, 64));
  Request* first = h.add(prompt(4, 1), 10);
  Request* second = h.add(prompt(4, 2), 10);
  int preempted_second = 0;
  while (h.sched.has_unfinished()) {
    auto out = h.step();
    for (Request* p : out.preempted) {
      EXPECT_NE(p, first);  // the earlier arrival is never the victim while second runs
      if (p == second) ++preempted_second;
    }
  }
  EXPECT_GT(preempted_second, 0);
  EXPECT_EQ(h.finished, 2);
  EXPECT_EQ(second->num_output_tokens(), 10);
  EXPECT_EQ(h.blocks.num_free_blocks(), 6);
  EXPECT_EQ(h.sched.num_preemptions(), second->num_preemptions);
}

TEST(Scheduler, MoreImportantArrivalPreemptsLessImportantRunningRequest) {
  for (bool by_seqs : {false, true}) {
    // by_seqs: one sequence slot; else memory: 6 blocks of 4, the first request holds 5.
    Harness h(by_seqs ? 64 : 6, 4, sc(by_seqs ? 1 : 8, 64));
    Request* low = h.add(prompt(16, 1), 8, /*priority=*/5);
    h.step();
    h.step();
    Request* same = h.add(prompt(10, 3), 2, /*priority=*/5);  // same priority: waits its turn
    auto out = h.step();
    EXPECT_TRUE(out.preempted.empty());
    Request* high = h.add(prompt(10, 2), 2, /*priority=*/0);
    out = h.step();
    ASSERT_EQ(out.preempted.size(), 1u);
    EXPECT_EQ(out.preempted[0], low);
    ASSERT_EQ(out.seqs.size(), 1u);
    EXPECT_EQ(out.seqs[0].req, high);
    while (h.sched.has_unfinished()) h.step();
    EXPECT_EQ(h.finished, 3);
    EXPECT_EQ(low->num_output_tokens(), 8);
    EXPECT_EQ(same->num_output_tokens(), 2);
    EXPECT_EQ(h.blocks.num_free_blocks(), h.blocks.n_blocks());
  }
}

TEST(Scheduler, RejectsRequestsThatCanNeverFit) {
  Harness h(8, 4, sc(8, 64, /*max_len=*/100));
  auto ctx = h.sched.check_admissible(90, 20);
  ASSERT_FALSE(ctx.ok());
  EXPECT_NE(ctx.error().message.find("maximum context length is 100"), std::string::npos);
  auto cache = h.sched.check_admissible(30, 3);  // 33 tokens > 8 blocks * 4
  ASSERT_FALSE(cache.ok());
  EXPECT_NE(cache.error().message.find("whole cache holds 8 blocks"), std::string::npos);
  EXPECT_TRUE(h.sched.check_admissible(30, 2).ok());
  EXPECT_FALSE(h.sched.check_admissible(0, 2).ok());
}

TEST(Scheduler, SecondRequestWithSamePromptComputesOnlyTheUncachedTail) {
  Harness h(64, 4, sc(8, 64));
  h.add(prompt(18, 1), 1);
  while (h.sched.has_unfinished()) h.step();
  Request* again = h.add(prompt(18, 1), 1);
  auto out = h.step();
  ASSERT_EQ(out.seqs.size(), 1u);
  EXPECT_EQ(out.seqs[0].req, again);
  EXPECT_EQ(out.seqs[0].num_new_tokens, 2);  // 16 of 18 tokens were cached
  EXPECT_EQ(h.blocks.stats().prefix_hit_tokens, 16);
}

TEST(Scheduler, AbortReleasesBlocksInPrefillAndDecode) {
  Harness h(64, 4, sc(8, 8));
  Request* a = h.add(prompt(30, 1), 50);
  h.step();  // a is mid-prefill (8 of 30)
  EXPECT_TRUE(h.blocks.holds_blocks(a->seq));
  h.sched.remove(a);
  EXPECT_EQ(h.blocks.stats().blocks_used, 0);
  Request* b = h.add(prompt(3, 2), 50);
  for (int i = 0; i < 5; ++i) h.step();
  EXPECT_GT(b->num_output_tokens(), 1);
  h.sched.remove(b);
  EXPECT_EQ(h.blocks.stats().blocks_used, 0);
  EXPECT_FALSE(h.sched.has_unfinished());
  EXPECT_TRUE(h.blocks.check_invariants());
}

TEST(Scheduler, RandomWorkloadsAlwaysFinishUnderMemoryPressure) {
  int64_t preemptions = 0;
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    std::mt19937_64 rng(seed);
    const int n_blocks = 12 + int(rng() % 20), bs = 1 + int(rng() % 6);
    SchedulerConfig c = sc(1 + int(rng() % 6), 1 + int(rng() % 40), n_blocks * bs);
    c.max_chunk_tokens = int(rng() % 3) == 0 ? 3 : 0;
    Harness h(n_blocks, bs, c, rng() % 2 == 0);
    int added = 0;
    for (int step = 0; step < 5000 && (added < 40 || h.sched.has_unfinished()); ++step) {
      if (added < 40 && rng() % 3 == 0) {
        int max_tokens = 1 + int(rng() % 12);
        int len = 1 + int(rng() % std::max(1, n_blocks * bs - max_tokens));
        h.add(prompt(len, int(rng() % 4)), max_tokens, int(rng() % 3));
        ++added;
      }
      h.step();
    }
    EXPECT_EQ(h.finished, 40) << "seed " << seed;
    EXPECT_EQ(h.blocks.num_free_blocks(), n_blocks);
    for (const Request& r : h.reqs) EXPECT_EQ(r.num_output_tokens(), r.params->max_tokens);
    preemptions += h.sched.num_preemptions();
  }
  EXPECT_GT(preemptions, 10);
}

}  // namespace
}  // namespace kvserve

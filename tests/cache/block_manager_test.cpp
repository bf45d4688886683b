// Block manager: unit tests of each operation, and a randomized property test that
// simulates the KV contents every block holds and checks, after every operation, that
// ref counts match the block tables, no block is both free and used, shared blocks are
// never overwritten, and every prefix-cache hit holds exactly the requested context.
#include "cache/block_manager.h"

#include <gtest/gtest.h>

#include <random>
#include <unordered_map>

namespace kvserve {
namespace {

BlockManagerConfig cfg(int n_blocks, int bs = 4, bool caching = true, uint64_t mask = ~0ULL) {
  BlockManagerConfig c;
  c.n_blocks = n_blocks;
  c.block_size = bs;
  c.enable_prefix_caching = caching;
  c.hash_mask = mask;
  return c;
}

std::vector<int32_t> iota_tokens(int n, int start = 1) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[i] = start + i;
  return t;
}

TEST(BlockHashIndex, MatchesReferenceMapUnderRandomOps) {
  BlockHashIndex idx(64);
  std::unordered_map<uint64_t, int32_t> ref;
  std::mt19937_64 rng(7);
  for (int it = 0; it < 20000; ++it) {
    uint64_t h = rng() % 200;  // small key space: many collisions of home slots
    if (rng() % 2 && ref.size() < 64) {
      bool inserted = idx.insert(h, int32_t(h % 97));
      EXPECT_EQ(inserted, ref.emplace(h, int32_t(h % 97)).second);
    } else {
      auto it2 = ref.find(h);
      EXPECT_EQ(idx.erase(h, int32_t(h % 97)), it2 != ref.end());
      if (it2 != ref.end()) ref.erase(it2);
    }
    ASSERT_EQ(idx.size(), int(ref.size()));
  }
  for (uint64_t h = 0; h < 200; ++h) {
    auto it = ref.find(h);
    EXPECT_EQ(idx.find(h), it == ref.end() ? -1 : it->second);
  }
}

TEST(BlockManager, AllocatesOnDemandAndFreesEverything) {
  BlockManager bm(cfg(8));
  ASSERT_TRUE(bm.allocate_slots(0, 0, 5));  // 5 tokens -> 2 blocks of 4
  EXPECT_EQ(bm.block_table(0).size(), 2u);
  ASSERT_TRUE(bm.allocate_slots(0, 5, 3));  // 8 tokens: still 2 blocks
  EXPECT_EQ(bm.block_table(0).size(), 2u);
  ASSERT_TRUE(bm.allocate_slots(0, 8, 1));
  EXPECT_EQ(bm.block_table(0).size(), 3u);
  auto st = bm.stats();
  EXPECT_EQ(st.blocks_used, 3);
  EXPECT_EQ(st.slots_allocated, 12);
  EXPECT_EQ(st.slots_unused, 3);
  bm.free(0);
  EXPECT_EQ(bm.num_free_blocks(), 8);
  EXPECT_TRUE(bm.check_invariants());
}

TEST(BlockManager, FailedAllocationChangesNothing) {
  BlockManager bm(cfg(4));
  ASSERT_TRUE(bm.allocate_slots(0, 0, 12));  // 3 blocks
  EXPECT_EQ(bm.blocks_needed(1, 0, 8), 2);
  EXPECT_FALSE(bm.allocate_slots(1, 0, 8));
  EXPECT_FALSE(bm.holds_blocks(1));
  EXPECT_EQ(bm.num_free_blocks(), 1);
  EXPECT_FALSE(bm.allocate_slots(0, 12, 5));  // needs 2 more
  EXPECT_EQ(bm.block_table(0).size(), 3u);
  EXPECT_TRUE(bm.check_invariants());
}

TEST(BlockManager, PrefixHitReusesFullBlocksAndLeavesOneTokenToCompute) {
  BlockManager bm(cfg(16));
  auto toks = iota_tokens(12);
  ASSERT_TRUE(bm.allocate_slots(0, 0, 12));
  bm.cache_blocks(0, toks, 12);
  PrefixMatch m;
  bm.match_prefix(toks, m);  // 12 tokens = 3 full blocks, but the last token must be computed
  EXPECT_EQ(m.num_tokens, 8);
  auto longer = iota_tokens(14);
  bm.match_prefix(longer, m);
  ASSERT_EQ(m.num_tokens, 12);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(m.blocks[i], bm.block_table(0)[i]);
  ASSERT_TRUE(bm.allocate_slots(1, 12, 2, &m));
  EXPECT_EQ(bm.pool().ref_count(m.blocks[0]), 2);
  EXPECT_EQ(bm.block_table(1).size(), 4u);
  EXPECT_EQ(bm.stats().prefix_hit_tokens, 12);
  // A different token in block 1 stops the match after block 0.
  longer[5] = 99;
  bm.match_prefix(longer, m);
  EXPECT_EQ(m.num_tokens, 4);
  bm.free(0);
  bm.free(1);
  EXPECT_TRUE(bm.check_invariants());
}

TEST(BlockManager, FreedBlocksStayCachedAndAreEvictedLeastRecentlyUsedFirst) {
  BlockManager bm(cfg(4));
  auto a = iota_tokens(9, 100), b = iota_tokens(9, 200);
  ASSERT_TRUE(bm.allocate_slots(0, 0, 8));
  bm.cache_blocks(0, a, 8);
  bm.free(0);
  EXPECT_EQ(bm.stats().blocks_cached, 2);
  ASSERT_TRUE(bm.allocate_slots(1, 0, 8));  // takes the 2 never-cached blocks first
  bm.cache_blocks(1, b, 8);
  bm.free(1);
  PrefixMatch m;
  bm.match_prefix(b, m);
  EXPECT_EQ(m.num_tokens, 8);
  bm.match_prefix(a, m);
  EXPECT_EQ(m.num_tokens, 8);                   // a survived
  ASSERT_TRUE(bm.allocate_slots(2, 8, 0, &m));  // revive a: it becomes the most recently used
  bm.free(2);
  ASSERT_TRUE(bm.allocate_slots(3, 0, 4));  // evicts b's last block first...
  bm.match_prefix(b, m);
  EXPECT_EQ(m.num_tokens, 4);  // ...so b keeps its usable beginning
  bm.match_prefix(a, m);
  EXPECT_EQ(m.num_tokens, 8);
  ASSERT_TRUE(bm.allocate_slots(3, 4, 4));
  bm.match_prefix(b, m);
  EXPECT_EQ(m.num_tokens, 0);
  bm.match_prefix(a, m);
  EXPECT_EQ(m.num_tokens, 8);
  bm.free(3);
  EXPECT_TRUE(bm.check_invariants());
}

TEST(BlockManager, ForkSharesBlocksAndCopiesOnWrite) {
  BlockManager bm(cfg(8));
  ASSERT_TRUE(bm.allocate_slots(0, 0, 6));  // block 0 full, block 1 half
  bm.cache_blocks(0, iota_tokens(6), 6);
  bm.fork(0, 1);
  bm.fork(0, 2);
  auto t0 = bm.block_table(0);
  EXPECT_EQ(bm.pool().ref_count(t0[1]), 3);
  int32_t shared_tail = t0[1];
  // Writing position 6 of seq 1 lands in the shared partial block: copy it.
  EXPECT_EQ(bm.blocks_needed(1, 6, 1), 1);
  ASSERT_TRUE(bm.allocate_slots(1, 6, 1));
  ASSERT_EQ(bm.pending_copies().size(), 1u);
  EXPECT_EQ(bm.pending_copies()[0].src, shared_tail);
  EXPECT_EQ(bm.pending_copies()[0].dst, bm.block_table(1)[1]);
  EXPECT_EQ(bm.block_table(1)[0], bm.block_table(0)[0]);  // full block still shared
  EXPECT_EQ(bm.pool().ref_count(shared_tail), 2);
  bm.clear_pending_copies();
  ASSERT_TRUE(bm.allocate_slots(2, 6, 1));
  ASSERT_TRUE(bm.allocate_slots(0, 6, 1));  // the last holder writes in place
  EXPECT_EQ(bm.pending_copies().size(), 1u);
  EXPECT_EQ(bm.block_table(0)[1], shared_tail);
  for (SeqId s : {0, 1, 2}) bm.free(s);
  EXPECT_EQ(bm.num_free_blocks(), 8);
  EXPECT_TRUE(bm.check_invariants());
}

TEST(BlockManager, CollidingHashesAreRejectedByTokenAndParentChecks) {
  // Mask the hash down to 2 bits: almost every lookup collides.
  BlockManager bm(cfg(32, 4, true, 0x3));
  std::mt19937 rng(3);
  std::vector<std::vector<int32_t>> prompts;
  for (SeqId s = 0; s < 6; ++s) {
    std::vector<int32_t> t(13);
    for (auto& x : t) x = int32_t(rng() % 3);
    ASSERT_TRUE(bm.allocate_slots(s, 0, 13));
    bm.cache_blocks(s, t, 13);
    prompts.push_back(t);
  }
  PrefixMatch m;
  // Positive control: a cached prompt finds its own blocks, as far as they were indexed
  // (a colliding later block is not indexed: the first holder of a hash keeps it).
  int controls_hit = 0;
  for (SeqId s = 0; s < 6; ++s) {
    auto tab = bm.block_table(s);
    int indexed = 0;
    while (indexed < 3 && bm.pool().is_hashed(tab[size_t(indexed)])) ++indexed;
    bm.match_prefix(prompts[size_t(s)], m);
    EXPECT_GE(m.num_tokens, 4 * indexed) << "cached prompt " << s;
    controls_hit += m.num_tokens > 0;
  }
  EXPECT_GE(controls_hit, 1);  // the first prompt's first block was indexed before any collision
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<int32_t> q(13);
    for (auto& x : q) x = int32_t(rng() % 3);
    bm.match_prefix(q, m);
    // Every matched block must belong to some sequence whose tokens agree on the whole prefix.
    for (size_t i = 0; i < m.blocks.size(); ++i) {
      bool ok = false;
      for (SeqId s = 0; s < 6; ++s) {
        auto tab = bm.block_table(s);
        if (i < tab.size() && tab[i] == m.blocks[i] &&
            std::equal(q.begin(), q.begin() + 4 * (i + 1), prompts[s].begin()))
          ok = true;
      }
      EXPECT_TRUE(ok) << "trial " << trial << " block " << i;
    }
  }
}

TEST(BlockManager, TrimFreesWhollyUnusedTailBlocksAndKeepsThePartialOne) {
  BlockManager bm(cfg(16));
  ASSERT_TRUE(bm.allocate_slots(0, 0, 6));  // 2 blocks
  // A speculative step: 1 + 8 tokens at positions 6..14 -> 4 blocks.
  ASSERT_TRUE(bm.allocate_slots(0, 6, 9));
  ASSERT_EQ(bm.block_table(0).size(), 4u);
  const std::vector<int32_t> before(bm.block_table(0).begin(), bm.block_table(0).end());
  EXPECT_EQ(bm.num_free_blocks(), 12);
  EXPECT_EQ(bm.stats().slots_unused, 1);
  // Two drafts accepted: 9 tokens remain; block 2 holds position 8 and stays.
  bm.trim(0, 9);
  ASSERT_EQ(bm.block_table(0).size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(bm.block_table(0)[i], before[i]);
  EXPECT_EQ(bm.num_free_blocks(), 13);
  EXPECT_TRUE(bm.pool().is_free(before[3]));
  EXPECT_FALSE(bm.pool().is_free(before[2]));
  auto st = bm.stats();
  EXPECT_EQ(st.blocks_used, 3);
  EXPECT_EQ(st.slots_allocated, 12);
  EXPECT_EQ(st.slots_unused, 3);
  EXPECT_TRUE(bm.check_invariants());
  bm.trim(0, 9);  // idempotent
  EXPECT_EQ(bm.num_free_blocks(), 13);
  EXPECT_EQ(bm.stats().slots_unused, 3);
  bm.trim(0, 8);  // exactly two full blocks
  EXPECT_EQ(bm.block_table(0).size(), 2u);
  EXPECT_EQ(bm.num_free_blocks(), 14);
  EXPECT_EQ(bm.stats().slots_unused, 0);
  bm.trim(0, 20);  // past the end: nothing to free, nothing grows
  EXPECT_EQ(bm.block_table(0).size(), 2u);
  EXPECT_EQ(bm.stats().slots_unused, 0);
  EXPECT_TRUE(bm.check_invariants());
  // The sequence grows again from where it was trimmed.
  EXPECT_EQ(bm.blocks_needed(0, 8, 1), 1);
  ASSERT_TRUE(bm.allocate_slots(0, 8, 1));
  EXPECT_EQ(bm.block_table(0).size(), 3u);
  EXPECT_EQ(bm.stats().slots_unused, 3);
  bm.trim(0, 0);
  EXPECT_FALSE(bm.holds_blocks(0));
  EXPECT_EQ(bm.stats().slots_allocated, 0);
  bm.trim(7, 0);  // a sequence never seen: nothing happens
  EXPECT_EQ(bm.num_free_blocks(), 16);
  EXPECT_TRUE(bm.check_invariants());
}

TEST(BlockManager, TreeLanesCopyTheVerifiedSlotsAndTheAdoptedLaneReplacesTheTail) {
  BlockManager bm(cfg(16));
  ASSERT_TRUE(bm.allocate_slots(0, 0, 6));  // verified positions 0..5: blocks A B
  bm.clear_pending_copies();
  // A tree of depth 3 from position 6: positions 6..9, so the table covers 3 blocks.
  ASSERT_TRUE(bm.allocate_slots(0, 6, 4));
  const std::vector<int32_t> own(bm.block_table(0).begin(), bm.block_table(0).end());
  ASSERT_EQ(own.size(), 3u);
  EXPECT_EQ(bm.num_free_blocks(), 13);
  // Three more lanes: each shares block 0 and has its own blocks 1 and 2, block 1 a copy.
  ASSERT_TRUE(bm.allocate_lanes(0, 6, 3));
  EXPECT_EQ(bm.num_free_blocks(), 7);
  const std::vector<int32_t> lanes(bm.lane_tables(0).begin(), bm.lane_tables(0).end());
  ASSERT_EQ(lanes.size(), 9u);
  ASSERT_EQ(bm.pending_copies().size(), 3u);
  for (int w = 0; w < 3; ++w) {
    EXPECT_EQ(lanes[size_t(w * 3)], own[0]);
    EXPECT_EQ(bm.pending_copies()[size_t(w)].src, own[1]);
    EXPECT_EQ(bm.pending_copies()[size_t(w)].dst, lanes[size_t(w * 3 + 1)]);
    EXPECT_NE(lanes[size_t(w * 3 + 2)], own[2]);
  }
  EXPECT_TRUE(bm.check_invariants());
  bm.clear_pending_copies();
  // Not enough blocks for 4 more lanes' 2 blocks each on top (7 free): nothing changes.
  BlockManager small(cfg(6));
  ASSERT_TRUE(small.allocate_slots(0, 0, 10));  // 3 blocks
  EXPECT_FALSE(small.allocate_lanes(0, 6, 2));  // needs 4, 3 free
  EXPECT_EQ(small.num_free_blocks(), 3);
  EXPECT_TRUE(small.lane_tables(0).empty());
  EXPECT_TRUE(small.pending_copies().empty());

  // Lane 2 (the second extra lane) wins: its blocks become the sequence's from block 1.
  bm.adopt_lane(0, 2);
  EXPECT_EQ(bm.block_table(0)[0], own[0]);
  EXPECT_EQ(bm.block_table(0)[1], lanes[4]);
  EXPECT_EQ(bm.block_table(0)[2], lanes[5]);
  EXPECT_TRUE(bm.lane_tables(0).empty());
  EXPECT_EQ(bm.num_free_blocks(), 13);
  EXPECT_TRUE(bm.pool().is_free(own[1]));
  EXPECT_TRUE(bm.check_invariants());
  // Two tokens kept (positions 6, 7): the block past them goes.
  bm.trim(0, 8);
  EXPECT_EQ(bm.num_free_blocks(), 14);

  // Block-aligned start: no copies; lane 0 kept; freeing also releases lanes.
  ASSERT_TRUE(bm.allocate_slots(0, 8, 2));
  ASSERT_TRUE(bm.allocate_lanes(0, 8, 2));
  EXPECT_TRUE(bm.pending_copies().empty());
  EXPECT_EQ(bm.num_free_blocks(), 11);
  bm.adopt_lane(0, 0);
  EXPECT_EQ(bm.num_free_blocks(), 13);
  ASSERT_TRUE(bm.allocate_lanes(0, 8, 1));
  bm.free(0);
  EXPECT_EQ(bm.num_free_blocks(), 16);
  EXPECT_TRUE(bm.check_invariants());
}

TEST(BlockManager, AdoptedLaneKeepsTheCachedBlockTheRootFilled) {
  BlockManager bm(cfg(16));
  const std::vector<int32_t> tokens = iota_tokens(8);
  ASSERT_TRUE(bm.allocate_slots(0, 0, 7));  // positions 0..6 verified
  // The tree's root at position 7 fills block 1; nodes at 8, 9 go to block 2.
  ASSERT_TRUE(bm.allocate_slots(0, 7, 3));
  ASSERT_TRUE(bm.allocate_lanes(0, 7, 1));
  const int32_t cached = bm.block_table(0)[1], lane_first = bm.lane_tables(0)[1],
                lane_next = bm.lane_tables(0)[2];
  bm.cache_blocks(0, tokens, 8);  // the step committed the root: block 1 is full and cached
  ASSERT_TRUE(bm.pool().is_hashed(cached));
  bm.adopt_lane(0, 1);
  EXPECT_EQ(bm.block_table(0)[1], cached);     // still the cached one
  EXPECT_EQ(bm.block_table(0)[2], lane_next);  // the lane's beyond it
  EXPECT_TRUE(bm.pool().is_free(lane_first));
  EXPECT_TRUE(bm.check_invariants());
  bm.free(0);
  EXPECT_EQ(bm.num_free_blocks(), 16);
}

TEST(BlockManager, TrimKeepsCachedFullBlocks) {
  BlockManager bm(cfg(16));
  auto toks = iota_tokens(16);
  ASSERT_TRUE(bm.allocate_slots(0, 0, 10));
  bm.cache_blocks(0, toks, 10);              // blocks 0 and 1 are hashed
  ASSERT_TRUE(bm.allocate_slots(0, 10, 5));  // 1 + 4 drafts -> 4 blocks
  const std::vector<int32_t> before(bm.block_table(0).begin(), bm.block_table(0).end());
  bm.trim(0, 11);
  ASSERT_EQ(bm.block_table(0).size(), 3u);
  EXPECT_TRUE(bm.pool().is_hashed(before[0]));
  EXPECT_TRUE(bm.pool().is_hashed(before[1]));
  EXPECT_EQ(bm.pool().ref_count(before[0]), 1);
  EXPECT_EQ(bm.pool().ref_count(before[1]), 1);
  EXPECT_EQ(bm.num_free_blocks(), 13);
  EXPECT_EQ(bm.stats().slots_unused, 1);
  EXPECT_TRUE(bm.check_invariants());
  // Down to exactly the cached blocks: they stay, and stay findable.
  bm.trim(0, 8);
  ASSERT_EQ(bm.block_table(0).size(), 2u);
  EXPECT_EQ(bm.block_table(0)[0], before[0]);
  EXPECT_EQ(bm.block_table(0)[1], before[1]);
  PrefixMatch m;
  bm.match_prefix(toks, m);
  ASSERT_EQ(m.num_tokens, 8);
  EXPECT_EQ(m.blocks[0], before[0]);
  EXPECT_EQ(m.blocks[1], before[1]);
  // Caching continues past the trim point with the blocks allocated afterwards.
  ASSERT_TRUE(bm.allocate_slots(0, 8, 5));
  bm.cache_blocks(0, toks, 13);
  bm.match_prefix(toks, m);
  EXPECT_EQ(m.num_tokens, 12);
  EXPECT_TRUE(bm.check_invariants());
  bm.free(0);
  EXPECT_EQ(bm.num_free_blocks(), 16);
  EXPECT_EQ(bm.stats().blocks_cached, 3);
  EXPECT_TRUE(bm.check_invariants());
}

TEST(BlockManager, TrimOfAForkedSequenceReleasesOnlyItsOwnReferences) {
  BlockManager bm(cfg(16));
  ASSERT_TRUE(bm.allocate_slots(0, 0, 12));  // 3 full blocks, not cached
  bm.fork(0, 1);
  const std::vector<int32_t> parent(bm.block_table(0).begin(), bm.block_table(0).end());
  bm.trim(1, 5);  // the child drops block 2; the parent still holds it
  EXPECT_EQ(bm.block_table(1).size(), 2u);
  EXPECT_EQ(bm.pool().ref_count(parent[2]), 1);
  EXPECT_EQ(bm.pool().ref_count(parent[1]), 2);
  EXPECT_EQ(bm.num_free_blocks(), 13);
  EXPECT_TRUE(bm.check_invariants());
  // The child writes position 5 in the shared block 1: copy-on-write, then drafts.
  ASSERT_TRUE(bm.allocate_slots(1, 5, 7));  // 12 tokens -> 3 blocks, block 1 copied
  ASSERT_EQ(bm.pending_copies().size(), 1u);
  EXPECT_EQ(bm.pending_copies()[0].src, parent[1]);
  bm.clear_pending_copies();
  EXPECT_NE(bm.block_table(1)[1], parent[1]);
  EXPECT_EQ(bm.num_free_blocks(), 11);
  bm.trim(1, 6);
  EXPECT_EQ(bm.block_table(1).size(), 2u);
  EXPECT_EQ(bm.num_free_blocks(), 12);
  EXPECT_EQ(bm.block_table(0).size(), 3u);
  for (int32_t b : parent) EXPECT_EQ(bm.pool().ref_count(b), b == parent[0] ? 2 : 1);
  auto st = bm.stats();
  EXPECT_EQ(st.slots_allocated, 12 + 8);
  EXPECT_EQ(st.slots_unused, 0 + 2);
  EXPECT_TRUE(bm.check_invariants());
  bm.free(0);
  bm.free(1);
  EXPECT_EQ(bm.num_free_blocks(), 16);
  EXPECT_TRUE(bm.check_invariants());
}

// Gemma-style groups: one full-attention group and one with a window of 6 keys, blocks
// of 4. Decoding releases the window group's blocks once no later token can read them;
// the full group keeps everything.
TEST(BlockManager, SlidingWindowGroupReleasesBlocksBehindTheWindow) {
  BlockManagerConfig c = cfg(40, 4);
  c.group_windows = {0, 6};
  BlockManager bm(c);
  ASSERT_TRUE(bm.allocate_slots(0, 0, 10));  // positions 0..9: 3 blocks in each group
  EXPECT_EQ(bm.table_width(0), 3);
  EXPECT_EQ(bm.num_free_blocks(), 40 - 6);
  // The token at 10 reads keys 5..10: block 0 (keys 0..3) of the window group goes.
  ASSERT_TRUE(bm.allocate_slots(0, 10, 1));
  auto t = bm.block_table(0);
  ASSERT_EQ(t.size(), 6u);
  EXPECT_NE(t[0], kNoBlock);  // full group: every block
  EXPECT_EQ(t[3], kNoBlock);  // window group: block 0 released
  EXPECT_NE(t[4], kNoBlock);
  EXPECT_EQ(bm.num_free_blocks(), 40 - 5);
  ASSERT_TRUE(bm.allocate_slots(0, 11, 5));  // a chunk: its first token still reads key 6
  EXPECT_EQ(bm.num_free_blocks(), 40 - 4 - 3);
  // The token at 16 reads keys 11..16: block 2 (keys 8..11) stays, block 1 goes.
  ASSERT_TRUE(bm.allocate_slots(0, 16, 1));
  EXPECT_EQ(bm.num_free_blocks(), 40 - 5 - 3);
  t = bm.block_table(0);
  ASSERT_EQ(t.size(), 10u);  // 5 blocks per group
  EXPECT_EQ(t[5], kNoBlock);
  EXPECT_EQ(t[6], kNoBlock);
  EXPECT_NE(t[7], kNoBlock);
  EXPECT_TRUE(bm.check_invariants());
  // A sequence of 1,000 tokens computed 64 at a time holds every block of the full group
  // and at most the window's and a step's in the other.
  EXPECT_EQ(bm.max_blocks_held(1000, 64), 250 + (bm.blocks_for(6 - 1 + 64) + 1));
  bm.free(0);
  EXPECT_EQ(bm.num_free_blocks(), 40);
  EXPECT_TRUE(bm.check_invariants());
}

// ---- randomized property test ----

struct SimSeq {
  SeqId id = -1;
  std::vector<int32_t> tokens;  // all tokens the sequence will have
  int computed = 0;
};

// Fingerprint of the context that produced the KV at position p: a hash of tokens[0..p].
std::vector<uint64_t> fingerprints(const std::vector<int32_t>& t) {
  std::vector<uint64_t> f(t.size());
  uint64_t h = 1;
  for (size_t i = 0; i < t.size(); ++i) f[i] = h = mix64(h * 31 + uint64_t(t[i]) + 7);
  return f;
}

// KV groups in the simulation: group g's copy of position p holds fingerprint ^ salt(g),
// so a block handed to the wrong group is caught like one holding the wrong context.
uint64_t salt(int g) {
  return uint64_t(g) * 0x9e3779b97f4a7c15ULL;
}
// The first position a group still needs once `computed` tokens are computed.
int first_key(int window, int computed) {
  return window > 0 ? std::max(0, computed - window + 1) : 0;
}

void run_property(uint64_t seed, bool caching, uint64_t mask, std::vector<int> windows = {0}) {
  const int n_blocks = 48 * int(windows.size()), bs = 4, G = int(windows.size());
  BlockManagerConfig config = cfg(n_blocks, bs, caching, mask);
  config.group_windows = windows;
  BlockManager bm(config);
  std::vector<uint64_t> kv(size_t(n_blocks) * bs, 0);  // simulated KV: fingerprint per slot
  std::mt19937_64 rng(seed);
  std::vector<SimSeq> live;
  std::vector<std::vector<int32_t>> prompt_pool;  // earlier prompts, to create shared prefixes
  SeqId next_id = 0;
  int64_t hits = 0, released = 0;

  // Every position a group still needs holds this context's KV.
  auto check_seq = [&](const SimSeq& s) {
    auto fp = fingerprints(s.tokens);
    auto tab = bm.block_table(s.id);
    const int width = bm.table_width(s.id);
    ASSERT_EQ(tab.size(), size_t(G) * size_t(width));
    for (int g = 0; g < G; ++g)
      for (int p = first_key(windows[size_t(g)], s.computed); p < s.computed; ++p)
        ASSERT_EQ(kv[size_t(tab[size_t(g * width + p / bs)]) * bs + p % bs], fp[p] ^ salt(g))
            << "seq " << s.id << " group " << g << " pos " << p;
  };
  auto compute = [&](SimSeq& s, int n) -> bool {
    if (!bm.allocate_slots(s.id, s.computed, n)) return false;
    for (const BlockCopy& c : bm.pending_copies())
      std::copy_n(kv.begin() + size_t(c.src) * bs, bs, kv.begin() + size_t(c.dst) * bs);
    bm.clear_pending_copies();
    auto fp = fingerprints(s.tokens);
    auto tab = bm.block_table(s.id);
    const int width = bm.table_width(s.id);
    for (int g = 0; g < G; ++g) {
      // A window's blocks wholly before the first key still needed are released.
      for (int b = 0; b < width; ++b) {
        const bool needed = (b + 1) * bs > first_key(windows[size_t(g)], s.computed);
        EXPECT_EQ(tab[size_t(g * width + b)] != kNoBlock, needed) << "group " << g << " block " << b;
        released += !needed;
      }
      for (int p = s.computed; p < s.computed + n; ++p) {
        // The written block must be owned by this sequence alone.
        const int32_t id = tab[size_t(g * width + p / bs)];
        EXPECT_EQ(bm.pool().ref_count(id), 1);
        kv[size_t(id) * bs + p % bs] = fp[p] ^ salt(g);
      }
    }
    s.computed += n;
    bm.cache_blocks(s.id, s.tokens, s.computed);
    return true;
  };
  auto release = [&](size_t i) {
    bm.free(live[i].id);
    live.erase(live.begin() + long(i));
  };

  for (int step = 0; step < 3000; ++step) {
    int op = int(rng() % 10);
    if (op < 3 && live.size() < 12) {  // new sequence, maybe sharing a prefix
      SimSeq s;
      s.id = next_id++;
      int len = 1 + int(rng() % 30);
      if (!prompt_pool.empty() && rng() % 2) {
        const auto& base = prompt_pool[rng() % prompt_pool.size()];
        int keep = int(rng() % (base.size() + 1));
        s.tokens.assign(base.begin(), base.begin() + keep);
      }
      while (int(s.tokens.size()) < len) s.tokens.push_back(int32_t(rng() % 5));
      PrefixMatch m;
      bm.match_prefix(s.tokens, m);
      ASSERT_LT(m.num_tokens, int(s.tokens.size()));
      // Every hit holds the KV of exactly this context, and covers what each window needs.
      auto fp = fingerprints(s.tokens);
      const int n_hit = m.num_tokens / bs;
      ASSERT_EQ(m.blocks.size(), size_t(G) * size_t(n_hit));
      for (int g = 0; g < G; ++g)
        for (int b = 0; b < n_hit; ++b) {
          const int32_t id = m.blocks[size_t(g * n_hit + b)];
          ASSERT_EQ(id != kNoBlock, (b + 1) * bs > first_key(windows[size_t(g)], m.num_tokens));
          for (int j = 0; id != kNoBlock && j < bs; ++j)
            ASSERT_EQ(kv[size_t(id) * bs + j], fp[b * bs + j] ^ salt(g));
        }
      int n = std::min<int>(int(s.tokens.size()) - m.num_tokens, 1 + int(rng() % 8));
      if (!bm.allocate_slots(s.id, m.num_tokens, 0, &m)) continue;
      hits += m.num_tokens;
      s.computed = m.num_tokens;
      prompt_pool.push_back(s.tokens);
      live.push_back(s);
      if (!compute(live.back(), n)) release(live.size() - 1);
    } else if (op < 7 && !live.empty()) {  // append: prefill chunk or decode token
      size_t i = rng() % live.size();
      SimSeq& s = live[i];
      if (s.computed == int(s.tokens.size())) s.tokens.push_back(int32_t(rng() % 5));  // decode
      int n = std::min<int>(int(s.tokens.size()) - s.computed, 1 + int(rng() % 6));
      if (!compute(s, n)) release(rng() % live.size());        // out of memory: preempt someone
    } else if (op < 8 && !live.empty() && live.size() < 12) {  // fork a fully computed sequence
      size_t i = rng() % live.size();
      if (live[i].computed != int(live[i].tokens.size())) continue;
      SimSeq c = live[i];
      c.id = next_id++;
      bm.fork(live[i].id, c.id);
      live.push_back(c);
    } else if (!live.empty()) {  // finish or abort
      release(rng() % live.size());
    }
    ASSERT_TRUE(bm.check_invariants()) << "step " << step;
    for (const SimSeq& s : live) check_seq(s);
    auto st = bm.stats();
    ASSERT_EQ(st.blocks_used + st.blocks_free, n_blocks);
    ASSERT_LE(st.blocks_cached, st.blocks_free);
  }
  while (!live.empty()) release(live.size() - 1);
  EXPECT_TRUE(bm.check_invariants());
  EXPECT_EQ(bm.num_free_blocks(), n_blocks);
  EXPECT_EQ(bm.stats().blocks_used, 0);
  // Under colliding hashes too: the token and parent checks must reject only false
  // matches, not every match.
  if (caching) {
    EXPECT_GT(hits, 0);
  } else {
    EXPECT_EQ(hits, 0);
  }
  // Sequences outgrew the windows, so blocks were released.
  if (std::any_of(windows.begin(), windows.end(), [](int w) { return w > 0; })) {
    EXPECT_GT(released, 0);
  }
}

TEST(BlockManagerProperty, RandomOpsWithPrefixCaching) {
  for (uint64_t seed = 1; seed <= 6; ++seed) run_property(seed, true, ~0ULL);
}
TEST(BlockManagerProperty, RandomOpsWithHashCollisions) {
  for (uint64_t seed = 1; seed <= 6; ++seed) run_property(seed, true, 0x7);
}
TEST(BlockManagerProperty, RandomOpsWithoutPrefixCaching) {
  for (uint64_t seed = 1; seed <= 3; ++seed) run_property(seed, false, ~0ULL);
}
// Hybrid models: a full-attention group and sliding-window groups (Gemma 3), one group
// that slides (Mistral), windows shorter and longer than a block.
TEST(BlockManagerProperty, RandomOpsWithSlidingWindowGroups) {
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    run_property(seed, true, ~0ULL, {0, 6, 6});
    run_property(seed, true, ~0ULL, {9});
    run_property(seed, true, 0x7, {0, 3});
    run_property(seed, false, ~0ULL, {0, 6});
    run_property(seed, true, ~0ULL, {13, 5});
  }
}

// Speculative decoding cycles: each decode step allocates 1 + D slots, writes the KV of
// the drafted tokens (garbage past the first wrong draft), keeps the accepted ones and
// trims the rest; sequences also roll back to a cached boundary, fork, and finish. After
// every operation the tables cover exactly the computed tokens, the KV of every computed
// token is intact (a trimmed block handed to someone else would break this), and the
// statistics agree.
void run_trim_property(uint64_t seed, bool caching, uint64_t mask, std::vector<int> windows = {0}) {
  const int G = int(windows.size()), n_blocks = 40 * G, bs = 4;
  BlockManagerConfig config = cfg(n_blocks, bs, caching, mask);
  config.group_windows = windows;
  BlockManager bm(config);
  std::vector<uint64_t> kv(size_t(n_blocks) * bs, 0);
  std::mt19937_64 rng(seed);
  std::vector<SimSeq> live;
  std::vector<std::vector<int32_t>> prompt_pool;
  SeqId next_id = 0;
  int64_t trimmed_blocks = 0, accepted = 0, rejected = 0;

  auto release = [&](size_t i) {
    bm.free(live[i].id);
    live.erase(live.begin() + long(i));
  };
  // Allocates and writes positions [computed, computed + n) of s; the KV of position
  // p >= s.computed + good is garbage (a rejected draft's).
  auto write = [&](SimSeq& s, int n, int good) -> bool {
    if (!bm.allocate_slots(s.id, s.computed, n)) return false;
    for (const BlockCopy& c : bm.pending_copies())
      std::copy_n(kv.begin() + size_t(c.src) * bs, bs, kv.begin() + size_t(c.dst) * bs);
    bm.clear_pending_copies();
    auto fp = fingerprints(s.tokens);
    auto tab = bm.block_table(s.id);
    const int width = bm.table_width(s.id);
    for (int g = 0; g < G; ++g)
      for (int p = s.computed; p < s.computed + n; ++p) {
        const int32_t id = tab[size_t(g * width + p / bs)];
        EXPECT_EQ(bm.pool().ref_count(id), 1);
        kv[size_t(id) * bs + p % bs] =
            p < s.computed + good ? fp[size_t(p)] ^ salt(g) : (rng() | (1ULL << 63));
      }
    return true;
  };
  auto set_computed = [&](SimSeq& s, int computed) {
    const int free_before = bm.num_free_blocks();
    const int held = int(bm.block_table(s.id).size());
    s.computed = computed;
    bm.trim(s.id, computed);
    trimmed_blocks += (held - int(bm.block_table(s.id).size())) / G;
    // A trimmed block is freed unless another sequence still shares it.
    EXPECT_LE(bm.num_free_blocks() - free_before, held - int(bm.block_table(s.id).size()));
    bm.cache_blocks(s.id, s.tokens, s.computed);
  };

  for (int step = 0; step < 2500; ++step) {
    const int op = int(rng() % 12);
    if (op < 2 && live.size() < 10) {  // admit, maybe sharing a cached prefix
      SimSeq s;
      s.id = next_id++;
      const int len = 1 + int(rng() % 24);
      if (!prompt_pool.empty() && rng() % 2) {
        const auto& base = prompt_pool[rng() % prompt_pool.size()];
        s.tokens.assign(base.begin(), base.begin() + long(rng() % (base.size() + 1)));
      }
      while (int(s.tokens.size()) < len) s.tokens.push_back(int32_t(rng() % 5));
      PrefixMatch m;
      bm.match_prefix(s.tokens, m);
      if (!bm.allocate_slots(s.id, m.num_tokens, 0, &m)) continue;
      s.computed = m.num_tokens;
      prompt_pool.push_back(s.tokens);
      const int n = int(s.tokens.size()) - s.computed;  // the whole prompt
      live.push_back(s);
      if (!write(live.back(), n, n)) {
        release(live.size() - 1);
        continue;
      }
      set_computed(live.back(), live.back().computed + n);
    } else if (op < 8 && !live.empty()) {  // a speculative decode step
      SimSeq& s = live[rng() % live.size()];
      if (s.computed == int(s.tokens.size())) s.tokens.push_back(int32_t(rng() % 5));  // sampled
      const int c = s.computed, d = int(rng() % 7);
      // The true future; the proposer guesses it right 70% of the time per token.
      while (int(s.tokens.size()) < c + 1 + d) s.tokens.push_back(int32_t(rng() % 5));
      int a = 0;
      while (a < d && rng() % 10 < 7) ++a;
      if (!write(s, 1 + d, 1 + a)) {
        release(rng() % live.size());  // out of memory: preempt someone
        continue;
      }
      accepted += a;
      rejected += d - a;
      set_computed(s, c + 1 + a);
    } else if (op < 9 && !live.empty() && windows == std::vector<int>{0}) {
      // Roll back to no earlier than the cached blocks (not with windows: a window may have
      // released the keys the earlier position needs; the engine never rolls back).
      SimSeq& s = live[rng() % live.size()];
      const int floor = caching ? s.computed / bs * bs : 0;
      set_computed(s, std::max(floor, s.computed - int(rng() % 6)));
    } else if (op < 10 && !live.empty() && live.size() < 10) {  // fork
      SimSeq c = live[rng() % live.size()];
      const SeqId parent = c.id;
      c.id = next_id++;
      bm.fork(parent, c.id);
      live.push_back(c);
    } else if (!live.empty()) {
      release(rng() % live.size());
    }
    ASSERT_TRUE(bm.check_invariants()) << "step " << step;
    int64_t allocated = 0, unused = 0;
    for (const SimSeq& s : live) {
      auto tab = bm.block_table(s.id);
      const int width = bm.table_width(s.id);
      ASSERT_EQ(width, bm.blocks_for(s.computed)) << "step " << step << " seq " << s.id;
      auto fp = fingerprints(s.tokens);
      for (int g = 0; g < G; ++g) {
        for (int p = first_key(windows[size_t(g)], s.computed); p < s.computed; ++p)
          ASSERT_EQ(kv[size_t(tab[size_t(g * width + p / bs)]) * bs + p % bs], fp[size_t(p)] ^ salt(g))
              << "step " << step << " group " << g << " pos " << p;
        int held = 0;
        for (int b = 0; b < width; ++b) held += tab[size_t(g * width + b)] != kNoBlock;
        allocated += int64_t(held) * bs;
        unused += int64_t(held) * bs - (s.computed - int64_t(width - held) * bs);
      }
    }
    auto st = bm.stats();
    ASSERT_EQ(st.slots_allocated, allocated) << "step " << step;
    ASSERT_EQ(st.slots_unused, unused) << "step " << step;
    ASSERT_EQ(st.blocks_used + st.blocks_free, n_blocks);
  }
  while (!live.empty()) release(live.size() - 1);
  EXPECT_TRUE(bm.check_invariants());
  EXPECT_EQ(bm.num_free_blocks(), n_blocks);
  EXPECT_EQ(bm.stats().blocks_used, 0);
  EXPECT_EQ(bm.stats().slots_allocated, 0);
  // The cycles did exercise trimming.
  EXPECT_GT(trimmed_blocks, 0);
  EXPECT_GT(accepted, 0);
  EXPECT_GT(rejected, 0);
}

TEST(BlockManagerProperty, SpeculativeTrimCyclesWithPrefixCaching) {
  for (uint64_t seed = 1; seed <= 5; ++seed) run_trim_property(seed, true, ~0ULL);
}
TEST(BlockManagerProperty, SpeculativeTrimCyclesWithHashCollisions) {
  for (uint64_t seed = 1; seed <= 3; ++seed) run_trim_property(seed, true, 0x7);
}
TEST(BlockManagerProperty, SpeculativeTrimCyclesWithoutPrefixCaching) {
  for (uint64_t seed = 1; seed <= 3; ++seed) run_trim_property(seed, false, ~0ULL);
}
TEST(BlockManagerProperty, SpeculativeTrimCyclesWithSlidingWindowGroups) {
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    run_trim_property(seed, true, ~0ULL, {0, 6, 6});
    run_trim_property(seed, true, 0x7, {7});
    run_trim_property(seed, false, ~0ULL, {0, 3});
  }
}

}  // namespace
}  // namespace kvserve

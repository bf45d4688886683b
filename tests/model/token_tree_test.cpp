// Token-tree verification in the runner (speculative decoding): every node of a tree run
// in one forward must get the very logits (same bits) as its root-to-node path run as a
// plain chain, and the lane of the chosen path must hold K/V that a later decode reads
// exactly as it reads the chain's.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "model_test_util.h"

namespace kvserve {
namespace {

constexpr int kBlock = 4;

// Root R and seven draft nodes in preorder, four lanes (root-to-leaf paths):
//   R ─ a ─ b ─ c        lane 0
//   ├ d ─ e              lane 1
//   │   └ f              lane 2
//   └ g                  lane 3
struct Tree {
  std::vector<int32_t> tokens = {7, 11, 12, 13, 21, 22, 23, 31};
  std::vector<int32_t> depth = {0, 1, 2, 3, 1, 2, 2, 1};
  std::vector<uint64_t> lanes = {0xF, 0x1, 0x1, 0x1, 0x6, 0x2, 0x4, 0x8};
  std::vector<std::vector<int>> paths = {{0, 1, 2, 3}, {0, 4, 5}, {0, 4, 6}, {0, 7}};  // node indices
};

std::vector<float> rows(const float* p, int n, int V) {
  return std::vector<float>(p, p + int64_t(n) * V);
}

void check_model(const std::string& file, int n_threads, bool batched, int prompt_len) {
  auto model = Model::load(test::shared_path("models/" + file));
  ASSERT_TRUE(model) << model.error().message;
  RunnerOptions opt;
  opt.max_batch_tokens = std::max(64, prompt_len);
  opt.max_seqs = 4;
  opt.n_threads = n_threads;
  CpuRunner cpu(**model, opt);
  const int V = cpu.n_vocab();
  const Tree t;
  std::vector<int32_t> prompt;
  for (int i = 0; i < prompt_len; ++i) prompt.push_back(int32_t(1 + (i * 37) % (V - 1)));
  const int P = prompt_len, max_depth = 3;
  const int width = (P + max_depth + kBlock) / kBlock;  // blocks covering [0, P + max_depth]
  const int first = P / kBlock;                         // the block the tree starts in
  // Six tables (four paths, the tree's, another sequence's) and three lanes' tails.
  KvCacheStorage kv(cpu.kv_config(9 * width, kBlock));

  // Reference: each path as a chain on its own copy of the prompt's cache.
  std::vector<std::vector<float>> ref(t.paths.size());
  int next_block = 0;
  auto fresh_table = [&] {
    std::vector<int32_t> tab;
    for (int b = 0; b < width; ++b) tab.push_back(next_block++);
    return tab;
  };
  std::vector<std::vector<int32_t>> path_tables;
  for (size_t w = 0; w < t.paths.size(); ++w) {
    path_tables.push_back(fresh_table());
    SeqSlice s;
    s.tokens = prompt;
    s.block_table = path_tables.back();
    s.logits = LogitsMode::None;
    cpu.forward(ForwardBatch{std::span<const SeqSlice>(&s, 1)}, kv);
    std::vector<int32_t> chain;
    for (int node : t.paths[w]) chain.push_back(t.tokens[size_t(node)]);
    s.n_past = P;
    s.tokens = chain;
    s.logits = LogitsMode::All;
    ref[w] = rows(cpu.forward(ForwardBatch{std::span<const SeqSlice>(&s, 1)}, kv), int(chain.size()), V);
  }

  // The tree: lane 0 is the sequence's own table; lanes 1-3 share its blocks before
  // `first` and have private ones from there, the first a copy of the verified slots.
  std::vector<int32_t> main_table = fresh_table();
  {
    SeqSlice s;
    s.tokens = prompt;
    s.block_table = main_table;
    s.logits = LogitsMode::None;
    cpu.forward(ForwardBatch{std::span<const SeqSlice>(&s, 1)}, kv);
  }
  std::vector<int32_t> lane_tables;
  for (int w = 1; w < 4; ++w)
    for (int b = 0; b < width; ++b) {
      lane_tables.push_back(b < first ? main_table[size_t(b)] : next_block++);
      if (b == first && P % kBlock) kv.copy_block(main_table[size_t(b)], lane_tables.back());
    }
  TokenTree tree{t.depth, t.lanes, lane_tables, 4};
  std::vector<SeqSlice> batch;
  std::vector<int32_t> other_table, other_tokens = {5, 6, 7, 8, 9};
  if (batched) {  // a prompt chunk of another sequence before the tree
    other_table = fresh_table();
    SeqSlice o;
    o.tokens = other_tokens;
    o.block_table = other_table;
    o.logits = LogitsMode::All;
    batch.push_back(o);
  }
  SeqSlice s;
  s.n_past = P;
  s.tokens = t.tokens;
  s.block_table = main_table;
  s.logits = LogitsMode::All;
  s.tree = &tree;
  batch.push_back(s);
  const int64_t splits_before = cpu.stats().split_tiles;
  const float* out = cpu.forward(ForwardBatch{batch}, kv) + (batched ? int64_t(other_tokens.size()) * V : 0);
  if (P > 512 && n_threads > 1) {
    EXPECT_GT(cpu.stats().split_tiles, splits_before) << "split-K did not run";
  }
  for (size_t w = 0; w < t.paths.size(); ++w)
    for (size_t d = 0; d < t.paths[w].size(); ++d) {
      const int node = t.paths[w][d];
      for (int v = 0; v < V; ++v)
        ASSERT_EQ(out[int64_t(node) * V + v], ref[w][d * size_t(V) + size_t(v)])
            << file << ": node " << node << " (lane " << w << ", depth " << d << ") logit " << v;
    }

  // Keep lane 2's path (R d f): decoding the next token through lane 2's table must read
  // the same K/V as decoding after the chain R d f.
  const int32_t next[] = {42};
  SeqSlice dec;
  dec.n_past = P + 3;
  dec.tokens = next;
  dec.block_table = path_tables[2];
  const std::vector<float> want =
      rows(cpu.forward(ForwardBatch{std::span<const SeqSlice>(&dec, 1)}, kv), 1, V);
  dec.block_table = std::span<const int32_t>(lane_tables).subspan(size_t(width), size_t(width));
  const float* got = cpu.forward(ForwardBatch{std::span<const SeqSlice>(&dec, 1)}, kv);
  for (int v = 0; v < V; ++v)
    ASSERT_EQ(got[v], want[size_t(v)]) << file << ": decode after lane 2, logit " << v;
}

TEST(TokenTree, EveryNodeEqualsItsPathAsAChainStories) {
  check_model("stories260K.gguf", 1, false, 6);
}

TEST(TokenTree, EveryNodeEqualsItsPathAsAChainBlockAlignedPrompt) {
  check_model("stories260K.gguf", 1, false, 8);
}

TEST(TokenTree, BatchedOnThreadsSynthQ4_0) {
  check_model("synth-3m-q4_0.gguf", 2, true, 11);
}

// Past one attention segment (512 keys) on two threads the lanes' rows are split by key
// segment (split-K) like any decode: still the bits of each path alone.
TEST(TokenTree, LongContextSplitKSynthQ4_0) {
  check_model("synth-3m-q4_0.gguf", 2, false, 700);
}

TEST(TokenTree, BatchedOnThreadsSynthQ4KM) {
  check_model("synth-3m-q4_k_m.gguf", 2, true, 7);
}

}  // namespace
}  // namespace kvserve

// Token trees: the builder merges candidate paths into a trie within the shape and the
// node budget and writes it in preorder; tree_lanes derives depths and lanes from it.
#include "spec/draft_tree.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace kvserve {
namespace {

using Tokens = std::vector<int32_t>;

struct Emitted {
  Tokens tokens, parents;
};

Emitted emit(DraftTreeBuilder& b) {
  Emitted e;
  e.tokens.resize(size_t(b.size()));
  e.parents.resize(size_t(b.size()));
  EXPECT_EQ(b.emit(e.tokens, e.parents), b.size());
  return e;
}

TEST(DraftTree, ShapeCounts) {
  const std::vector<int> shape = {3, 2};
  EXPECT_EQ(tree_nodes(shape, 1), 3);
  EXPECT_EQ(tree_nodes(shape, 2), 3 + 6);
  EXPECT_EQ(tree_nodes(shape, 4), 3 + 6 + 6 + 6);  // deeper levels branch once
  EXPECT_EQ(tree_leaves(shape, 4), 6);
  EXPECT_EQ(tree_nodes({}, 5), 5);  // a chain
}

TEST(DraftTree, MergesPathsInOrderWithinTheShape) {
  const std::vector<int> shape = {2, 2};
  DraftTreeBuilder b;
  b.reset(shape, 3, 16);
  EXPECT_EQ(b.insert(Tokens{1, 2, 3}), 3);
  EXPECT_EQ(b.insert(Tokens{1, 2, 4}), 0);  // shares 1 2; a node at depth 2 has one child: 4 is cut
  EXPECT_EQ(b.size(), 3);
  EXPECT_EQ(b.insert(Tokens{1, 5, 6}), 2);     // a second child of 1
  EXPECT_EQ(b.insert(Tokens{1, 7}), 0);        // 1 has its two children already
  EXPECT_EQ(b.insert(Tokens{8, 9, 9, 9}), 3);  // the root's second child; cut at depth 3
  EXPECT_EQ(b.insert(Tokens{10}), 0);          // the root has two
  const Emitted e = emit(b);
  // Preorder, first inserted child first.
  EXPECT_EQ(e.tokens, (Tokens{1, 2, 3, 5, 6, 8, 9, 9}));
  EXPECT_EQ(e.parents, (Tokens{-1, 0, 1, 0, 3, -1, 5, 6}));
}

TEST(DraftTree, NodeBudgetAndDepthCut) {
  const std::vector<int> shape = {4, 4};
  DraftTreeBuilder b;
  b.reset(shape, 2, 3);
  b.insert(Tokens{1, 2, 3, 4});
  b.insert(Tokens{5, 6});
  b.insert(Tokens{7});
  const Emitted e = emit(b);
  EXPECT_EQ(e.tokens, (Tokens{1, 2, 5}));
  EXPECT_EQ(e.parents, (Tokens{-1, 0, -1}));
}

TEST(DraftTree, LanesAreLeavesInPreorder) {
  // Root 0 with children 1 (-> 2 -> 3), 4 (-> 5, 6), 7.
  const Tokens parents = {-1, 0, 1, 2, 0, 4, 4, 0};
  std::vector<int32_t> depth(parents.size());
  std::vector<uint64_t> lanes(parents.size());
  EXPECT_EQ(tree_lanes(parents, depth, lanes), 4);
  EXPECT_EQ(depth, (std::vector<int32_t>{0, 1, 2, 3, 1, 2, 2, 1}));
  EXPECT_EQ(lanes, (std::vector<uint64_t>{0xF, 0x1, 0x1, 0x1, 0x6, 0x2, 0x4, 0x8}));
}

TEST(DraftTreeProperty, EveryInsertedPathPrefixIsAPathAndTheShapeHolds) {
  std::mt19937_64 rng(3);
  for (int trial = 0; trial < 500; ++trial) {
    std::vector<int> shape;
    for (int d = 0, n = 1 + int(rng() % 3); d < n; ++d) shape.push_back(1 + int(rng() % 3));
    const int depth = 1 + int(rng() % 5), budget = 1 + int(rng() % 20);
    DraftTreeBuilder b;
    b.reset(shape, depth, budget);
    std::vector<Tokens> paths;
    for (int p = 0, n = 1 + int(rng() % 8); p < n; ++p) {
      Tokens path;
      for (int i = 0, len = 1 + int(rng() % 6); i < len; ++i) path.push_back(int32_t(rng() % 3));
      b.insert(path);
      paths.push_back(path);
    }
    const Emitted e = emit(b);
    ASSERT_LE(int(e.tokens.size()), budget);
    const size_t n = e.tokens.size() + 1;
    Tokens parents(n, -1);
    for (size_t i = 0; i + 1 < n; ++i) {
      ASSERT_LT(e.parents[i], int32_t(i));
      parents[i + 1] = e.parents[i] + 1;
    }
    std::vector<int32_t> d(n);
    std::vector<uint64_t> lanes(n);
    const int n_lanes = tree_lanes(parents, d, lanes);
    std::vector<int> children(n, 0);
    for (size_t i = 1; i < n; ++i) {
      ASSERT_LE(d[i], depth);
      ++children[size_t(parents[i])];
      ASSERT_EQ(lanes[i] & ~lanes[size_t(parents[i])], 0u);  // a child's lanes are its parent's
      for (size_t j = 1; j < i; ++j)                         // siblings differ
        ASSERT_FALSE(parents[j] == parents[i] && e.tokens[j - 1] == e.tokens[i - 1]);
    }
    for (size_t i = 0; i < n; ++i)
      ASSERT_LE(children[i], size_t(d[i]) < shape.size() ? shape[size_t(d[i])] : 1) << "trial " << trial;
    ASSERT_EQ(lanes[0], n_lanes == 64 ? ~0ULL : (1ULL << n_lanes) - 1);
    // The first path goes in whole (as far as depth and budget allow): it is lane 0.
    const size_t first = std::min({paths[0].size(), size_t(depth), size_t(budget)});
    for (size_t i = 0; i < first; ++i) {
      ASSERT_EQ(e.tokens[i], paths[0][i]);
      ASSERT_EQ(parents[i + 1], int32_t(i));
      ASSERT_TRUE(lanes[i + 1] & 1);
    }
  }
}

}  // namespace
}  // namespace kvserve

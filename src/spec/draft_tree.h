// Token trees for speculative decoding (`--speculative-tree`): a proposer offers several
// continuations at once, the target verifies every node in one forward (a lane per
// root-to-leaf path, model/forward_batch.h's TokenTree), and the longest path the
// target confirms is kept.
//
// Shape: branching[d] is the most children a node at depth d may have (d = 0: the root,
// the last verified token); depths past the list branch once. DraftTreeBuilder merges
// candidate paths into a trie within that shape and a node budget, in the order they
// are offered (the likeliest first, so the first path is also the chain a proposer
// without a tree would have drafted), and writes it out in preorder, first child first.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace kvserve {

// Draft nodes of a full tree of `depth` levels in this shape (the root not counted).
int64_t tree_nodes(std::span<const int> branching, int depth);
// Its leaves: the lanes a full tree needs.
int64_t tree_leaves(std::span<const int> branching, int depth);

class DraftTreeBuilder {
 public:
  // Starts an empty tree of at most max_depth levels and max_nodes draft nodes (sizes
  // its buffers once for the largest call).
  void reset(std::span<const int> branching, int max_depth, int max_nodes);
  // Merges a path (the tokens after the root) into the tree, cut where the shape, the
  // depth or the node budget allows no new node. Returns the nodes it added.
  int insert(std::span<const int32_t> path);
  // The draft nodes in preorder: tokens[i] and parents[i] (an earlier index, or -1 for a
  // child of the root). Returns their number (both spans need room for size()).
  int emit(std::span<int32_t> tokens, std::span<int32_t> parents);
  int size() const { return int(nodes_.size()) - 1; }

 private:
  struct Node {
    int32_t token = -1;
    int32_t first_child = -1, last_child = -1, next_sibling = -1;
    int32_t n_children = 0;
  };
  std::span<const int> branching_;
  int max_depth_ = 0, max_nodes_ = 0;
  std::vector<Node> nodes_;                         // [0]: the root
  std::vector<std::pair<int32_t, int32_t>> stack_;  // emit(): (node, its index in the output)
};

// The verifier's view of a tree of n nodes whose parents[i] < i (node 0 the root, -1):
// each node's depth and lanes (bit w: the w-th leaf in preorder lies under it). Returns
// the number of lanes (leaves). At most 64 leaves.
int tree_lanes(std::span<const int32_t> parents, std::span<int32_t> depth, std::span<uint64_t> lanes);

}  // namespace kvserve

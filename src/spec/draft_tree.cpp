#include "spec/draft_tree.h"

#include <algorithm>
#include <cassert>

namespace kvserve {

namespace {
int branching_at(std::span<const int> branching, int depth) {
  return size_t(depth) < branching.size() ? branching[size_t(depth)] : 1;
}
}  // namespace

int64_t tree_nodes(std::span<const int> branching, int depth) {
  int64_t total = 0, level = 1;
  for (int d = 0; d < depth; ++d) {
    level *= branching_at(branching, d);
    total += level;
  }
  return total;
}

int64_t tree_leaves(std::span<const int> branching, int depth) {
  int64_t leaves = 1;
  for (int d = 0; d < depth; ++d) leaves *= branching_at(branching, d);
  return leaves;
}

void DraftTreeBuilder::reset(std::span<const int> branching, int max_depth, int max_nodes) {
  branching_ = branching;
  max_depth_ = max_depth;
  max_nodes_ = max_nodes;
  nodes_.reserve(size_t(max_nodes) + 1);
  stack_.reserve(size_t(max_nodes) + 1);
  nodes_.assign(1, Node{});
}

int DraftTreeBuilder::insert(std::span<const int32_t> path) {
  int added = 0;
  int32_t at = 0;
  for (int d = 0; d < int(path.size()) && d < max_depth_; ++d) {
    int32_t child = nodes_[size_t(at)].first_child;
    while (child >= 0 && nodes_[size_t(child)].token != path[size_t(d)])
      child = nodes_[size_t(child)].next_sibling;
    if (child < 0) {
      Node& parent = nodes_[size_t(at)];
      if (parent.n_children >= branching_at(branching_, d) || size() >= max_nodes_) break;
      child = int32_t(nodes_.size());
      Node n;
      n.token = path[size_t(d)];
      const int32_t last = parent.last_child;
      ++parent.n_children;
      parent.last_child = child;
      if (last < 0) parent.first_child = child;
      nodes_.push_back(n);  // `parent` may move: not used below
      if (last >= 0) nodes_[size_t(last)].next_sibling = child;
      ++added;
    }
    at = child;
  }
  return added;
}

int DraftTreeBuilder::emit(std::span<int32_t> tokens, std::span<int32_t> parents) {
  assert(tokens.size() >= size_t(size()) && parents.size() >= size_t(size()));
  int out = 0;
  stack_.clear();
  // Children pushed last-first, so the first child is emitted first.
  auto push_children = [&](int32_t node, int32_t index) {
    const size_t mark = stack_.size();
    for (int32_t c = nodes_[size_t(node)].first_child; c >= 0; c = nodes_[size_t(c)].next_sibling)
      stack_.emplace_back(c, index);
    std::reverse(stack_.begin() + std::ptrdiff_t(mark), stack_.end());
  };
  push_children(0, -1);
  while (!stack_.empty()) {
    const auto [node, parent] = stack_.back();
    stack_.pop_back();
    tokens[size_t(out)] = nodes_[size_t(node)].token;
    parents[size_t(out)] = parent;
    push_children(node, out++);
  }
  return out;
}

int tree_lanes(std::span<const int32_t> parents, std::span<int32_t> depth, std::span<uint64_t> lanes) {
  const size_t n = parents.size();
  std::fill_n(lanes.begin(), n, 0);
  int n_lanes = 0;
  depth[0] = 0;
  for (size_t i = 1; i < n; ++i) depth[i] = depth[size_t(parents[i])] + 1;
  // In preorder a node's first child comes right after it, so a leaf is a node the next
  // one does not name as its parent; leaves in index order are the lanes in order.
  for (size_t i = 0; i < n; ++i) {
    if (i + 1 == n || parents[i + 1] != int32_t(i)) {
      assert(n_lanes < 64);
      lanes[i] = 1ULL << n_lanes++;
    }
  }
  for (size_t i = n; i-- > 1;) lanes[size_t(parents[i])] |= lanes[i];
  return n_lanes;
}

}  // namespace kvserve

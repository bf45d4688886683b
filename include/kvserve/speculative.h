// Speculative decoding settings (EngineConfig::speculative). A proposer guesses the next
// few tokens of a decoding sequence; one forward of the target model checks them all,
// and every token the target itself would have chosen is kept. The output is exactly
// what decoding without speculation produces (greedy and seeded sampling alike); only
// the number of forwards changes.
//
// Methods: `ngram` (prompt / output lookup, src/spec/ngram_proposer.h), `draft` (a
// smaller model with the same vocabulary, src/spec/draft_model_proposer.h) and
// `layerskip` (the model itself with some layers skipped, drafting like a draft model). Greedy and
// n-gram-drafted outputs are exactly those of plain decoding; sampled requests drafted by
// a model follow the target distribution (rejection sampling) with their own draws.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvserve {

enum class SpecMethod : uint8_t { None, Ngram, Draft, LayerSkip };

inline const char* spec_method_name(SpecMethod m) {
  switch (m) {
    case SpecMethod::Ngram: return "ngram";
    case SpecMethod::Draft: return "draft";
    case SpecMethod::LayerSkip: return "layerskip";
    case SpecMethod::None: break;
  }
  return "none";
}

inline std::optional<SpecMethod> parse_spec_method(std::string_view s) {
  if (s == "none") return SpecMethod::None;
  if (s == "ngram") return SpecMethod::Ngram;
  if (s == "draft") return SpecMethod::Draft;
  if (s == "layerskip") return SpecMethod::LayerSkip;
  return std::nullopt;
}

struct SpeculativeConfig {
  SpecMethod method = SpecMethod::None;
  int num_tokens = 4;       // draft tokens per step at most (k)
  std::string draft_model;  // GGUF of the draft model (method Draft)
  // Layers the self-drafting model skips (method LayerSkip), e.g. "8-15,20"; empty = a
  // default from the model's depth. Checked against the model at engine creation.
  std::string skip_layers;
  int ngram_min = 2;  // shortest suffix the n-gram lookup matches
  int ngram_max = 4;  // longest suffix it tries first
  // Tokens of finished requests' outputs kept for lookup by later requests (0 = off).
  int shared_cache_entries = 1 << 16;
  // Token trees (--speculative-tree): tree[d] is the most children a node at depth d
  // may have (d = 0: the last verified token); deeper levels, up to num_tokens, branch
  // once. Empty: chains. The target verifies every node in one forward and keeps the
  // longest path it confirms.
  std::vector<int> tree;
  // Per-request k adapts to its recent acceptance, and a step drafts only when the
  // measured step-time cost model says the extra tokens pay for themselves.
  bool adaptive = true;

  static constexpr int kMaxTokens = 16;
  static constexpr int kMaxTreeBranching = 8;
  static constexpr int kMaxTreeLeaves = 64;  // lanes of one tree
  static constexpr int kMaxTreeNodes = 256;
  // Draft nodes of the full tree (chains: num_tokens).
  int max_draft_nodes() const {
    int nodes = 0, level = 1;
    for (int d = 0; d < num_tokens; ++d) nodes += level *= d < int(tree.size()) ? tree[size_t(d)] : 1;
    return nodes;
  }
  bool enabled() const { return method != SpecMethod::None; }
  // Empty when the settings are usable; otherwise what is wrong, naming the flag.
  std::string validate() const {
    if (!enabled()) return {};
    if (num_tokens < 1 || num_tokens > kMaxTokens)
      return "--num-speculative-tokens must be in [1, " + std::to_string(kMaxTokens) + "], got " +
             std::to_string(num_tokens);
    if (ngram_min < 1 || ngram_max < ngram_min || ngram_max > 16)
      return "--ngram-min/--ngram-max must satisfy 1 <= min <= max <= 16, got " + std::to_string(ngram_min) +
             " and " + std::to_string(ngram_max);
    if (shared_cache_entries < 0) return "the shared n-gram cache size must not be negative";
    if (!tree.empty()) {
      if (int(tree.size()) > num_tokens)
        return "--speculative-tree has " + std::to_string(tree.size()) +
               " levels, deeper than --num-speculative-tokens " + std::to_string(num_tokens);
      long long leaves = 1, nodes = 0;
      for (int d = 0; d < num_tokens; ++d) {
        const int b = d < int(tree.size()) ? tree[size_t(d)] : 1;
        if (b < 1 || b > kMaxTreeBranching)
          return "--speculative-tree: each level branches 1 to " + std::to_string(kMaxTreeBranching) +
                 " times, got " + std::to_string(b);
        leaves *= b;
        nodes += leaves;
        if (leaves > kMaxTreeLeaves || nodes > kMaxTreeNodes)
          return "--speculative-tree: the full tree has more than " + std::to_string(kMaxTreeLeaves) +
                 " paths or " + std::to_string(kMaxTreeNodes) + " nodes";
      }
    }
    if (method == SpecMethod::Draft && draft_model.empty())
      return "--speculative-method draft needs --speculative-model FILE (the draft model's GGUF)";
    if (method != SpecMethod::Draft && !draft_model.empty())
      return "--speculative-model is only used with --speculative-method draft";
    if (method != SpecMethod::LayerSkip && !skip_layers.empty())
      return "--speculative-skip-layers is only used with --speculative-method layerskip";
    return {};
  }
};

}  // namespace kvserve

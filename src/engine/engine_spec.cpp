// Speculative decoding in the engine: asking the proposer for drafts before the step (and
// whether they pay, SpecCostModel), the draft chooser a model proposer calls, and after the
// forward the verification of chains and trees (exact sample-and-compare, or rejection
// sampling against a draft model's q) with the rollback of what was not kept.
#include <algorithm>
#include <bit>

#include "engine/engine_impl.h"
#include "sample/logprobs.h"
#include "spec/draft_tree.h"

namespace kvserve {

void Engine::Impl::note_acceptance(SeqSlot& slot, int accepted, int drafted) {
  // The share of draft tokens kept: acceptance along a chain is strongly correlated (a
  // copied passage is accepted whole or cut at its end), so the mean share predicts the
  // tokens a d-token draft yields (share * d) better than a per-token probability would.
  slot.spec_accept = 0.7 * slot.spec_accept + 0.3 * (double(accepted) / double(drafted));
  // k grows after a fully kept draft and shrinks by one (not below what was kept) after
  // a cut one.
  if (config.speculative.adaptive)
    slot.spec_k = accepted == drafted ? std::min(config.speculative.num_tokens, slot.spec_k + 1)
                                      : std::max({1, accepted + 1, slot.spec_k - 1});
}

void Engine::Impl::score_shadow(SeqSlot& slot) {
  const Request& r = slot.req;
  const int have = std::min(r.num_tokens() - slot.shadow_pos, int(slot.shadow.size()));
  int a = 0;
  while (a < have && r.token_ids[size_t(slot.shadow_pos + a)] == slot.shadow[size_t(a)]) ++a;
  if (a == have && have < int(slot.shadow.size())) return;  // not decided yet
  note_acceptance(slot, a, int(slot.shadow.size()));
  slot.shadow_pos = -1;
}

void Engine::Impl::propose_drafts() {
  if (!proposer) return;
  const SpeculativeConfig& sc = config.speculative;
  int decodes = 0, wanted = 0, k_max = 0;
  double expected_if_all = 0.0;
  draft_items.clear();
  draft_reqs.clear();
  const bool tree_mode = !sc.tree.empty();
  for (Request* r : sched->running()) {
    r->num_draft = r->draft_depth = r->draft_chain = 0;
    r->draft_lanes = 1;
    if (r->num_missing() != 1) continue;
    ++decodes;
    SeqSlot& slot = *slots[r->seq];
    if (!r->params->speculative) continue;
    if (slot.shadow_pos >= 0) score_shadow(slot);
    // Never draft past max_tokens (the step also yields the target's own token) or the
    // context.
    const int k = std::min({slot.spec_k, r->params->max_tokens - r->num_output_tokens() - 1,
                            config.max_model_len - r->num_tokens()});
    if (k <= 0) continue;
    DraftItem& item = draft_items.emplace_back();
    item.seq = r->seq;
    item.tokens = r->token_ids;
    item.out = tree_mode ? std::span(slot.verify).subspan(1) : std::span(slot.verify).subspan(1, size_t(k));
    if (tree_mode) {
      item.parent = slot.draft_parent;
      item.depth = k;
    }
    draft_reqs.push_back(r);
    wanted += tree_mode ? int(tree_nodes(sc.tree, k)) : k;
    k_max = std::max(k_max, k);
    expected_if_all += slot.spec_accept * k;
  }
  if (draft_items.empty()) return;
  // A draft model costs its forwards before anything is known: decide first, counting
  // k draft forwards at draft_cost_ratio of a plain step each. Now and then it drafts
  // anyway, so the acceptance estimates stay current: after 32 refused steps, then twice
  // as many each time the answer stays no - but only when a fully accepted draft would
  // be clearly faster (1.5x), as each probe also pays the draft's catch-up over the
  // tokens it skipped.
  if (proposer->model_based() && sc.adaptive) {
    const double t_plain = spec_cost->step_time(decodes);
    const double drafting = draft_cost_ratio * k_max * t_plain;
    // Hopeless even if verifying cost nothing and every draft token were kept (a draft as
    // big as the model): never draft, not even to probe.
    const bool hopeless = t_plain > 0.0 && (decodes + wanted) * t_plain <= decodes * (t_plain + drafting);
    if (hopeless || !spec_cost->worth(decodes, wanted, expected_if_all, drafting)) {
      const double t_spec = spec_cost->step_time(decodes + wanted);
      const bool could_pay =
          !hopeless && t_plain > 0.0 &&
          (t_spec == 0.0 || (decodes + wanted) * t_plain > 1.5 * decodes * (t_spec + drafting));
      if (!could_pay || ++spec_skipped_in_row < spec_probe_after) {
        ++counters.spec_steps_skipped;
        return;
      }
      spec_probe_after = std::min<int64_t>(spec_probe_after * 2, 1 << 14);
    } else {
      spec_probe_after = 32;
    }
    spec_skipped_in_row = 0;
  }
  proposer->propose(draft_items, chooser);
  int drafted = 0;
  double expected = 0.0;
  for (size_t i = 0; i < draft_items.size(); ++i) {
    Request& r = *draft_reqs[i];
    r.num_draft = draft_items[i].n;
    if (tree_mode && r.num_draft > 0) {
      shape_tree(*slots[r.seq], r.num_draft);
    } else {
      r.draft_depth = r.draft_chain = r.num_draft;
    }
    drafted += r.num_draft;
    // A tree yields at most one path: its depth bounds what it can give.
    expected += slots[r.seq]->spec_accept * r.draft_depth;
  }
  if (drafted > 0 && sc.adaptive && !proposer->model_based() &&
      !spec_cost->worth(decodes, drafted, expected)) {
    // Trees that do not pay (their extra nodes cost as much as they add, as on a
    // compute-bound CPU) may still as their first paths: a chain per request.
    if (tree_mode && cut_trees_to_chains(decodes)) return;
    for (Request* r : draft_reqs) {
      SeqSlot& slot = *slots[r->seq];
      if (r->draft_chain > 0 && slot.shadow_pos < 0) {
        slot.shadow.assign(slot.verify.begin() + 1, slot.verify.begin() + 1 + r->draft_chain);
        slot.shadow_pos = r->num_tokens();
      }
      r->num_draft = r->draft_depth = r->draft_chain = 0;
      r->draft_lanes = 1;
    }
    ++counters.spec_steps_skipped;
  }
}

bool Engine::Impl::cut_trees_to_chains(int decodes) {
  int chained = 0;
  double expected = 0.0;
  for (const Request* r : draft_reqs) {
    chained += r->draft_chain;
    expected += slots[r->seq]->spec_accept * r->draft_chain;
  }
  if (chained == 0 || !spec_cost->worth(decodes, chained, expected)) return false;
  for (Request* r : draft_reqs) {
    r->num_draft = r->draft_depth = r->draft_chain;
    r->draft_lanes = 1;
  }
  ++counters.spec_trees_cut;
  return true;
}

int32_t Engine::Impl::choose_draft(size_t item, int pos, const float* logits) {
  Request& r = *draft_reqs[item];
  SeqSlot& slot = *slots[r.seq];
  const SamplingParams& p = *r.params;
  if (p.greedy() || slot.draft_q.empty()) {
    // Any deterministic guess is verified exactly; the target's own rule (argmax after
    // bias and penalties) is the likeliest to be confirmed.
    const float* adj = sampler->adjusted_logits(logits, p, slot.sampler);
    return int32_t(std::max_element(adj, adj + n_vocab) - adj);
  }
  float* q = slot.draft_q.data() + int64_t(pos) * n_vocab;
  sampler->distribution(logits, p, slot.sampler, q);
  return sampler->sample_from(q, slot.draft_rng);
}

void Engine::Impl::top_draft(size_t item, int pos, const float* logits, std::span<int32_t> out) {
  (void)pos;
  Request& r = *draft_reqs[item];
  SeqSlot& slot = *slots[r.seq];
  const float* adj = sampler->adjusted_logits(logits, *r.params, slot.sampler);
  // One pass keeping the best out.size() (at most kMaxTreeBranching) sorted; ties: the
  // lower id first.
  const size_t b = out.size();
  size_t have = 0;
  for (int32_t v = 0; v < n_vocab; ++v) {
    if (have == b && !(adj[v] > adj[out[b - 1]])) continue;
    size_t at = have < b ? have++ : b - 1;
    while (at > 0 && adj[v] > adj[out[at - 1]]) {
      out[at] = out[at - 1];
      --at;
    }
    out[at] = v;
  }
}

void Engine::Impl::shape_tree(SeqSlot& slot, int nodes) {
  Request& r = slot.req;
  slot.tree_parent[0] = -1;
  for (int i = 0; i < nodes; ++i) slot.tree_parent[size_t(i) + 1] = slot.draft_parent[size_t(i)] + 1;
  const size_t n = size_t(nodes) + 1;
  r.draft_lanes = tree_lanes(std::span(slot.tree_parent).first(n), slot.tree_depth, slot.tree_lanes);
  r.draft_depth = *std::max_element(slot.tree_depth.begin(), slot.tree_depth.begin() + std::ptrdiff_t(n));
  r.draft_chain = 0;
  while (r.draft_chain < nodes && slot.tree_parent[size_t(r.draft_chain) + 1] == r.draft_chain)
    ++r.draft_chain;
}

void Engine::Impl::verify_tree(SeqSlot& slot, int num_nodes, const float* rows) {
  // Each node's row is the target's distribution after its path, as verifying that path
  // alone would give it (same bits). Sampling it as plain decoding would and moving to
  // the child holding the sample keeps exactly the tokens plain decoding yields: the
  // tree's nodes are deterministic guesses, so this is lossless, and no rule can keep
  // more (a sampled token outside the children cannot be kept by any).
  Request& r = slot.req;
  const int n = num_nodes + 1;
  int node = 0, accepted = 0, lane = 0;
  bool finished = false;
  for (;;) {
    const int32_t t = sample_into(slot, rows + int64_t(node) * n_vocab, /*extend=*/accepted > 0);
    if (t < 0) {  // finished: the slot may already be released
      finished = true;
      break;
    }
    int child = -1;  // node's subtree follows it in preorder
    for (int c = node + 1; c < n && slot.tree_depth[size_t(c)] > slot.tree_depth[size_t(node)]; ++c)
      if (slot.tree_parent[size_t(c)] == node && slot.verify[size_t(c)] == t) {
        child = c;
        break;
      }
    if (child < 0) break;
    node = child;
    lane = std::countr_zero(slot.tree_lanes[size_t(node)]);  // read now: a finish may free the slot
    ++accepted;
  }
  ++counters.spec_drafts;
  ++counters.spec_tree_drafts;
  counters.spec_draft_tokens += num_nodes;
  counters.spec_accepted_tokens += accepted;
  for (int j = 0; j < accepted; ++j) ++counters.spec_accepted_per_pos[size_t(j)];
  // The kept path's K/V is in the lowest lane under its last node: the sequence takes that
  // lane's blocks (a finished one has released them all).
  if (lane > 0) ++counters.spec_tree_other_path;
  if (finished) return;
  blocks->adopt_lane(r.seq, lane);
  sched->commit_draft(&r, accepted);
  note_acceptance(slot, accepted, r.draft_depth);
}

int32_t Engine::Impl::verify_sampled(SeqSlot& slot, int j, int32_t x, const float* row) {
  // Rejection sampling (Leviathan et al. / Chen et al.): keep x ~ q with probability
  // min(1, p(x) / q(x)); otherwise draw from normalize(max(0, p - q)). The token is then
  // distributed exactly as p, whatever q was.
  const SamplingParams& p = *slot.req.params;
  sampler->distribution(row, p, slot.sampler, spec_p.data());
  const float* q = slot.draft_q.data() + int64_t(j) * n_vocab;
  int32_t token = x;
  if (!(slot.sampler.rng().uniform() * double(q[x]) < double(spec_p[size_t(x)]))) {
    double total = 0.0;
    for (int32_t i = 0; i < n_vocab; ++i)
      total += spec_w[size_t(i)] = std::max(0.0f, spec_p[size_t(i)] - q[i]);
    // p == q up to rounding leaves no residual mass: p itself is then the right law.
    token = sampler->sample_from(total > 0.0 ? spec_w.data() : spec_p.data(), slot.sampler.rng());
  }
  if (p.wants_logprobs()) compute_logprobs(row, n_vocab, token, p.logprobs, lp_tmp);
  return emit_token(slot, row, token, j > 0);
}

void Engine::Impl::verify_draft(SeqSlot& slot, int num_draft, const float* rows) {
  // Row j is the target's distribution after the last token and draft[0, j). Sampling
  // it exactly as a plain decode would (same sampler, same RNG stream, penalties over the
  // tokens kept so far) and keeping draft[j] only when the sample equals it yields the
  // very tokens plain decoding yields: for a deterministic proposer this is rejection
  // sampling with a one-hot q (accept with probability p(x), else draw from p without x).
  // A draft model's draft for a sampled request carries its q: rejection sampling.
  Request& r = slot.req;
  const int32_t* draft = slot.verify.data() + 1;
  const bool sampled = proposer->model_based() && !r.params->greedy() && !slot.draft_q.empty();
  int accepted = 0;
  bool finished = false;
  for (int j = 0; j <= num_draft; ++j) {
    const float* row = rows + int64_t(j) * n_vocab;
    const int32_t t = sampled && j < num_draft ? verify_sampled(slot, j, draft[j], row)
                                               : sample_into(slot, row, /*extend=*/j > 0);
    if (t < 0) {  // finished (stop, EOS, length): the slot may already be released
      finished = true;
      break;
    }
    if (j == num_draft || t != draft[j]) break;
    ++accepted;
  }
  ++counters.spec_drafts;
  counters.spec_draft_tokens += num_draft;
  counters.spec_accepted_tokens += accepted;
  for (int j = 0; j < accepted; ++j) ++counters.spec_accepted_per_pos[size_t(j)];
  if (finished) return;
  sched->commit_draft(&r, accepted);
  note_acceptance(slot, accepted, num_draft);
}

}  // namespace kvserve

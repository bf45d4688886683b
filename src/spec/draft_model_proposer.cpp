#include "spec/draft_model_proposer.h"

#include <algorithm>

#include "model/runner.h"

namespace kvserve {

namespace {
BlockManagerConfig draft_blocks(const DraftModelOptions& o) {
  BlockManagerConfig c;
  c.n_blocks = o.n_blocks;
  c.block_size = o.block_size;
  c.group_windows = o.group_windows;
  c.enable_prefix_caching = false;  // drafts are throwaway; the target's cache is the one shared
  return c;
}
}  // namespace

DraftModelProposer::DraftModelProposer(std::unique_ptr<Runner> runner, const DraftModelOptions& options)
    : runner_(std::move(runner)), opt_(options), blocks_(draft_blocks(options)) {
  slices_.reserve(size_t(opt_.max_seqs));
  slice_item_.reserve(size_t(opt_.max_seqs));
  if (!opt_.tree.empty()) {
    alt_.resize(size_t(opt_.max_seqs) * size_t(opt_.max_draft) * (SpeculativeConfig::kMaxTreeBranching - 1));
    top_.resize(SpeculativeConfig::kMaxTreeBranching);
    chain_.resize(size_t(opt_.max_draft));
  }
}

namespace {
constexpr size_t kAlts = SpeculativeConfig::kMaxTreeBranching - 1;
int branching_at(const std::vector<int>& b, int d) {
  return size_t(d) < b.size() ? b[size_t(d)] : 1;
}
// The chain a draft item may run: k tokens, or its tree's depth.
int chain_room(const DraftItem& it) {
  return it.parent.empty() ? int(it.out.size()) : std::min(it.depth, int(it.out.size()));
}
}  // namespace

void DraftModelProposer::choose(DraftItem& it, size_t item, int pos, const float* logits,
                                DraftChooser& chooser) {
  if (it.parent.empty()) {
    it.out[size_t(pos)] = chooser.choose(item, pos, logits);
    return;
  }
  const int b = branching_at(opt_.tree, pos);
  chooser.top(item, pos, logits, std::span(top_).first(size_t(b)));
  it.out[size_t(pos)] = top_[0];
  int32_t* alts = alt_.data() + (item * size_t(opt_.max_draft) + size_t(pos)) * kAlts;
  std::fill_n(alts, kAlts, -1);
  std::copy(top_.begin() + 1, top_.begin() + b, alts);
}

void DraftModelProposer::build_tree(DraftItem& it, size_t item) {
  const int n = it.n;
  std::copy_n(it.out.begin(), n, chain_.begin());
  tree_.reset(opt_.tree, it.depth, int(it.out.size()));
  tree_.insert(std::span(chain_).first(size_t(n)));
  for (int pos = 0; pos < n; ++pos) {
    const int32_t* alts = alt_.data() + (item * size_t(opt_.max_draft) + size_t(pos)) * kAlts;
    for (size_t j = 0; j < kAlts && alts[j] >= 0; ++j) {
      const int32_t saved = chain_[size_t(pos)];
      chain_[size_t(pos)] = alts[j];  // the chain up to pos, then the runner-up
      tree_.insert(std::span(chain_).first(size_t(pos) + 1));
      chain_[size_t(pos)] = saved;
    }
  }
  it.n = tree_.emit(it.out, it.parent);
}

DraftModelProposer::~DraftModelProposer() = default;

DraftModelProposer::Seq& DraftModelProposer::seq(int32_t s) {
  if (size_t(s) >= seqs_.size()) seqs_.resize(size_t(s) + 1);
  return seqs_[size_t(s)];
}

void DraftModelProposer::start(int32_t s, int capacity) {
  Seq& q = seq(s);
  blocks_.free(s);
  q.cached.clear();
  q.cached.reserve(size_t(capacity) + size_t(opt_.max_draft));
}

void DraftModelProposer::finish(int32_t s, std::span<const int32_t>, int) {
  release(s);
}

void DraftModelProposer::release(int32_t s) {
  if (size_t(s) >= seqs_.size()) return;
  blocks_.free(s);
  seqs_[size_t(s)].cached.clear();
}

int DraftModelProposer::keep_prefix(int32_t s, std::span<const int32_t> tokens) {
  Seq& q = seq(s);
  const size_t limit = std::min(q.cached.size(), tokens.size() - 1);
  size_t keep = 0;
  while (keep < limit && q.cached[keep] == tokens[keep]) ++keep;
  q.cached.resize(keep);
  blocks_.trim(s, int(keep));  // rejected drafts' blocks go back
  return int(keep);
}

void DraftModelProposer::propose(std::span<DraftItem> items, DraftChooser& chooser) {
  // Forward 1: each sequence's tokens the draft has not seen (its whole prompt the first
  // time, else the last accepted ones), the last of them giving draft token 0.
  slices_.clear();
  slice_item_.clear();
  active_.assign(items.size(), 0);
  if (!opt_.tree.empty() && alt_.size() < items.size() * size_t(opt_.max_draft) * kAlts)
    alt_.resize(items.size() * size_t(opt_.max_draft) * kAlts);  // grows to the working size once
  int budget = opt_.max_batch_tokens;
  for (size_t i = 0; i < items.size() && int(slices_.size()) < opt_.max_seqs && budget > 0; ++i) {
    DraftItem& it = items[i];
    it.n = 0;
    if (it.out.empty() || it.tokens.empty()) continue;
    const int keep = keep_prefix(it.seq, it.tokens);
    const int missing = int(it.tokens.size()) - keep;
    const int k = std::min(chain_room(it), opt_.max_draft);
    const int run = std::min(missing, budget);
    // Room for the tokens run now and, if the catch-up completes, the k - 1 drafts fed back.
    const int extra = run == missing ? k - 1 : 0;
    if (!blocks_.allocate_slots(it.seq, keep, run + extra)) continue;  // no draft memory: no draft
    SeqSlice& sl = slices_.emplace_back();
    sl.n_past = keep;
    sl.tokens = it.tokens.subspan(size_t(keep), size_t(run));
    sl.block_table = blocks_.block_table(it.seq);
    sl.logits = run == missing ? LogitsMode::Last : LogitsMode::None;  // a long prompt catches up over steps
    slice_item_.push_back(int32_t(i));
    budget -= run;
  }
  if (slices_.empty()) return;
  LogitsView lv = runner_->forward(ForwardBatch{slices_});
  ++forwards_;
  int64_t row = 0;
  for (size_t j = 0; j < slices_.size(); ++j) {
    DraftItem& it = items[size_t(slice_item_[j])];
    Seq& q = seq(it.seq);
    q.cached.insert(q.cached.end(), slices_[j].tokens.begin(), slices_[j].tokens.end());
    if (slices_[j].logits != LogitsMode::Last) continue;
    choose(it, size_t(slice_item_[j]), 0, lv.row(row++), chooser);
    it.n = 1;
    active_[size_t(slice_item_[j])] = 1;
  }

  // Forwards 2..k: every sequence still drafting feeds back its last draft token.
  for (int pos = 1; pos < opt_.max_draft; ++pos) {
    slices_.clear();
    slice_item_.clear();
    for (size_t i = 0; i < items.size(); ++i) {
      DraftItem& it = items[i];
      if (!active_[i] || it.n != pos || chain_room(it) <= pos) continue;
      Seq& q = seq(it.seq);
      SeqSlice& sl = slices_.emplace_back();
      sl.n_past = int32_t(q.cached.size());
      sl.tokens = it.out.subspan(size_t(pos - 1), 1);
      sl.block_table = blocks_.block_table(it.seq);
      sl.logits = LogitsMode::Last;
      slice_item_.push_back(int32_t(i));
    }
    if (slices_.empty()) break;
    lv = runner_->forward(ForwardBatch{slices_});
    ++forwards_;
    for (size_t j = 0; j < slices_.size(); ++j) {
      DraftItem& it = items[size_t(slice_item_[j])];
      seq(it.seq).cached.push_back(slices_[j].tokens[0]);
      choose(it, size_t(slice_item_[j]), pos, lv.row(int64_t(j)), chooser);
      it.n = pos + 1;
    }
  }
  for (size_t i = 0; i < items.size(); ++i)
    if (!items[i].parent.empty() && items[i].n > 0) build_tree(items[i], i);
}

}  // namespace kvserve

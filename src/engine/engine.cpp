// Engine set-up (model, KV-cache sizing), admission and abort. The step loop is in
// engine_step.cpp, speculation in engine_spec.cpp, output processing in engine_output.cpp.
#include <fmt/format.h>

#include <algorithm>
#include <fstream>

#include "core/log.h"
#include "engine/engine_impl.h"
#include "model/cpu_runner.h"
#include "spec/draft_model_proposer.h"
#include "spec/layer_list.h"

namespace kvserve {

namespace {

// The draft model of --speculative-method draft: it must speak the target's vocabulary
// token for token, or its guesses would mean other tokens.
Result<std::shared_ptr<const Model>> load_draft_model(const std::string& path, const Tokenizer& target) {
  auto model = Model::load(path);
  if (!model) return Error{fmt::format("loading the draft model {}: {}", path, model.error().message)};
  auto tok = Tokenizer::from_gguf((*model)->gguf());
  if (!tok) return Error{fmt::format("tokenizer of the draft model {}: {}", path, tok.error().message)};
  if ((*tok)->n_vocab() != target.n_vocab() || (*model)->config().n_vocab != target.n_vocab())
    return Error{
        fmt::format("the draft model {} has a vocabulary of {} tokens, the model {}; speculative "
                    "decoding needs the same vocabulary",
                    path, (*tok)->n_vocab(), target.n_vocab())};
  for (int32_t t = 0; t < target.n_vocab(); ++t)
    if ((*tok)->token_text(t) != target.token_text(t))
      return Error{
          fmt::format("the draft model {} has another vocabulary: token {} is '{}' there and '{}' in the "
                      "model; speculative decoding needs the same vocabulary",
                      path, t, (*tok)->token_text(t), target.token_text(t))};
  return std::shared_ptr<const Model>(std::move(*model));
}

// MemAvailable from /proc/meminfo, in bytes (0 if unreadable).
int64_t available_memory() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

}  // namespace

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

Result<std::unique_ptr<Engine>> Engine::create(const EngineConfig& config) {
  auto model = Model::load(config.model_path);
  if (!model) return Error{fmt::format("loading {}: {}", config.model_path, model.error().message)};
  auto tok = Tokenizer::from_gguf((*model)->gguf());
  if (!tok) return Error{fmt::format("tokenizer of {}: {}", config.model_path, tok.error().message)};
  return create(config, std::shared_ptr<const Model>(std::move(*model)),
                std::shared_ptr<const Tokenizer>(std::move(*tok)));
}

Result<std::unique_ptr<Engine>> Engine::create(const EngineConfig& config, std::shared_ptr<const Model> model,
                                               std::shared_ptr<const Tokenizer> tokenizer) {
  auto im = std::make_unique<Impl>();
  EngineConfig& c = im->config;
  c = config;
  if (c.block_size <= 0 || c.max_num_seqs <= 0 || c.max_num_batched_tokens <= 0)
    return Error{"block_size, max_num_seqs and max_num_batched_tokens must be positive"};
  if (std::string e = c.speculative.validate(); !e.empty()) return Error{e};
  if (c.speculative.enabled() && !c.speculative.tree.empty() &&
      1 + c.speculative.max_draft_nodes() > c.max_num_batched_tokens)
    return Error{fmt::format(
        "--speculative-tree: a full tree is {} tokens with its root, more than the step's token budget "
        "(--max-num-batched-tokens {}); use a smaller tree or a larger budget",
        1 + c.speculative.max_draft_nodes(), c.max_num_batched_tokens)};
  const ModelConfig& mc = model->config();
  if (c.max_model_len <= 0) c.max_model_len = mc.n_ctx_train > 0 ? mc.n_ctx_train : 2048;
  im->model = std::move(model);
  im->tok = std::move(tokenizer);
  im->n_vocab = mc.n_vocab;

  RunnerOptions ro;
  ro.max_batch_tokens = c.max_num_batched_tokens;
  ro.max_seqs = c.max_num_seqs;
  ro.n_threads = c.n_threads;
  ro.hybrid_kv = c.hybrid_kv_cache;
  auto target_runner = std::make_unique<CpuRunner>(*im->model, ro);
  std::unique_ptr<Runner> draft_runner;
  if (c.speculative.method == SpecMethod::Draft) {
    auto dr = load_draft_model(c.speculative.draft_model, *im->tok);
    if (!dr) return dr.error();
    im->draft_model = std::move(*dr);
    RunnerOptions dro = ro;
    dro.pool = target_runner->pool();  // one after the other on the same threads
    draft_runner = std::make_unique<CpuRunner>(*im->draft_model, dro);
    im->draft_cost_ratio =
        double(im->draft_model->gguf().file_size()) / double(im->model->gguf().file_size());
  } else if (c.speculative.method == SpecMethod::LayerSkip) {
    // The model drafts for itself with layers left out: same weights, a KV cache of its
    // own (the skipped layers' slots in it stay unused).
    std::vector<uint8_t> skip = default_skip_layers(mc.n_layers);
    if (!c.speculative.skip_layers.empty()) {
      auto parsed = parse_skip_layers(c.speculative.skip_layers, mc.n_layers);
      if (!parsed) return parsed.error();
      skip = std::move(*parsed);
    }
    if (std::count(skip.begin(), skip.end(), 1) == 0)
      return Error{
          fmt::format("--speculative-method layerskip: the model has {} layers, too few to skip any by "
                      "default; give --speculative-skip-layers",
                      mc.n_layers)};
    RunnerOptions dro = ro;
    dro.pool = target_runner->pool();
    im->draft_cost_ratio = 1.0 - double(std::count(skip.begin(), skip.end(), 1)) / double(mc.n_layers);
    dro.skip_layers = std::move(skip);
    draft_runner = std::make_unique<CpuRunner>(*im->model, dro);
  }
  im->runner = std::move(target_runner);

  // KV-cache size: blocks explicitly, or a memory budget divided by the bytes of a block
  // (a draft model's cache holds as many blocks, from the same budget).
  const size_t per_block =
      im->runner->kv_bytes_per_block(c.block_size, c.kv_cache_dtype) +
      (draft_runner ? draft_runner->kv_bytes_per_block(c.block_size, c.kv_cache_dtype) : 0);
  const int64_t blocks_per_seq = (c.max_model_len + c.block_size - 1) / c.block_size;
  // Blocks given explicitly are of every layer: a hybrid cache's blocks hold one group's
  // layers, so the same bytes are that many blocks per group.
  const int64_t n_groups = int64_t(im->runner->kv_group_windows().size());
  int64_t n_blocks = int64_t(c.num_kv_blocks) * n_groups;
  if (n_blocks <= 0) {
    if (c.kv_cache_memory > 0) {
      n_blocks = c.kv_cache_memory / int64_t(per_block);
    } else {
      n_blocks = int64_t(double(available_memory()) * c.kv_cache_fraction) / int64_t(per_block);
      // More than every sequence at full length could use is only prefix cache: cap it
      // so a tiny model does not claim a quarter of the machine.
      n_blocks = std::min<int64_t>(n_blocks, blocks_per_seq * n_groups * c.max_num_seqs * 2);
    }
  }
  if (n_blocks < 1)
    return Error{fmt::format("KV cache budget too small: one block of {} tokens needs {} bytes", c.block_size,
                             per_block)};
  n_blocks = std::min<int64_t>(n_blocks, 1 << 30);
  c.num_kv_blocks = int(n_blocks);
  c.kv_cache_memory = n_blocks * int64_t(per_block);
  if (auto st = im->runner->allocate_kv(c.num_kv_blocks, c.block_size, c.kv_cache_dtype); !st)
    return st.error();
  if (draft_runner)
    if (auto st = draft_runner->allocate_kv(c.num_kv_blocks, c.block_size, c.kv_cache_dtype); !st)
      return st.error();

  BlockManagerConfig bc;
  bc.n_blocks = c.num_kv_blocks;
  bc.block_size = c.block_size;
  bc.enable_prefix_caching = c.enable_prefix_caching;
  bc.max_blocks_per_seq = int(std::min<int64_t>(blocks_per_seq, n_blocks));
  const std::span<const int> groups = im->runner->kv_group_windows();
  bc.group_windows.assign(groups.begin(), groups.end());
  im->blocks = std::make_unique<BlockManager>(bc);

  SchedulerConfig sc;
  sc.max_num_seqs = c.max_num_seqs;
  sc.max_num_batched_tokens = c.max_num_batched_tokens;
  sc.max_model_len = c.max_model_len;
  sc.enable_chunked_prefill = c.enable_chunked_prefill;
  sc.max_chunk_tokens = c.max_chunk_tokens;
  im->sched = std::make_unique<Scheduler>(sc, *im->blocks);

  for (int32_t t = 0; t < im->tok->n_vocab(); ++t)
    if (im->tok->is_eog(t)) im->eos_ids.push_back(t);
  im->sampler = std::make_unique<Sampler>(im->n_vocab, im->eos_ids);
  im->slices.reserve(size_t(c.max_num_seqs));
  im->counters.block_size = c.block_size;
  if (c.speculative.enabled()) {
    if (draft_runner) {
      DraftModelOptions o;
      o.n_blocks = c.num_kv_blocks;
      o.block_size = c.block_size;
      o.group_windows.assign(draft_runner->kv_group_windows().begin(),
                             draft_runner->kv_group_windows().end());
      o.max_batch_tokens = c.max_num_batched_tokens;
      o.max_seqs = c.max_num_seqs;
      o.max_draft = c.speculative.num_tokens;
      o.tree = c.speculative.tree;
      im->proposer = std::make_unique<DraftModelProposer>(std::move(draft_runner), o);
      im->spec_p.resize(size_t(im->n_vocab));
      im->spec_w.resize(size_t(im->n_vocab));
    } else {
      im->proposer = make_proposer(c.speculative);
    }
    im->chooser.m = im.get();
    im->spec_cost = std::make_unique<SpecCostModel>(c.max_num_batched_tokens);
    im->counters.spec_accepted_per_pos.assign(size_t(c.speculative.num_tokens), 0);
    std::string tree;
    for (int b : c.speculative.tree) tree += (tree.empty() ? ", tree " : ",") + std::to_string(b);
    log_info("engine: speculative decoding: {} (k {}{}, {}{})", spec_method_name(c.speculative.method),
             c.speculative.num_tokens, tree,
             im->draft_model ? "draft model " + c.speculative.draft_model
             : c.speculative.method == SpecMethod::LayerSkip
                 ? "skipping layers " + (c.speculative.skip_layers.empty() ? std::string("(default)")
                                                                           : c.speculative.skip_layers)
                 : fmt::format("n-gram {}..{}", c.speculative.ngram_min, c.speculative.ngram_max),
             c.speculative.adaptive ? ", adaptive" : "");
  }
  std::string kv_groups;
  if (groups.size() > 1 || groups[0] > 0) {
    for (int w : groups) kv_groups += (kv_groups.empty() ? "" : ",") + (w ? std::to_string(w) : "full");
    kv_groups = fmt::format(", hybrid: {} KV groups, windows {}", groups.size(), kv_groups);
  }
  // The longest context the whole pool holds (windowed groups hold only their window).
  int64_t lo = 0, hi = int64_t(1) << 31;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (im->blocks->max_blocks_held(mid, c.max_num_batched_tokens) <= c.num_kv_blocks)
      lo = mid;
    else
      hi = mid - 1;
  }
  log_info(
      "engine: {} KV blocks of {} tokens = {} tokens ({:.1f} MiB, {}{}), max_model_len {}, max_num_seqs {}, "
      "budget {} tokens",
      c.num_kv_blocks, c.block_size, lo, double(c.kv_cache_memory) / (1 << 20),
      kv_dtype_name(c.kv_cache_dtype), kv_groups, c.max_model_len, c.max_num_seqs, c.max_num_batched_tokens);
  return std::unique_ptr<Engine>(new Engine(std::move(im)));
}

void Engine::Impl::start_seq(SeqSlot& slot) {
  if (!proposer) return;
  const SpeculativeConfig& sc = config.speculative;
  slot.verify.assign(size_t(sc.max_draft_nodes()) + 1, 0);
  if (!sc.tree.empty()) {
    slot.tree_parent.assign(slot.verify.size(), -1);
    slot.tree_depth.assign(slot.verify.size(), 0);
    slot.tree_lanes.assign(slot.verify.size(), 0);
    slot.draft_parent.assign(slot.verify.size() - 1, -1);
  }
  slot.shadow.reserve(size_t(sc.num_tokens));
  slot.shadow_pos = -1;
  const SamplingParams& p = *slot.req.params;
  // A tree's draft is the draft model's best tokens, not a sample: no q to record.
  if (proposer->model_based() && !p.greedy() && sc.tree.empty()) {
    slot.draft_q.assign(size_t(sc.num_tokens) * size_t(n_vocab), 0.0f);
    if (p.seed) {
      slot.draft_rng.seed(*p.seed, 0x5EC0000u + uint64_t(slot.index));  // apart from the sampler's streams
    } else {
      slot.draft_rng.seed_random();
    }
  }
  slot.spec_k = sc.num_tokens;
  proposer->start(slot.req.seq, slot.req.num_prompt_tokens + slot.req.params->max_tokens);
}

SeqId Engine::Impl::new_slot(int group, int index) {
  SeqId s;
  if (!free_slots.empty()) {
    s = free_slots.back();
    free_slots.pop_back();
  } else {
    s = SeqId(slots.size());
    slots.push_back(nullptr);
  }
  slots[s] = std::make_unique<SeqSlot>();
  slots[s]->req.seq = s;
  slots[s]->group = group;
  slots[s]->index = index;
  return s;
}

int Engine::Impl::new_group() {
  int g;
  if (!free_groups.empty()) {
    g = free_groups.back();
    free_groups.pop_back();
  } else {
    g = int(groups.size());
    groups.push_back(nullptr);
  }
  groups[g] = std::make_unique<Group>();
  return g;
}

void Engine::Impl::release_group(int g) {
  Group& grp = *groups[g];
  for (SeqId s : grp.seqs) {
    SeqSlot& slot = *slots[s];
    if (slot.req.status != RequestStatus::Finished) {
      sched->remove(&slot.req);
      if (proposer) proposer->release(s);
    }
    slots[s].reset();
    free_slots.push_back(s);
  }
  by_id.erase(grp.id);
  groups[g].reset();
  free_groups.push_back(g);
}

Status Engine::add_request(std::string id, std::string_view prompt, const SamplingParams& params,
                           int priority) {
  return add_request(std::move(id), impl_->tok->encode(prompt, /*add_special=*/true, /*parse_special=*/true),
                     params, priority);
}

Status Engine::add_request(std::string id, std::vector<int32_t> prompt_tokens, const SamplingParams& params,
                           int priority) {
  Impl& m = *impl_;
  if (m.by_id.count(id)) return Error{fmt::format("request id '{}' is already in use", id)};
  if (auto st = check_request(prompt_tokens, params); !st) return st;

  const int g = m.new_group();
  Group& grp = *m.groups[g];
  grp.id = id;
  grp.params = params;
  grp.buffered = params.effective_best_of() > params.n;
  const SeqId s = m.new_slot(g, 0);
  grp.seqs.push_back(s);
  SeqSlot& slot = *m.slots[s];
  Request& r = slot.req;
  r.num_prompt_tokens = int(prompt_tokens.size());
  r.token_ids = std::move(prompt_tokens);
  r.token_ids.reserve(size_t(r.num_prompt_tokens + params.max_tokens));
  r.params = &grp.params;
  r.priority = priority;
  r.arrival = m.next_arrival++;
  r.skip_prefix_cache = params.prompt_logprobs >= 0;
  slot.sampler.init(grp.params, r.token_ids, 0);
  slot.detok.emplace(*m.tok, params.skip_special_tokens);
  slot.stop.emplace(grp.params, m.eos_ids);
  m.start_seq(slot);
  m.by_id.emplace(std::move(id), g);
  m.sched->add(&r);
  return ok_status();
}

Status Engine::check_request(std::span<const int32_t> prompt_tokens, const SamplingParams& params) const {
  const Impl& m = *impl_;
  if (auto st = params.validate(m.n_vocab); !st) return st.error();
  for (int32_t t : prompt_tokens)
    if (t < 0 || t >= m.n_vocab)
      return Error{fmt::format("prompt token {} is out of vocabulary (size {})", t, m.n_vocab)};
  return m.sched->check_admissible(int(prompt_tokens.size()), params.max_tokens);
}

bool Engine::abort(std::string_view id) {
  Impl& m = *impl_;
  auto it = m.by_id.find(std::string(id));
  if (it == m.by_id.end()) return false;
  const int g = it->second;
  Group& grp = *m.groups[g];
  // One final output per completion not yet reported finished: all n of them if the
  // group is buffered (best_of > n) or has not forked yet.
  for (int i = 0; i < grp.params.n; ++i) {
    const SeqSlot* slot =
        !grp.buffered && size_t(i) < grp.seqs.size() ? m.slots[grp.seqs[size_t(i)]].get() : nullptr;
    if (slot && slot->finished) continue;
    RequestOutput& o = m.pending.emplace_back();
    o.request_id = grp.id;
    o.index = i;
    o.finished = true;
    o.aborted = true;
    if (slot) {
      o.num_prompt_tokens = slot->req.num_prompt_tokens;
      o.num_output_tokens = slot->req.num_output_tokens();
    }
  }
  m.release_group(g);
  return true;
}

bool Engine::has_unfinished() const {
  return impl_->sched->has_unfinished() || !impl_->pending.empty();
}

const std::vector<RequestOutput>& Engine::step() {
  impl_->step();
  return impl_->outputs;
}

EngineStats Engine::stats() const {
  const Impl& m = *impl_;
  EngineStats s = m.counters;
  s.preemptions = m.sched->num_preemptions();
  s.running = m.sched->num_running();
  s.waiting = m.sched->num_waiting();
  BlockManagerStats b = m.blocks->stats();
  s.blocks_total = b.blocks_total;
  s.blocks_used = b.blocks_used;
  s.blocks_cached = b.blocks_cached;
  s.prefix_cache_hit_rate = b.prefix_hit_rate();
  s.kv_fragmentation = b.fragmentation();
  s.kv_usage = b.usage();
  s.attention_split_tiles = m.runner->stats().split_tiles;
  if (m.proposer) {
    s.spec_draft_blocks_used = m.proposer->kv_blocks_used();
    s.spec_draft_forwards = m.proposer->forwards();
  }
  return s;
}

const Tokenizer& Engine::tokenizer() const {
  return *impl_->tok;
}
const EngineConfig& Engine::config() const {
  return impl_->config;
}
int32_t Engine::n_vocab() const {
  return impl_->n_vocab;
}

}  // namespace kvserve

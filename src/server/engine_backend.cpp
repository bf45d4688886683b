// EngineBackend: RequestOutput -> GenDelta over AsyncEngine. See engine_backend.h.
#include "server/engine_backend.h"

#include <string>

namespace kvserve::server {

namespace {

std::string engine_id(uint64_t id) {
  return std::to_string(id);
}

// Per submission, touched only by the engine thread (inside callbacks).
struct Progress {
  DeltaFn on_delta;
  bool got_output = false;
};

GenDelta to_delta(const RequestOutput& o, Progress& p) {
  GenDelta d;
  d.index = o.index;
  d.token_ids = o.token_ids;
  d.text = o.text;
  d.logprobs = o.logprobs;
  d.prompt_logprobs = o.prompt_logprobs;
  if (const char* r = o.finish_reason_name()) d.finish_reason = r;
  if (!p.got_output) {
    // The request's first output carries when the engine first scheduled it.
    p.got_output = true;
    d.first_scheduled = o.first_scheduled;
    d.num_cached_tokens = std::max(0, o.num_cached_tokens);
  }
  return d;
}

}  // namespace

EngineBackend::EngineBackend(std::unique_ptr<Engine> engine) {
  max_model_len_ = engine->config().max_model_len;
  kv_dtype_ = engine->config().kv_cache_dtype;
  kv_block_size_ = engine->config().block_size;
  kv_blocks_ = engine->config().num_kv_blocks;
  async_ = std::make_unique<AsyncEngine>(std::move(engine));
}

EngineBackend::~EngineBackend() {
  stop();
}

void EngineBackend::stop() {
  std::lock_guard<std::mutex> lock(stop_mu_);
  async_.reset();  // its destructor aborts everything and delivers the final outputs
}

Result<std::vector<uint64_t>> EngineBackend::submit(std::vector<Submission> subs) {
  if (!async_) return Error{"the engine is shutting down"};
  std::vector<uint64_t> ids;
  ids.reserve(subs.size());
  for (Submission& sub : subs) {
    const uint64_t id = next_id_.fetch_add(1);
    auto progress = std::make_shared<Progress>();
    progress->on_delta = std::move(sub.on_delta);
    Status st = async_->add_request(
        engine_id(id), std::move(sub.prompt), sub.params,
        [progress](const RequestOutput& o) { progress->on_delta(to_delta(o, *progress)); });
    if (!st) {
      // All or none: the ones already queued leave again; their callbacks go nowhere.
      for (uint64_t done : ids) async_->abort(engine_id(done));
      return st.error();
    }
    ids.push_back(id);
  }
  return ids;
}

void EngineBackend::abort(uint64_t id) {
  if (async_) async_->abort(engine_id(id));
}

BackendStats EngineBackend::stats() const {
  // AsyncEngine copies the stats under its lock after every step: never waits for one.
  EngineStats st = async_ ? async_->stats() : EngineStats{};
  BackendStats s;
  s.num_running = st.running;
  s.num_waiting = st.waiting;
  s.kv_cache_usage = st.kv_usage;
  s.num_preemptions = uint64_t(st.preemptions);
  s.generated_tokens = uint64_t(st.generated_tokens);
  s.spec_drafts = uint64_t(st.spec_drafts);
  s.spec_draft_tokens = uint64_t(st.spec_draft_tokens);
  s.spec_accepted_tokens = uint64_t(st.spec_accepted_tokens);
  s.spec_accepted_per_pos.assign(st.spec_accepted_per_pos.begin(), st.spec_accepted_per_pos.end());
  s.kv_cache_dtype = kv_dtype_name(kv_dtype_);
  s.kv_cache_block_size = kv_block_size_;
  s.kv_cache_blocks = kv_blocks_;
  return s;
}

const Tokenizer& EngineBackend::tokenizer() const {
  return async_->tokenizer();
}

int EngineBackend::max_model_len() const {
  return max_model_len_;
}

}  // namespace kvserve::server

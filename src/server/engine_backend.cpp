// EngineBackend: the engine loop thread. See engine_backend.h.
#include "server/engine_backend.h"

#include "core/log.h"

namespace kvserve::server {

namespace {
std::string engine_id(uint64_t id) {
  return std::to_string(id);
}
}  // namespace

EngineBackend::EngineBackend(std::unique_ptr<Engine> engine) : engine_(std::move(engine)) {
  max_model_len_ = engine_->config().max_model_len;
  publish_stats();
  thread_ = std::thread([this] { loop(); });
}

EngineBackend::~EngineBackend() {
  stop();
}

void EngineBackend::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      if (!thread_.joinable()) return;
    }
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Result<std::vector<uint64_t>> EngineBackend::submit(std::vector<Submission> subs) {
  Command cmd;
  cmd.kind = Command::Add;
  for (size_t i = 0; i < subs.size(); ++i) cmd.ids.push_back(next_id_.fetch_add(1));
  cmd.subs = std::move(subs);
  std::vector<uint64_t> ids = cmd.ids;
  std::future<Status> accepted = cmd.accepted.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return Error{"the engine is shutting down"};
    inbox_.push_back(std::move(cmd));
  }
  cv_.notify_one();
  // The loop takes the inbox before every step, so this waits at most one step.
  Status st = accepted.get();
  if (!st) return st.error();
  return ids;
}

void EngineBackend::abort(uint64_t id) {
  Command cmd;
  cmd.kind = Command::Abort;
  cmd.ids = {id};
  {
    std::lock_guard<std::mutex> lock(mu_);
    inbox_.push_back(std::move(cmd));
  }
  cv_.notify_one();
}

BackendStats EngineBackend::stats() const {
  BackendStats s;
  s.num_running = running_.load(std::memory_order_relaxed);
  s.num_waiting = waiting_.load(std::memory_order_relaxed);
  s.kv_cache_usage = kv_usage_.load(std::memory_order_relaxed);
  s.num_preemptions = preemptions_.load(std::memory_order_relaxed);
  return s;
}

const Tokenizer& EngineBackend::tokenizer() const {
  return engine_->tokenizer();
}

int EngineBackend::max_model_len() const {
  return max_model_len_;
}

void EngineBackend::publish_stats() {
  EngineStats st = engine_->stats();
  running_.store(st.running, std::memory_order_relaxed);
  waiting_.store(st.waiting, std::memory_order_relaxed);
  kv_usage_.store(st.kv_usage, std::memory_order_relaxed);
  preemptions_.store(uint64_t(st.preemptions), std::memory_order_relaxed);
}

void EngineBackend::run_commands(std::vector<Command>& cmds) {
  for (Command& c : cmds) {
    if (c.kind == Command::Abort) {
      engine_->abort(engine_id(c.ids[0]));
      continue;
    }
    Status st = ok_status();
    size_t added = 0;
    for (; added < c.subs.size(); ++added) {
      Submission& sub = c.subs[added];
      st = engine_->add_request(engine_id(c.ids[added]), std::move(sub.prompt), sub.params);
      if (!st) break;
    }
    if (!st) {
      // All or none: the earlier ones of this command leave again, unseen.
      for (size_t k = 0; k < added; ++k) engine_->abort(engine_id(c.ids[k]));
    } else {
      for (size_t k = 0; k < c.subs.size(); ++k)
        live_.emplace(c.ids[k],
                      Live{std::move(c.subs[k].on_delta), std::max(1, c.subs[k].params.n), 0, false});
    }
    c.accepted.set_value(std::move(st));
  }
  cmds.clear();
}

void EngineBackend::dispatch(const std::vector<RequestOutput>& outputs, Clock::time_point step_start) {
  for (const RequestOutput& o : outputs) {
    const uint64_t id = std::stoull(o.request_id);
    auto it = live_.find(id);
    if (it == live_.end()) continue;
    Live& live = it->second;
    GenDelta d;
    d.index = o.index;
    d.token_ids = o.token_ids;
    d.text = o.text;
    d.logprobs = o.logprobs;
    d.prompt_logprobs = o.prompt_logprobs;
    if (const char* r = o.finish_reason_name()) d.finish_reason = r;
    if (!live.got_output) {
      // The step that produced the first output admitted the request (exact when the
      // prompt fits one step; with chunked prefill this is its last chunk).
      live.got_output = true;
      d.first_scheduled = step_start;
      d.num_cached_tokens = std::max(0, o.num_cached_tokens);
    }
    live.on_delta(std::move(d));
    if (o.finished && ++live.n_finished >= live.n) live_.erase(it);
  }
}

void EngineBackend::loop() {
  std::vector<Command> cmds;
  for (;;) {
    bool stopping = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !inbox_.empty() || engine_->has_unfinished(); });
      cmds.swap(inbox_);
      stopping = stopping_;
    }
    run_commands(cmds);
    if (stopping) {
      for (auto& [id, live] : live_) engine_->abort(engine_id(id));
      // Aborted requests report their end on the next steps; deliver those, then leave.
      for (int i = 0; i < 8 && !live_.empty() && engine_->has_unfinished(); ++i)
        dispatch(engine_->step(), Clock::now());
      for (auto& [id, live] : live_)
        for (int k = live.n_finished; k < live.n; ++k) {
          GenDelta d;
          d.index = k;
          d.finish_reason = "abort";
          live.on_delta(std::move(d));
        }
      live_.clear();
      std::lock_guard<std::mutex> lock(mu_);
      for (Command& c : inbox_)
        if (c.kind == Command::Add) c.accepted.set_value(Error{"the engine is shutting down"});
      inbox_.clear();
      return;
    }
    if (!engine_->has_unfinished()) continue;
    const Clock::time_point start = Clock::now();
    const std::vector<RequestOutput>& outputs = engine_->step();
    // Stats first: a client that has seen its request finish must not then read
    // /metrics from before that step.
    publish_stats();
    dispatch(outputs, start);
  }
}

}  // namespace kvserve::server

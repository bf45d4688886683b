#include "engine/async_engine.h"

#include <fmt/format.h>

#include "tokenizer/tokenizer.h"

namespace kvserve {

AsyncEngine::AsyncEngine(std::unique_ptr<Engine> engine) : engine_(std::move(engine)) {
  stats_ = engine_->stats();
  thread_ = std::thread([this] { loop(); });
}

AsyncEngine::~AsyncEngine() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

Status AsyncEngine::add_request(std::string id, std::string_view prompt, const SamplingParams& params,
                                Callback cb, int priority) {
  return add_request(std::move(id), engine_->tokenizer().encode(prompt, true, true), params, std::move(cb),
                     priority);
}

Status AsyncEngine::add_request(std::string id, std::vector<int32_t> prompt_tokens,
                                const SamplingParams& params, Callback cb, int priority) {
  if (auto st = engine_->check_request(prompt_tokens, params); !st) return st;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stop_) return Error{"the engine is shutting down"};
    if (active_.count(id)) return Error{fmt::format("request id '{}' is already in use", id)};
    active_.emplace(id, Active{std::move(cb), params.n});
    incoming_.push_back(Pending{std::move(id), std::move(prompt_tokens), params, priority});
  }
  cv_.notify_one();
  return ok_status();
}

bool AsyncEngine::abort(const std::string& id) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!active_.count(id)) return false;
    aborts_.push_back(id);
  }
  cv_.notify_one();
  return true;
}

EngineStats AsyncEngine::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return stats_;
}

int AsyncEngine::num_active() const {
  std::lock_guard<std::mutex> lk(mu_);
  return int(active_.size());
}

void AsyncEngine::loop() {
  std::vector<Pending> adds;
  std::vector<std::string> aborts;
  for (;;) {
    bool stopping;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk,
               [&] { return stop_ || !incoming_.empty() || !aborts_.empty() || engine_->has_unfinished(); });
      adds.swap(incoming_);
      aborts.swap(aborts_);
      stopping = stop_;
      if (stopping) {
        // Everything still known gets aborted below, queued or running.
        for (const Pending& p : adds) aborts.push_back(p.id);
        adds.clear();
      }
    }
    auto deliver = [this](const RequestOutput& o) {
      Callback cb;
      bool last = false;
      {
        std::lock_guard<std::mutex> lk(mu_);
        auto it = active_.find(o.request_id);
        if (it == active_.end()) return;
        if (o.finished) last = --it->second.open <= 0;
        cb = last ? std::move(it->second.cb) : it->second.cb;
        if (last) active_.erase(it);
      }
      if (cb) cb(o);  // outside the lock: the callback may call add_request / abort
    };
    for (Pending& p : adds) {
      if (auto st = engine_->add_request(p.id, std::move(p.tokens), p.params, p.priority); !st) {
        RequestOutput o;  // cannot happen after check_request, but never leave a caller waiting
        o.request_id = p.id;
        o.finished = o.aborted = true;
        for (int i = 0; i < p.params.n; ++i) {
          o.index = i;
          deliver(o);
        }
      }
    }
    adds.clear();
    for (const std::string& id : aborts) engine_->abort(id);
    aborts.clear();
    if (stopping) {
      std::vector<std::string> left;
      {
        std::lock_guard<std::mutex> lk(mu_);
        for (const auto& [id, a] : active_) left.push_back(id);
      }
      for (const std::string& id : left) engine_->abort(id);
    }
    if (engine_->has_unfinished())
      for (const RequestOutput& o : engine_->step()) deliver(o);
    {
      std::lock_guard<std::mutex> lk(mu_);
      stats_ = engine_->stats();
    }
    if (stopping && !engine_->has_unfinished()) {
      // Requests queued but never added (stopping) still owe their callers a final delta.
      std::vector<std::pair<std::string, Active>> rest;
      {
        std::lock_guard<std::mutex> lk(mu_);
        for (auto& kv : active_) rest.emplace_back(kv.first, std::move(kv.second));
        active_.clear();
      }
      for (auto& [id, a] : rest) {
        RequestOutput o;
        o.request_id = id;
        o.finished = o.aborted = true;
        if (a.cb) a.cb(o);
      }
      return;
    }
  }
}

}  // namespace kvserve

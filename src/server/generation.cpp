// Generation: deltas in, OpenAI bodies / SSE events out. See generation.h.
#include "server/generation.h"

#include <algorithm>
#include <cassert>

#include "tokenizer/tokenizer.h"

namespace kvserve::server {

namespace {
double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

FinishKind finish_kind(const std::string& r) {
  if (r == "length") return FinishKind::Length;
  if (r == "stop") return FinishKind::Stop;
  return FinishKind::Abort;
}
}  // namespace

Generation::Generation(Backend& backend, ServerMetrics& metrics, const ApiRequest& req,
                       std::vector<PreparedPrompt> prompts, ResponseMeta meta, Clock::time_point arrival)
    : backend_(backend),
      metrics_(metrics),
      req_(req),
      prompts_(std::move(prompts)),
      meta_(std::move(meta)),
      arrival_(arrival) {
  n_per_prompt_ = std::max(1, req_.params.effective_best_of());
  choices_.resize(prompts_.size() * size_t(n_per_prompt_));
  for (size_t i = 0; i < choices_.size(); ++i) {
    choices_[i].prompt = int(i) / n_per_prompt_;
    choices_[i].index = int(i);
  }
  prompt_state_.resize(prompts_.size());
  for (auto& ps : prompt_state_) ps.unfinished = n_per_prompt_;
  unfinished_ = int(choices_.size());
}

Generation::~Generation() {
  if (unfinished_ > 0) abort();
}

Status Generation::start() {
  std::weak_ptr<Generation> weak = weak_from_this();
  std::vector<Submission> subs;
  subs.reserve(prompts_.size());
  for (size_t p = 0; p < prompts_.size(); ++p) {
    SamplingParams sp = prompts_[p].params;
    sp.n = n_per_prompt_;
    sp.best_of = 0;
    if (n_per_prompt_ > req_.params.n && !sp.wants_logprobs()) {
      // best_of ranks candidates by cumulative logprob, which needs the sampled token's.
      sp.logprobs = 0;
      hide_logprobs_ = true;
    }
    const int prompt = int(p);
    subs.push_back(Submission{prompts_[p].ids, sp, [weak, prompt](GenDelta&& d) {
                                if (auto self = weak.lock()) self->on_delta(prompt, std::move(d));
                              }});
  }
  auto ids = backend_.submit(std::move(subs));
  if (!ids) {
    unfinished_ = 0;  // nothing was queued
    return ids.error();
  }
  for (size_t p = 0; p < prompts_.size(); ++p) {
    prompt_state_[p].id = (*ids)[p];
    prompt_state_[p].submitted = true;
  }
  return ok_status();
}

void Generation::on_delta(int prompt, GenDelta&& d) {
  Clock::time_point now = Clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(Event{prompt, std::move(d), now});
  }
  cv_.notify_one();
}

void Generation::abort() {
  // Reads only what start() wrote, so shutdown() may call this from another thread;
  // aborting an already finished request is a no-op in the backend.
  for (const PromptState& ps : prompt_state_)
    if (ps.submitted) backend_.abort(ps.id);
}

void Generation::abandon() {
  abort();
  const Clock::time_point now = Clock::now();
  for (Choice& c : choices_)
    if (c.finish_reason.empty()) {
      c.finish_reason = "abort";
      record_finish(c, now);
    }
  unfinished_ = 0;
}

bool Generation::finished() const {
  return unfinished_ == 0;
}

TokenLogprob Generation::convert(const LogprobsEntry& e) const {
  const Tokenizer& tok = backend_.tokenizer();
  TokenLogprob t;
  t.piece = tok.token_to_piece(e.token);
  t.logprob = e.logprob;
  t.top.reserve(e.top.size());
  for (const auto& alt : e.top) t.top.emplace_back(tok.token_to_piece(alt.token), alt.logprob);
  return t;
}

std::vector<TokenLogprob> Generation::echo_logprobs(int prompt, const std::vector<LogprobsEntry>& lps) const {
  // The first prompt token has no context and so no logprob (null in the response);
  // lps holds the rest, one per prompt token after the first.
  const Tokenizer& tok = backend_.tokenizer();
  const std::vector<int32_t>& ids = prompts_[size_t(prompt)].ids;
  std::vector<TokenLogprob> out;
  out.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i >= 1 && i - 1 < lps.size()) {
      out.push_back(convert(lps[i - 1]));
      out.back().piece = tok.token_to_piece(ids[i]);
    } else {
      TokenLogprob t;
      t.piece = tok.token_to_piece(ids[i]);
      t.has_logprob = false;
      out.push_back(std::move(t));
    }
  }
  return out;
}

void Generation::record_finish(Choice& c, Clock::time_point at) {
  metrics_.record_finish(finish_kind(c.finish_reason));
  PromptState& ps = prompt_state_[size_t(c.prompt)];
  if (--ps.unfinished > 0) return;
  // The last choice of this prompt: request-level histograms, as vLLM records them.
  int64_t gen = 0;
  for (const Choice& o : choices_)
    if (o.prompt == c.prompt) gen += o.num_tokens;
  const int64_t n_prompt = int64_t(prompts_[size_t(c.prompt)].ids.size());
  metrics_.e2e_request_latency.observe(seconds(at - arrival_));
  metrics_.request_prompt_tokens.observe(double(n_prompt));
  metrics_.request_generation_tokens.observe(double(gen));
  metrics_.prompt_tokens.inc(uint64_t(n_prompt));
}

void Generation::apply(Event& ev, std::string* out) {
  GenDelta& d = ev.delta;
  assert(d.index >= 0 && d.index < n_per_prompt_);
  Choice& c = choices_[size_t(ev.prompt * n_per_prompt_ + d.index)];
  PromptState& ps = prompt_state_[size_t(ev.prompt)];
  const bool chat = req_.kind == ApiKind::Chat;
  const bool want_lp = req_.params.wants_logprobs() && !hide_logprobs_;

  const size_t n_new = d.token_ids.size();
  if (d.num_cached_tokens >= 0) {
    metrics_.prefix_cache_queries.inc(prompts_[size_t(ev.prompt)].ids.size());
    metrics_.prefix_cache_hits.inc(uint64_t(d.num_cached_tokens));
  }
  if (n_new > 0) {
    if (!ps.first_token_seen) {
      ps.first_token_seen = true;
      metrics_.time_to_first_token.observe(seconds(ev.at - arrival_));
      if (d.first_scheduled) metrics_.request_queue_time.observe(seconds(*d.first_scheduled - arrival_));
    }
    if (c.num_tokens > 0) {
      metrics_.inter_token_latency.observe(seconds(ev.at - c.last_token));
    } else {
      c.first_token = ev.at;
    }
    c.last_token = ev.at;
    c.num_tokens += int64_t(n_new);
    metrics_.generation_tokens.inc(n_new);
  }
  for (const LogprobsEntry& e : d.logprobs) c.cum_logprob += e.logprob;

  std::vector<TokenLogprob> lps;
  if (want_lp) {
    lps.reserve(d.logprobs.size());
    for (const LogprobsEntry& e : d.logprobs) lps.push_back(convert(e));
  }

  std::vector<TokenLogprob> echo_lps;
  if (!c.started) {
    c.started = true;
    if (req_.echo) {
      const std::string& ptext = prompts_[size_t(c.prompt)].text;
      if (want_lp) echo_lps = echo_logprobs(c.prompt, d.prompt_logprobs);
      if (out) {
        *out += completion_chunk(meta_, c.index, ptext, want_lp ? &echo_lps : nullptr, &c.text_offset, "",
                                 req_.include_usage);
      } else {
        c.text = ptext;
        c.logprobs = std::move(echo_lps);
      }
    }
  }

  if (!d.finish_reason.empty()) c.finish_reason = d.finish_reason;
  if (out) {
    if (!d.text.empty() || !lps.empty() || !d.finish_reason.empty()) {
      *out += chat ? chat_chunk(meta_, c.index, false, d.text, want_lp ? &lps : nullptr, d.finish_reason,
                                req_.include_usage)
                   : completion_chunk(meta_, c.index, d.text, want_lp ? &lps : nullptr, &c.text_offset,
                                      d.finish_reason, req_.include_usage);
    }
  } else {
    c.text += d.text;
    for (auto& t : lps) c.logprobs.push_back(std::move(t));
  }

  if (!d.finish_reason.empty()) {
    if (c.num_tokens > 1)
      metrics_.time_per_output_token.observe(seconds(c.last_token - c.first_token) /
                                             double(c.num_tokens - 1));
    record_finish(c, ev.at);
    --unfinished_;
  }
}

Usage Generation::usage() const {
  Usage u;
  for (const PreparedPrompt& p : prompts_) u.prompt_tokens += int64_t(p.ids.size());
  for (const Choice& c : choices_) u.completion_tokens += c.num_tokens;
  return u;
}

bool Generation::wait_finished(std::chrono::milliseconds wait) {
  const Clock::time_point deadline = Clock::now() + wait;
  std::deque<Event> batch;
  while (unfinished_ > 0) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (!cv_.wait_until(lock, deadline, [&] { return !queue_.empty(); })) return false;
      batch.swap(queue_);
    }
    for (Event& ev : batch) apply(ev, nullptr);
    batch.clear();
  }
  return true;
}

std::string Generation::body() {
  assert(unfinished_ == 0);
  // best_of: keep each prompt's n most likely sequences, in that order.
  const int n = req_.params.n;
  std::vector<ChoiceResult> results;
  for (size_t p = 0; p < prompts_.size(); ++p) {
    std::vector<Choice*> group;
    for (int i = 0; i < n_per_prompt_; ++i) group.push_back(&choices_[p * size_t(n_per_prompt_) + size_t(i)]);
    if (n_per_prompt_ > n)
      std::stable_sort(group.begin(), group.end(),
                       [](const Choice* a, const Choice* b) { return a->cum_logprob > b->cum_logprob; });
    for (int j = 0; j < n; ++j) {
      Choice& c = *group[size_t(j)];
      ChoiceResult r;
      r.index = int(p) * n + j;
      r.text = std::move(c.text);
      r.finish_reason = c.finish_reason;
      r.has_logprobs = req_.params.wants_logprobs() && !hide_logprobs_;
      r.logprobs = std::move(c.logprobs);
      results.push_back(std::move(r));
    }
  }
  return req_.kind == ApiKind::Chat ? chat_body(meta_, results, usage())
                                    : completion_body(meta_, results, usage());
}

Generation::Poll Generation::next_events(std::string& out, std::chrono::milliseconds wait) {
  if (done_sent_) return Poll::Done;
  if (req_.kind == ApiKind::Chat) {
    // The role chunk opens every choice, before any token is ready.
    for (Choice& c : choices_)
      if (!c.started) {
        c.started = true;
        out += chat_chunk(meta_, c.index, true, "", nullptr, "", req_.include_usage);
      }
  }
  std::deque<Event> batch;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (out.empty()) cv_.wait_for(lock, wait, [&] { return !queue_.empty(); });
    batch.swap(queue_);
  }
  for (Event& ev : batch) apply(ev, &out);
  if (unfinished_ == 0) {
    if (req_.include_usage) out += usage_chunk(meta_, req_.kind, usage());
    out += kSseDone;
    done_sent_ = true;
    return Poll::Done;
  }
  return out.empty() ? Poll::Idle : Poll::Data;
}

}  // namespace kvserve::server

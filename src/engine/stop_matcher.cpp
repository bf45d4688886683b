#include "engine/stop_matcher.h"

#include <algorithm>

namespace kvserve {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::None: break;
  }
  return nullptr;
}

StopMatcher::StopMatcher(const SamplingParams& p, std::span<const int32_t> eos_token_ids)
    : stops_(p.stop),
      stop_ids_(p.stop_token_ids),
      include_stop_(p.include_stop_str_in_output),
      max_tokens_(p.max_tokens),
      min_tokens_(p.min_tokens) {
  if (!p.ignore_eos) eos_.assign(eos_token_ids.begin(), eos_token_ids.end());
  // An empty stop string would match everywhere; validate() rejects it, drop it here too.
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
}

size_t StopMatcher::held_back_len() const {
  // Longest suffix of pending_ that is a proper prefix of some stop string.
  size_t hold = 0;
  const std::string_view text = pending_;
  for (const std::string& s : stops_) {
    for (size_t len = std::min(s.size() - 1, text.size()); len > hold; --len)
      if (text.substr(text.size() - len) == std::string_view(s).substr(0, len)) {
        hold = len;
        break;
      }
  }
  return hold;
}

StopMatcher::Result StopMatcher::push(std::string_view new_text) {
  Result r;
  if (stopped_) return r;
  const size_t old_size = pending_.size();
  pending_.append(new_text);

  // pending_ held no complete stop string before, so a match must end in the new text.
  size_t best_pos = std::string::npos;
  const std::string* best = nullptr;
  for (const std::string& s : stops_) {
    const size_t from = old_size >= s.size() ? old_size - s.size() + 1 : 0;
    const size_t pos = pending_.find(s, from);
    // Earliest match wins (its text is all that may be emitted); at equal positions the
    // first listed.
    if (pos != std::string::npos && (pos < best_pos)) {
      best_pos = pos;
      best = &s;
    }
  }
  if (best) {
    r.text = pending_.substr(0, best_pos + (include_stop_ ? best->size() : 0));
    r.stopped = true;
    stopped_ = true;
    stop_string_ = *best;
    pending_.clear();
    return r;
  }
  const size_t emit = pending_.size() - held_back_len();
  r.text = pending_.substr(0, emit);
  pending_.erase(0, emit);
  return r;
}

std::string StopMatcher::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

StopMatcher::TokenResult StopMatcher::push_token(int32_t token, std::string_view new_text) {
  TokenResult r;
  if (stopped_) return r;
  ++n_tokens_;

  const auto finish = [&](FinishReason why) {
    stopped_ = true;
    r.finish = why;
  };
  // As in vLLM, nothing but max_tokens ends generation before min_tokens tokens (the
  // sampler also keeps stop tokens and EOS from being sampled until then).
  const bool may_stop = n_tokens_ >= min_tokens_;
  if (may_stop && std::find(stop_ids_.begin(), stop_ids_.end(), token) != stop_ids_.end()) {
    r.text = flush();
    if (include_stop_) r.text.append(new_text);
    stop_token_ = token;
    finish(FinishReason::Stop);
    return r;
  }
  if (may_stop && std::find(eos_.begin(), eos_.end(), token) != eos_.end()) {
    r.text = flush();
    finish(FinishReason::Stop);
    return r;
  }

  if (may_stop) {
    Result s = push(new_text);
    r.text = std::move(s.text);
    if (s.stopped) {
      r.finish = FinishReason::Stop;
      return r;
    }
  } else {
    // Before min_tokens stop strings do not apply: emit everything.
    r.text = flush();
    r.text.append(new_text);
  }
  if (n_tokens_ >= max_tokens_) {
    r.text += flush();
    finish(FinishReason::Length);
  }
  return r;
}

}  // namespace kvserve

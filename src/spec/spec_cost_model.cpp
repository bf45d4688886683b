#include "spec/spec_cost_model.h"

#include <algorithm>

namespace kvserve {

SpecCostModel::SpecCostModel(int max_tokens) : ema_(size_t(std::max(max_tokens, 1)) + 1, 0.0) {}

void SpecCostModel::observe(int tokens, double seconds) {
  if (tokens <= 0 || tokens >= int(ema_.size()) || seconds <= 0) return;
  double& e = ema_[size_t(tokens)];
  e = e == 0.0 ? seconds : 0.8 * e + 0.2 * seconds;
}

double SpecCostModel::step_time(int tokens) const {
  tokens = std::clamp(tokens, 1, int(ema_.size()) - 1);
  if (ema_[size_t(tokens)] > 0) return ema_[size_t(tokens)];
  int lo = tokens - 1, hi = tokens + 1;
  while (lo >= 1 && ema_[size_t(lo)] == 0) --lo;
  while (hi < int(ema_.size()) && ema_[size_t(hi)] == 0) ++hi;
  const bool has_lo = lo >= 1, has_hi = hi < int(ema_.size());
  if (has_lo && has_hi) {
    const double f = double(tokens - lo) / double(hi - lo);
    return ema_[size_t(lo)] + f * (ema_[size_t(hi)] - ema_[size_t(lo)]);
  }
  return 0.0;  // beyond what was measured: unknown, so the next such step measures it
}

bool SpecCostModel::worth(int base_tokens, int draft_tokens, double expected_accepted,
                          double extra_seconds) const {
  if (draft_tokens <= 0 || base_tokens <= 0) return false;
  const double t_base = step_time(base_tokens);
  const double t_spec = step_time(base_tokens + draft_tokens);
  if (t_base == 0.0) return false;  // measure the plain step first: it is what drafting must beat
  if (t_spec == 0.0) return true;   // then the drafting one
  return (double(base_tokens) + expected_accepted) * t_base > double(base_tokens) * (t_spec + extra_seconds);
}

}  // namespace kvserve

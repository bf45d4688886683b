#include "sample/logprobs.h"

#include <algorithm>
#include <cassert>
#include <cmath>

#include "sample/sampler_kernels.h"
#include "sample/sampler_math.h"

namespace kvserve {

namespace sm = sampler_math;

float log_sum_exp(const float* x, int32_t n) {
  const auto& k = sampler_kernels();
  const float m = k.row_max(x, n);
  if (!(m > sm::kNegInf)) return sm::kNegInf;
  if (std::isinf(m)) return m;  // +inf logit: everything else has probability 0
  return m + float(std::log(k.sum_exp(x, n, m, 1.0f)));
}

void log_softmax(const float* x, int32_t n, float* out) {
  const float lse = log_sum_exp(x, n);
  for (int32_t i = 0; i < n; ++i) out[i] = x[i] - lse;
}

namespace {
// "a ranks before b": higher value, then lower id. A total order, so results are deterministic.
inline bool ranks_before(const TokenLogprob& a, const TokenLogprob& b) {
  return a.logprob > b.logprob || (a.logprob == b.logprob && a.token < b.token);
}
}  // namespace

void top_k_values(const float* x, int32_t n, int32_t k, std::vector<TokenLogprob>& out) {
  out.clear();
  k = std::min(k, n);
  if (k <= 0) return;
  // A heap of the k best seen so far whose top is the worst of them (ranks_before as
  // "less": the heap's maximum is the element ranking last). Most of the row is skipped by
  // a vector scan for values above the current worst; scanning ids upward, a tie with the
  // worst never enters (its id is higher), so strict `>` is the right test.
  out.reserve(size_t(k));
  for (int32_t i = 0; i < k; ++i) out.push_back({i, x[i]});
  std::make_heap(out.begin(), out.end(), ranks_before);
  const auto first_greater = sampler_kernels().first_greater;
  for (int32_t i = first_greater(x, n, k, out.front().logprob); i < n;
       i = first_greater(x, n, i + 1, out.front().logprob)) {
    std::pop_heap(out.begin(), out.end(), ranks_before);
    out.back() = {i, x[i]};
    std::push_heap(out.begin(), out.end(), ranks_before);
  }
  std::sort_heap(out.begin(), out.end(), ranks_before);
}

void top_k_logprobs(const float* x, int32_t n, int32_t k, float lse, std::vector<TokenLogprob>& out) {
  top_k_values(x, n, k, out);
  for (auto& t : out) t.logprob -= lse;
}

int32_t token_rank(const float* x, int32_t n, int32_t token) {
  assert(token >= 0 && token < n);
  return sampler_kernels().count_greater(x, n, x[token]) + 1;
}

void compute_logprobs(const float* x, int32_t n, int32_t token, int32_t k, LogprobsEntry& out) {
  assert(token >= 0 && token < n);
  const float lse = log_sum_exp(x, n);
  out.token = token;
  out.logprob = x[token] - lse;
  out.rank = token_rank(x, n, token);
  top_k_logprobs(x, n, k, lse, out.top);
}

}  // namespace kvserve

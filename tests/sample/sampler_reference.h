// Test helpers: a plain double-precision reference of the sampling distribution (full sort,
// no shortcuts) and a chi-square goodness-of-fit statistic.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "kvserve/sampling_params.h"

namespace kvserve::test {

// Probability of each token after temperature, top-k, top-p and min-p (in that order)
// applied to `logits` (already biased / penalised).
inline std::vector<double> reference_distribution(const std::vector<float>& logits, const SamplingParams& p) {
  const size_t n = logits.size();
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  size_t keep = n;
  if (p.top_k > 0 && size_t(p.top_k) < n) keep = size_t(p.top_k);
  const double m = logits[order[0]];
  std::vector<double> w(n, 0.0);
  double z = 0.0;
  for (size_t i = 0; i < keep; ++i)
    z += w[size_t(order[i])] = std::exp((logits[order[i]] - m) / p.temperature);
  if (p.top_p < 1.0f) {
    double cum = 0.0;
    size_t cut = keep;
    for (size_t i = 0; i < keep; ++i) {
      cum += w[size_t(order[i])] / z;
      if (cum >= p.top_p) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
  }
  std::vector<double> prob(n, 0.0);
  double total = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    const double wi = w[size_t(order[i])];
    if (wi < p.min_p * 1.0) continue;  // max weight is 1, so min-p compares to min_p directly
    prob[size_t(order[i])] = wi;
    total += wi;
  }
  for (double& x : prob) x /= total;
  return prob;
}

// Pearson's chi-square of observed counts against expected probabilities; categories with
// an expected count below 5 are pooled. Returns {statistic, degrees of freedom}.
inline std::pair<double, int> chi_square(const std::vector<int64_t>& counts, const std::vector<double>& prob,
                                         int64_t n_samples) {
  double stat = 0.0, pooled_obs = 0.0, pooled_exp = 0.0;
  int cats = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double e = prob[i] * double(n_samples);
    if (e < 5.0) {
      pooled_obs += double(counts[i]);
      pooled_exp += e;
      continue;
    }
    stat += (double(counts[i]) - e) * (double(counts[i]) - e) / e;
    ++cats;
  }
  if (pooled_exp >= 5.0) {
    stat += (pooled_obs - pooled_exp) * (pooled_obs - pooled_exp) / pooled_exp;
    ++cats;
  }
  return {stat, std::max(cats - 1, 1)};
}

// A generous acceptance bound: mean + 6 standard deviations of a chi-square(df).
inline double chi_square_bound(int df) {
  return df + 6.0 * std::sqrt(2.0 * df) + 10.0;
}

}  // namespace kvserve::test

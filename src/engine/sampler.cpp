#include "engine/sampler.h"

#include <algorithm>
#include <cassert>
#include <cmath>

#include "engine/sampler_math.h"

namespace kvserve {

namespace sm = sampler_math;

namespace {

// Candidates within this many temperature-scaled nats of the maximum (probability ratio
// e^-16 ~ 1e-7) are gathered first; if they already hold the top-k tokens or the top-p
// mass, the rest of the vocabulary is never copied or partitioned.
constexpr float kNearWindow = 16.0f;

// Rows are reduced in blocks: float lanes inside a block, doubles across blocks.
constexpr int32_t kBlock = 1024;

}  // namespace

Sampler::Sampler(int32_t n_vocab, std::vector<int32_t> eos_token_ids)
    : n_vocab_(n_vocab), eos_(std::move(eos_token_ids)) {
  assert(n_vocab > 0);
  // Sized once here so sample() never allocates.
  work_.resize(size_t(n_vocab));
  probs_.resize(size_t(n_vocab));
  cand_.reserve(size_t(n_vocab));
  block_sum_.resize(size_t((n_vocab + kBlock - 1) / kBlock));
}

const float* Sampler::adjusted_logits(const float* logits, const SamplingParams& p,
                                      const SequenceSamplerState& state) {
  const bool suppress = state.n_generated() < p.min_tokens;
  const bool penalise = state.tracks_penalties() && !state.counts().entries().empty();
  if (p.logit_bias.empty() && !suppress && !penalise) return logits;

  float* w = work_.data();
  std::copy(logits, logits + n_vocab_, w);
  for (const auto& [tok, bias] : p.logit_bias) {
    assert(tok >= 0 && tok < n_vocab_);
    w[tok] += bias;
  }
  if (suppress) {
    // vLLM's min_tokens: the tokens that would end generation cannot be sampled yet.
    if (!p.ignore_eos)
      for (int32_t t : eos_) w[t] = sm::kNegInf;
    for (int32_t t : p.stop_token_ids) w[t] = sm::kNegInf;
  }
  if (penalise) {
    const float rp = p.repetition_penalty;
    for (const auto& e : state.counts().entries()) {
      float& l = w[e.token];
      const bool in_context = e.in_prompt || e.output_count > 0;
      // HF / llama.cpp: shrink positive logits, grow negative ones, so the token is always
      // made less likely.
      if (rp != 1.0f && in_context) l = l > 0.0f ? l / rp : l * rp;
      // OpenAI: frequency scales with the count, presence applies once.
      if (e.output_count > 0) l -= p.frequency_penalty * float(e.output_count) + p.presence_penalty;
    }
  }
  return w;
}

int32_t Sampler::sample(const float* logits, const SamplingParams& p, SequenceSamplerState& state,
                        LogprobsEntry* logprobs) {
  const float* row = adjusted_logits(logits, p, state);
  const int32_t token = p.greedy() ? sm::row_argmax(row, n_vocab_) : sample_random(row, p, state.rng());
  if (logprobs && p.logprobs >= 0) compute_logprobs(logits, n_vocab_, token, p.logprobs, *logprobs);
  return token;
}

int32_t Sampler::sample_random(const float* row, const SamplingParams& p, SamplerRng& rng) {
  const int32_t n = n_vocab_;
  const float m = sm::row_max(row, n);
  // Every token banned (all -inf) or a +inf logit: the distribution is degenerate.
  if (!(m > sm::kNegInf) || std::isinf(m)) return sm::row_argmax(row, n);

  const float t = p.temperature;
  const float inv_t = 1.0f / t;
  const bool top_k = p.top_k > 0 && p.top_k < n;
  const bool top_p = p.top_p < 1.0f;
  // min-p keeps prob >= min_p * max prob, i.e. logit >= m + T * ln(min_p).
  const float min_logit = p.min_p > 0.0f ? m + t * std::log(p.min_p) : sm::kNegInf;
  if (!top_k && !top_p) return draw_full(row, m, inv_t, min_logit, rng);

  // One pass: the partition function z and the mass / count of the near window.
  const float near_logit = m - kNearWindow * t;
  double z = 0.0, z_near = 0.0;
  int32_t n_near = 0;
  for (int32_t b = 0; b < n; b += kBlock) {
    const int32_t e = std::min(n, b + kBlock);
    float s = 0.0f, s_near = 0.0f;
    int32_t c = 0;
    for (int32_t i = b; i < e; ++i) {
      const float w = sm::exp_nonpos((row[i] - m) * inv_t);
      const bool near = row[i] >= near_logit;
      s += w;
      s_near += near ? w : 0.0f;
      c += near ? 1 : 0;
    }
    z += s;
    z_near += s_near;
    n_near += c;
  }

  const bool near_enough = top_k ? n_near >= p.top_k : z_near >= double(p.top_p) * z;
  float gather_min = near_enough ? near_logit : sm::kNegInf;
  // Without top-k, z is already final, so min-p can cut while gathering; with top-k, z must
  // cover the whole top-k set first.
  if (!top_k) gather_min = std::max(gather_min, min_logit);
  cand_.clear();
  for (int32_t i = 0; i < n; ++i)
    if (row[i] >= gather_min) cand_.push_back({row[i], i});

  if (top_k) {
    const auto before = [](const Cand& a, const Cand& b) {
      return a.logit > b.logit || (a.logit == b.logit && a.token < b.token);
    };
    if (cand_.size() > size_t(p.top_k)) {
      std::nth_element(cand_.begin(), cand_.begin() + p.top_k, cand_.end(), before);
      cand_.resize(size_t(p.top_k));
    }
    z = 0.0;
    for (const Cand& c : cand_) z += sm::exp_nonpos((c.logit - m) * inv_t);
  }
  if (top_p) keep_top_p(m, inv_t, z, p.top_p);
  if (top_k && p.min_p > 0.0f)
    cand_.erase(
        std::remove_if(cand_.begin(), cand_.end(), [&](const Cand& c) { return c.logit < min_logit; }),
        cand_.end());
  return draw_candidates(m, inv_t, rng);
}

void Sampler::keep_top_p(float m, float inv_t, double z, float top_p) {
  const auto before = [](const Cand& a, const Cand& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.token < b.token);
  };
  // Sort only as far as needed: chunks of growing size, each the next-best slice.
  const double target = double(top_p) * z;
  const size_t n = cand_.size();
  double cum = 0.0;
  size_t a = 0, chunk = 64;
  while (a < n) {
    const size_t b = std::min(n, a + chunk);
    if (b < n) std::nth_element(cand_.begin() + a, cand_.begin() + b, cand_.end(), before);
    std::sort(cand_.begin() + a, cand_.begin() + b, before);
    for (size_t i = a; i < b; ++i) {
      cum += sm::exp_nonpos((cand_[i].logit - m) * inv_t);
      if (cum >= target) {
        cand_.resize(i + 1);
        return;
      }
    }
    a = b;
    chunk *= 4;
  }
  // Rounding kept the sum just under the target: every candidate stays.
}

int32_t Sampler::draw_candidates(float m, float inv_t, SamplerRng& rng) {
  assert(!cand_.empty());
  double w = 0.0;
  for (size_t i = 0; i < cand_.size(); ++i) {
    probs_[i] = sm::exp_nonpos((cand_[i].logit - m) * inv_t);
    w += probs_[i];
  }
  const double u = rng.uniform() * w;
  double acc = 0.0;
  for (size_t i = 0; i < cand_.size(); ++i) {
    acc += probs_[i];
    if (u < acc) return cand_[i].token;
  }
  for (size_t i = cand_.size(); i-- > 0;)
    if (probs_[i] > 0.0f) return cand_[i].token;
  return cand_[0].token;
}

int32_t Sampler::draw_full(const float* row, float m, float inv_t, float min_logit, SamplerRng& rng) {
  const int32_t n = n_vocab_;
  float* pr = probs_.data();
  double w = 0.0;
  for (int32_t b = 0, k = 0; b < n; b += kBlock, ++k) {
    const int32_t e = std::min(n, b + kBlock);
    float lane[sm::kLanes] = {};
    int32_t i = b;
    for (; i + sm::kLanes <= e; i += sm::kLanes)
      for (int j = 0; j < sm::kLanes; ++j) {
        const float x = row[i + j];
        const float v = sm::exp_nonpos((x - m) * inv_t);
        pr[i + j] = x >= min_logit ? v : 0.0f;
        lane[j] += pr[i + j];
      }
    double s = 0.0;
    for (int j = 0; j < sm::kLanes; ++j) s += lane[j];
    for (; i < e; ++i) {
      pr[i] = row[i] >= min_logit ? sm::exp_nonpos((row[i] - m) * inv_t) : 0.0f;
      s += pr[i];
    }
    block_sum_[size_t(k)] = s;
    w += s;
  }
  // Find the block holding the draw, then the token inside it.
  const double u = rng.uniform() * w;
  double acc = 0.0;
  for (int32_t b = 0, k = 0; b < n; b += kBlock, ++k) {
    if (u >= acc + block_sum_[size_t(k)]) {
      acc += block_sum_[size_t(k)];
      continue;
    }
    const int32_t e = std::min(n, b + kBlock);
    for (int32_t i = b; i < e; ++i) {
      acc += pr[i];
      if (u < acc) return i;
    }
    break;  // rounding: the block's parts summed below its total
  }
  for (int32_t i = n; i-- > 0;)
    if (pr[i] > 0.0f) return i;
  return sm::row_argmax(row, n);
}

}  // namespace kvserve

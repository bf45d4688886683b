#include "sample/sampler.h"

#include <algorithm>
#include <cassert>
#include <cmath>

#include "sample/sampler_math.h"

namespace kvserve {

namespace sm = sampler_math;

namespace {

constexpr int32_t kBlock = SamplerKernels::kBlock;

// Up to this k, top-k keeps a heap while scanning the row (most tokens cost one vector
// compare); above it, the row is gathered and partitioned with nth_element.
constexpr int32_t kHeapTopKMax = 2048;

// Top-p buckets: 32 per temperature-scaled nat over 32 nats (beyond: the last bucket).
constexpr int32_t kBinsPerNat = 32;
constexpr int32_t kBins = 1024;

// Candidate order: higher logit first, ties to the lower id (so top-k = 1 is greedy).
template <class C>
inline bool before(const C& a, const C& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.token < b.token);
}

}  // namespace

Sampler::Sampler(int32_t n_vocab, std::vector<int32_t> eos_token_ids)
    : kernels_(&sampler_kernels()), n_vocab_(n_vocab), eos_(std::move(eos_token_ids)) {
  assert(n_vocab > 0);
  // Sized once here so sample() never allocates.
  work_.resize(size_t(n_vocab));
  probs_.resize(size_t(n_vocab));
  block_sum_.resize(size_t((n_vocab + kBlock - 1) / kBlock));
  idx_.resize(size_t(n_vocab));
  bin_mass_.resize(size_t(kBins));
  cand_.reserve(size_t(n_vocab));
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
  int32_t token = 0;
  if (p.greedy()) {
    token = argmax(row);
  } else {
    const Prepared prep = prepare(row, p);
    switch (prep.kind) {
      case Prepared::Token: token = prep.token; break;
      case Prepared::Full: token = draw_full(prep.total, state.rng()); break;
      case Prepared::Candidates: token = draw_candidates(prep.total, state.rng()); break;
    }
  }
  if (logprobs && p.logprobs >= 0) compute_logprobs(logits, n_vocab_, token, p.logprobs, *logprobs);
  return token;
}

int32_t Sampler::argmax(const float* row) const {
  // Ties to the lowest id: the first element reaching the maximum.
  const float m = kernels_->row_max(row, n_vocab_);
  return m > sm::kNegInf ? kernels_->first_greater(row, n_vocab_, 0, std::nextafter(m, sm::kNegInf)) : 0;
}

void Sampler::distribution(const float* logits, const SamplingParams& p, const SequenceSamplerState& state,
                           float* probs) {
  const float* row = adjusted_logits(logits, p, state);
  const Prepared prep = p.greedy() ? Prepared{Prepared::Token, argmax(row), 1.0} : prepare(row, p);
  if (prep.kind == Prepared::Full) {
    const float inv = float(1.0 / prep.total);
    for (int32_t i = 0; i < n_vocab_; ++i) probs[i] = probs_[size_t(i)] * inv;
    return;
  }
  std::fill(probs, probs + n_vocab_, 0.0f);
  if (prep.kind == Prepared::Token) {
    probs[prep.token] = 1.0f;
    return;
  }
  for (const Cand& c : cand_) probs[c.token] = float(c.w / prep.total);
}

int32_t Sampler::sample_from(const float* weights, SamplerRng& rng) const {
  double total = 0.0;
  for (int32_t i = 0; i < n_vocab_; ++i) total += weights[i];
  const double u = rng.uniform() * total;
  double acc = 0.0;
  for (int32_t i = 0; i < n_vocab_; ++i) {
    acc += weights[i];
    if (u < acc) return i;
  }
  for (int32_t i = n_vocab_; i-- > 0;)
    if (weights[i] > 0.0f) return i;
  return 0;
}

Sampler::Prepared Sampler::prepare(const float* row, const SamplingParams& p) {
  const SamplerKernels& k = *kernels_;
  const int32_t n = n_vocab_;
  const float m = k.row_max(row, n);
  // Every token banned (nothing sensible to sample) or a +inf logit (one-hot).
  if (!(m > sm::kNegInf) || std::isinf(m)) return {Prepared::Token, argmax(row), 1.0};

  const float t = p.temperature;
  const float inv_t = 1.0f / t;
  const bool top_k = p.top_k > 0 && p.top_k < n;
  const bool top_p = p.top_p < 1.0f;
  // min-p keeps prob >= min_p * max prob, i.e. logit >= m + T * ln(min_p).
  const float min_logit = p.min_p > 0.0f ? m + t * std::log(p.min_p) : sm::kNegInf;
  if (!top_k && !top_p)
    return {Prepared::Full, 0, k.exp_weights(row, n, m, inv_t, min_logit, probs_.data(), block_sum_.data())};

  double z = 0.0;
  cand_.clear();
  if (top_k) {
    if (p.top_k <= kHeapTopKMax) {
      top_k_values(row, n, p.top_k, top_);
      for (const auto& c : top_) cand_.push_back({c.logprob, c.token, 0.0f});
    } else {
      for (int32_t i = 0; i < n; ++i) cand_.push_back({row[i], i, 0.0f});
      std::nth_element(cand_.begin(), cand_.begin() + p.top_k, cand_.end(), before<Cand>);
      cand_.resize(size_t(p.top_k));
    }
    for (auto& c : cand_) z += c.w = sm::exp_nonpos((c.logit - m) * inv_t);
  } else {
    // z over the whole row, plus the mass within a few windows below the maximum: the
    // smallest window already holding top_p of the mass contains the nucleus, so only it
    // is gathered.
    float lo[SamplerKernels::kWindows];
    double mass[SamplerKernels::kWindows];
    int32_t count[SamplerKernels::kWindows];
    for (int j = 0; j < SamplerKernels::kWindows; ++j) lo[j] = m - SamplerKernels::kWindowNats[j] * t;
    float* w = probs_.data();
    z = k.window_masses(row, n, m, inv_t, lo, mass, count, w);
    float gather_min = sm::kNegInf;
    for (int j = 0; j < SamplerKernels::kWindows; ++j)
      if (mass[j] >= double(p.top_p) * z) {
        gather_min = lo[j];
        break;
      }
    // z is final here, so min-p can cut while gathering.
    gather_min = std::max(gather_min, min_logit);
    const int32_t c = k.select_at_least(row, n, gather_min, idx_.data());
    for (int32_t j = 0; j < c; ++j) {
      const int32_t i = idx_[size_t(j)];
      cand_.push_back({row[i], i, w[i]});
    }
  }
  if (top_p) keep_top_p(z, p.top_p, m, inv_t);
  if (top_k && p.min_p > 0.0f)
    cand_.erase(
        std::remove_if(cand_.begin(), cand_.end(), [&](const Cand& c) { return c.logit < min_logit; }),
        cand_.end());
  z = 0.0;
  for (const Cand& c : cand_) z += c.w;
  return {Prepared::Candidates, 0, z};
}

void Sampler::keep_top_p(double z, float top_p, float m, float inv_t) {
  // Bucket the candidates by distance below the maximum (kBinsPerNat buckets per scaled
  // nat): whole buckets above the cut are kept without ordering them, and only the bucket
  // the cut falls in is sorted. O(n) even when the nucleus is most of the vocabulary.
  const double target = double(top_p) * z;
  std::fill(bin_mass_.begin(), bin_mass_.end(), 0.0);
  const float scale = inv_t * float(kBinsPerNat);
  const auto bin_of = [&](float logit) {
    const float d = (m - logit) * scale;  // >= 0; monotone in the logit, so bins respect `before`
    return d < float(kBins - 1) ? int32_t(d) : kBins - 1;
  };
  for (const Cand& c : cand_) bin_mass_[size_t(bin_of(c.logit))] += c.w;
  double cum = 0.0;
  int32_t cut_bin = 0;
  for (; cut_bin < kBins; ++cut_bin) {
    if (cum + bin_mass_[size_t(cut_bin)] >= target) break;
    cum += bin_mass_[size_t(cut_bin)];
  }
  if (cut_bin == kBins) return;  // rounding kept the total just under the target: keep all
  const auto mid =
      std::partition(cand_.begin(), cand_.end(), [&](const Cand& c) { return bin_of(c.logit) < cut_bin; });
  const auto end =
      std::partition(mid, cand_.end(), [&](const Cand& c) { return bin_of(c.logit) == cut_bin; });
  std::sort(mid, end, before<Cand>);
  for (auto it = mid; it != end; ++it) {
    cum += it->w;
    if (cum >= target) {
      cand_.resize(size_t(it - cand_.begin()) + 1);
      return;
    }
  }
  cand_.resize(size_t(end - cand_.begin()));  // rounding inside the bucket: keep all of it
}

int32_t Sampler::draw_candidates(double total, SamplerRng& rng) const {
  assert(!cand_.empty());
  const double u = rng.uniform() * total;
  double acc = 0.0;
  for (const Cand& c : cand_) {
    acc += c.w;
    if (u < acc) return c.token;
  }
  for (size_t i = cand_.size(); i-- > 0;)
    if (cand_[i].w > 0.0f) return cand_[i].token;
  return cand_[0].token;
}

int32_t Sampler::draw_full(double total, SamplerRng& rng) const {
  const int32_t n = n_vocab_;
  const float* pr = probs_.data();
  // Find the block holding the draw, then the token inside it.
  const double u = rng.uniform() * total;
  double acc = 0.0;
  for (int32_t b = 0, blk = 0; b < n; b += kBlock, ++blk) {
    if (u >= acc + block_sum_[size_t(blk)]) {
      acc += block_sum_[size_t(blk)];
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
  return 0;
}

}  // namespace kvserve

// Offline batch generation over the step loop: queue everything, step until done,
// gather the deltas per input.
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <unordered_map>

#include "kvserve/engine.h"
#include "tokenizer/tokenizer.h"

namespace kvserve {

std::vector<GenerateOutput> generate(Engine& engine, std::span<const GenerateInput> inputs,
                                     const SamplingParams& params, GenerateStats* stats,
                                     std::span<const SamplingParams> per_input_params,
                                     GenerateProgress progress, void* progress_user) {
  static std::atomic<uint64_t> batch_counter{0};
  const uint64_t batch = batch_counter++;
  const bool per_input = per_input_params.size() == inputs.size() && !inputs.empty();
  std::vector<GenerateOutput> out(inputs.size());
  std::unordered_map<std::string, size_t> index;
  std::vector<int> open(inputs.size(), 0);  // completions still running, per input
  const EngineStats before = engine.stats();
  const auto t0 = std::chrono::steady_clock::now();

  int64_t total = 0, done = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const SamplingParams& p = per_input ? per_input_params[i] : params;
    GenerateOutput& o = out[i];
    o.request_id = fmt::format("gen-{}-{}", batch, i);
    o.prompt_token_ids =
        inputs[i].token_ids.empty()
            ? engine.tokenizer().encode(inputs[i].prompt, /*add_special=*/true, /*parse_special=*/true)
            : inputs[i].token_ids;
    if (auto st = engine.add_request(o.request_id, o.prompt_token_ids, p, inputs[i].priority); !st) {
      o.error = st.error().message;
      continue;
    }
    o.completions.resize(size_t(p.n));
    open[i] = p.n;
    index.emplace(o.request_id, i);
    ++total;
  }

  while (engine.has_unfinished()) {
    for (const RequestOutput& d : engine.step()) {
      auto it = index.find(d.request_id);
      if (it == index.end()) continue;  // someone else's request on a shared engine
      GenerateOutput& o = out[it->second];
      GenerateOutput::Completion& c = o.completions[size_t(d.index)];
      c.token_ids.insert(c.token_ids.end(), d.token_ids.begin(), d.token_ids.end());
      c.text += d.text;
      c.logprobs.insert(c.logprobs.end(), d.logprobs.begin(), d.logprobs.end());
      if (!d.prompt_logprobs.empty()) o.prompt_logprobs = d.prompt_logprobs;
      c.cumulative_logprob = d.cumulative_logprob;
      if (d.finished) {
        c.finish_reason = d.finish_reason;
        if (--open[it->second] == 0) ++done;
      }
    }
    if (progress) progress(done, total, progress_user);
  }

  if (stats) {
    const EngineStats after = engine.stats();
    GenerateStats& s = *stats;
    s = GenerateStats{};
    s.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    s.num_requests = total;
    for (const GenerateOutput& o : out) {
      if (!o.error.empty()) continue;
      s.prompt_tokens += int64_t(o.prompt_token_ids.size());
      for (const auto& c : o.completions) s.output_tokens += int64_t(c.token_ids.size());
    }
    if (s.elapsed_s > 0) {
      s.requests_per_s = double(total) / s.elapsed_s;
      s.output_tokens_per_s = double(s.output_tokens) / s.elapsed_s;
      s.total_tokens_per_s = double(s.prompt_tokens + s.output_tokens) / s.elapsed_s;
    }
    s.preemptions = after.preemptions - before.preemptions;
    s.steps = after.steps - before.steps;
    s.prefix_cache_hit_rate = after.prefix_cache_hit_rate;
    s.spec_drafts = after.spec_drafts - before.spec_drafts;
    s.spec_draft_tokens = after.spec_draft_tokens - before.spec_draft_tokens;
    s.spec_accepted_tokens = after.spec_accepted_tokens - before.spec_accepted_tokens;
    if (s.spec_draft_tokens > 0)
      s.spec_acceptance_rate = double(s.spec_accepted_tokens) / double(s.spec_draft_tokens);
    if (s.spec_drafts > 0)
      s.spec_mean_accepted_length = 1.0 + double(s.spec_accepted_tokens) / double(s.spec_drafts);
  }
  return out;
}

}  // namespace kvserve

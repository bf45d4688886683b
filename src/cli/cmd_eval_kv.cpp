// `kvserve eval kv-cache`: what rounding the KV cache costs, measured rather than assumed.
// A text is teacher-forced through the model with f32 KV (the reference) and with each
// requested dtype side by side, in the same chunks; at every position the next-token
// distributions are compared: top-1 agreement, |delta logprob| of the text's actual next
// token, KL(reference || dtype), and each dtype's perplexity. Figures are reported per
// range of positions (--positions 512,2048,4096: positions 1-512, 513-2048, 2049-4096),
// since rounding errors reach further as the context grows.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/engine_options.h"
#include "model/cpu_runner.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace kvserve {
namespace {

struct EvalOptions {
  std::string model;
  std::string text;
  std::vector<std::string> dtypes = {"f16", "bf16", "int8", "fp8"};
  std::vector<int> positions = {512, 2048, 4096};
  int threads = 0;
  int chunk = 512;
  std::string json;
};

// Sums over the positions of one range.
struct Bin {
  int64_t n = 0, top1_same = 0;
  double abs_dlogp = 0, max_abs_dlogp = 0, kl = 0, nll = 0;
};

// Log-softmax of one row of logits into out.
void log_softmax(const float* logits, int n, std::vector<double>& out) {
  out.resize(size_t(n));
  const double mx = *std::max_element(logits, logits + n);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(double(logits[i]) - mx);
  const double lse = mx + std::log(sum);
  for (int i = 0; i < n; ++i) out[size_t(i)] = double(logits[i]) - lse;
}

int fail(const std::string& msg) {
  std::fprintf(stderr, "kvserve eval kv-cache: %s\n", msg.c_str());
  return 1;
}

int run_eval(const EvalOptions& o) {
  std::vector<KvDtype> dtypes;
  for (const std::string& s : o.dtypes) dtypes.push_back(*parse_kv_dtype(s));
  std::vector<int> bounds = o.positions;
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  if (bounds.empty() || bounds.front() < 1) return fail("--positions must be at least 1");
  if (o.chunk < 1) return fail("--chunk must be at least 1");

  std::ifstream in(o.text, std::ios::binary);
  if (!in) return fail("cannot read " + o.text);
  std::stringstream ss;
  ss << in.rdbuf();
  auto model = Model::load(o.model);
  if (!model) return fail(model.error().message);
  auto tok = Tokenizer::from_gguf((*model)->gguf());
  if (!tok) return fail(tok.error().message);
  const std::vector<int32_t> ids = (*tok)->encode(ss.str(), true, false);
  const int n_pos = bounds.back();  // positions scored: each predicts the token after it
  if (int64_t(ids.size()) < int64_t(n_pos) + 1)
    return fail(o.text + " has " + std::to_string(ids.size()) + " tokens; --positions up to " +
                std::to_string(n_pos) + " needs " + std::to_string(n_pos + 1));
  const ModelConfig& cfg = (*model)->config();
  if (n_pos > cfg.n_ctx_train && cfg.n_ctx_train > 0)
    std::fprintf(stderr,
                 "kvserve eval kv-cache: warning: %d positions exceed the model's training context %d\n",
                 n_pos, cfg.n_ctx_train);

  RunnerOptions ropt;
  ropt.max_batch_tokens = std::min(o.chunk, n_pos);
  ropt.max_seqs = 1;
  ropt.n_threads = o.threads;
  CpuRunner runner(**model, ropt);
  constexpr int kBlock = 16;
  const int n_blocks = (n_pos + kBlock - 1) / kBlock;
  std::vector<int32_t> table(static_cast<size_t>(n_blocks));
  for (int i = 0; i < n_blocks; ++i) table[size_t(i)] = i;
  // The reference and one cache per dtype, fed the same chunks in lockstep.
  std::vector<std::unique_ptr<KvCacheStorage>> caches;
  caches.push_back(std::make_unique<KvCacheStorage>(runner.kv_config(n_blocks, kBlock, KvDtype::F32)));
  for (KvDtype t : dtypes)
    caches.push_back(std::make_unique<KvCacheStorage>(runner.kv_config(n_blocks, kBlock, t)));

  const int n_vocab = cfg.n_vocab;
  std::vector<Bin> bins(dtypes.size() * bounds.size());
  std::vector<Bin> ref_bins(bounds.size());
  std::vector<float> ref_logits;
  std::vector<double> lp_ref, lp;
  std::fprintf(stderr, "kv-cache eval: %s, %s: %d positions, f32 KV vs %zu dtypes, chunks of %d\n",
               o.model.c_str(), o.text.c_str(), n_pos, dtypes.size(), ropt.max_batch_tokens);
  for (int start = 0; start < n_pos; start += ropt.max_batch_tokens) {
    const int n = std::min(ropt.max_batch_tokens, n_pos - start);
    SeqSlice s;
    s.n_past = start;
    s.tokens = std::span<const int32_t>(ids.data() + start, size_t(n));
    s.block_table = table;
    s.logits = LogitsMode::All;
    const ForwardBatch batch{std::span<const SeqSlice>(&s, 1)};
    const float* r = runner.forward(batch, *caches[0]);
    ref_logits.assign(r, r + int64_t(n) * n_vocab);
    for (size_t d = 0; d <= dtypes.size(); ++d) {
      const float* logits = d == 0 ? ref_logits.data() : runner.forward(batch, *caches[d]);
      for (int i = 0; i < n; ++i) {
        const int pos = start + i + 1;  // 1-based position of the token predicting the next
        const size_t b = size_t(std::lower_bound(bounds.begin(), bounds.end(), pos) - bounds.begin());
        const int32_t next = ids[size_t(start + i + 1)];
        log_softmax(ref_logits.data() + int64_t(i) * n_vocab, n_vocab, lp_ref);
        if (d == 0) {
          ref_bins[b].n++;
          ref_bins[b].nll -= lp_ref[size_t(next)];
          continue;
        }
        const float* row = logits + int64_t(i) * n_vocab;
        log_softmax(row, n_vocab, lp);
        Bin& bin = bins[(d - 1) * bounds.size() + b];
        const float* ref_row = ref_logits.data() + int64_t(i) * n_vocab;
        bin.n++;
        bin.top1_same += std::max_element(ref_row, ref_row + n_vocab) - ref_row ==
                         std::max_element(row, row + n_vocab) - row;
        const double dl = std::abs(lp[size_t(next)] - lp_ref[size_t(next)]);
        bin.abs_dlogp += dl;
        bin.max_abs_dlogp = std::max(bin.max_abs_dlogp, dl);
        double kl = 0;
        for (int v = 0; v < n_vocab; ++v)
          kl += std::exp(lp_ref[size_t(v)]) * (lp_ref[size_t(v)] - lp[size_t(v)]);
        bin.kl += kl;
        bin.nll -= lp[size_t(next)];
      }
    }
    std::fprintf(stderr, "  %d / %d positions\n", start + n, n_pos);
  }

  nlohmann::json j = {
      {"model", o.model}, {"text", o.text}, {"positions", n_pos}, {"chunk", ropt.max_batch_tokens}};
  std::printf("%-5s %-11s %8s %12s %12s %10s %9s %9s\n", "dtype", "positions", "top-1", "mean|dlogp|",
              "max|dlogp|", "mean KL", "ppl", "f32 ppl");
  for (size_t d = 0; d < dtypes.size(); ++d)
    for (size_t b = 0; b < bounds.size(); ++b) {
      const Bin& x = bins[d * bounds.size() + b];
      const Bin& r = ref_bins[b];
      if (x.n == 0) continue;
      const int first = b == 0 ? 1 : bounds[b - 1] + 1;
      const std::string range = std::to_string(first) + "-" + std::to_string(bounds[b]);
      const double top1 = 100.0 * double(x.top1_same) / double(x.n);
      const double ppl = std::exp(x.nll / double(x.n)), ref_ppl = std::exp(r.nll / double(r.n));
      std::printf("%-5s %-11s %7.2f%% %12.5f %12.5f %10.2e %9.4f %9.4f\n", kv_dtype_name(dtypes[d]),
                  range.c_str(), top1, x.abs_dlogp / double(x.n), x.max_abs_dlogp, x.kl / double(x.n), ppl,
                  ref_ppl);
      j["results"].push_back({{"dtype", kv_dtype_name(dtypes[d])},
                              {"first_position", first},
                              {"last_position", bounds[b]},
                              {"top1_agreement", top1 / 100.0},
                              {"mean_abs_dlogprob", x.abs_dlogp / double(x.n)},
                              {"max_abs_dlogprob", x.max_abs_dlogp},
                              {"mean_kl", x.kl / double(x.n)},
                              {"perplexity", ppl},
                              {"f32_perplexity", ref_ppl}});
    }
  if (!o.json.empty()) {
    std::ofstream out(o.json);
    out << j.dump(2) << "\n";
    if (!out) return fail("cannot write " + o.json);
  }
  return 0;
}

const cli::Registrar reg{
    "eval", "Quality evaluations: kv-cache (each KV dtype against f32 KV)", [](CLI::App& app) {
      app.require_subcommand(1);
      CLI::App* sub =
          app.add_subcommand("kv-cache",
                             "Teacher-force a text with f32 KV and each KV dtype: top-1 agreement, |delta "
                             "logprob|, KL and perplexity per range of positions");
      auto o = std::make_shared<EvalOptions>();
      sub->add_option("-m,--model", o->model, "GGUF model file")->required();
      sub->add_option("--text", o->text, "Text file to teacher-force (e.g. /usr/share/common-licenses/GPL-3)")
          ->required();
      sub->add_option("--dtypes", o->dtypes, "KV dtypes compared with f32 KV")
          ->delimiter(',')
          ->check(cli::kv_dtype_validator())
          ->capture_default_str();
      sub->add_option("--positions", o->positions,
                      "Ends of the position ranges reported; the last is how many are scored")
          ->delimiter(',')
          ->capture_default_str();
      sub->add_option("-t,--threads", o->threads, "Threads (0 = all hardware threads)")
          ->capture_default_str();
      sub->add_option("--chunk", o->chunk, "Tokens per forward (prefill chunk)")->capture_default_str();
      sub->add_option("--json", o->json, "Also write the figures as JSON to this file");
      return [o]() { return run_eval(*o); };
    }};

}  // namespace
}  // namespace kvserve

// Decode steps of a batch that mixes one long sequence with short ones, through the model
// runner (no scheduler): attention of the long one dominates the step, so how it is shared
// out over the threads decides the step time (split-K, src/model/cpu_runner.cpp).
// Reports ms per decode step and total decode tokens/s.
//
//   mixed_decode_bench [--model m.gguf] [--long-len 4096] [--short-len 200] [--num-short 7]
//                      [--steps 64] [--threads 2] [--json out.json|-]
// Default model: .cache/models/synth-135m-q4_0.gguf (scripts/make_bench_models.sh) if
// present, else ../shared/models/synth-3m-q4_0.gguf. Prompts are random token ids.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "cache/kv_cache.h"
#include "core/paths.h"
#include "model/cpu_runner.h"
#include "model/model.h"

using namespace kvserve;

int main(int argc, char** argv) {
  std::string model_path = ".cache/models/synth-135m-q4_0.gguf", json;
  int long_len = 4096, short_len = 200, num_short = 7, steps = 64, threads = 2;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    auto num = [&](int& out) { out = v ? std::atoi(v) : -1; };
    if (!v || k == "-h" || k == "--help") {
      std::fprintf(stderr,
                   "usage: mixed_decode_bench [--model PATH] [--long-len N] [--short-len N] [--num-short N]\n"
                   "  [--steps N] [--threads N] [--json PATH|-]\n");
      return k == "-h" || k == "--help" ? 0 : 2;
    }
    ++i;
    if (k == "--model")
      model_path = v;
    else if (k == "--long-len")
      num(long_len);
    else if (k == "--short-len")
      num(short_len);
    else if (k == "--num-short")
      num(num_short);
    else if (k == "--steps")
      num(steps);
    else if (k == "--threads")
      num(threads);
    else if (k == "--json")
      json = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (long_len < 1 || short_len < 1 || num_short < 0 || steps < 1 || threads < 0) {
    std::fprintf(stderr, "lengths and steps must be positive, counts not negative\n");
    return 2;
  }
  if (!std::ifstream(model_path).good()) model_path = shared_dir() + "/models/synth-3m-q4_0.gguf";
  auto model = Model::load(model_path);
  if (!model) {
    std::fprintf(stderr, "%s\n", model.error().message.c_str());
    return 1;
  }
  const int n_seqs = num_short + 1;
  constexpr int kPrefillChunk = 512, kBlock = 16;
  RunnerOptions opt;
  opt.max_batch_tokens = std::max(kPrefillChunk, n_seqs);
  opt.max_seqs = n_seqs;
  opt.n_threads = threads;
  CpuRunner runner(**model, opt);
  std::vector<int> len(size_t(n_seqs), short_len);
  len[0] = long_len;
  std::vector<std::vector<int32_t>> tokens(static_cast<size_t>(n_seqs)), tables(static_cast<size_t>(n_seqs));
  std::mt19937 rng(1);
  int n_blocks = 0;
  for (int s = 0; s < n_seqs; ++s) {
    tokens[size_t(s)].resize(size_t(len[size_t(s)] + steps));
    for (auto& t : tokens[size_t(s)]) t = int32_t(rng() % uint32_t(runner.n_vocab()));
    for (int b = 0; b < (len[size_t(s)] + steps + kBlock - 1) / kBlock; ++b)
      tables[size_t(s)].push_back(n_blocks++);
  }
  KvCacheStorage kv(runner.kv_config(n_blocks, kBlock));
  std::fprintf(stderr, "[mixed_decode] %s: prefilling 1 x %d + %d x %d tokens\n", model_path.c_str(),
               long_len, num_short, short_len);
  for (int s = 0; s < n_seqs; ++s)
    for (int p = 0; p < len[size_t(s)]; p += kPrefillChunk) {
      SeqSlice sl;
      sl.n_past = p;
      sl.tokens = std::span<const int32_t>(tokens[size_t(s)].data() + p,
                                           size_t(std::min(kPrefillChunk, len[size_t(s)] - p)));
      sl.block_table = tables[size_t(s)];
      sl.logits = LogitsMode::None;
      runner.forward(ForwardBatch{std::span<const SeqSlice>(&sl, 1)}, kv);
    }
  std::vector<SeqSlice> batch(static_cast<size_t>(n_seqs));
  const auto t0 = std::chrono::steady_clock::now();
  for (int st = 0; st < steps; ++st) {
    for (int s = 0; s < n_seqs; ++s) {
      SeqSlice& b = batch[size_t(s)];
      b.n_past = len[size_t(s)] + st;
      b.tokens = std::span<const int32_t>(tokens[size_t(s)].data() + b.n_past, 1);
      b.block_table = tables[size_t(s)];
      b.logits = LogitsMode::Last;
    }
    runner.forward(ForwardBatch{batch}, kv);
    if ((st + 1) % 16 == 0) std::fprintf(stderr, "[mixed_decode] step %d/%d\n", st + 1, steps);
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double ms_per_step = s * 1e3 / steps, tok_per_s = double(steps) * n_seqs / s;
  std::printf("1 x %d + %d x %d keys, threads %d: %.3f ms per decode step, %.1f tokens/s\n", long_len,
              num_short, short_len, threads, ms_per_step, tok_per_s);
  if (!json.empty()) {
    const nlohmann::json j = {
        {"model", model_path},        {"long_len", long_len},     {"short_len", short_len},
        {"num_short", num_short},     {"steps", steps},           {"threads", threads},
        {"ms_per_step", ms_per_step}, {"tokens_per_s", tok_per_s}};
    if (json == "-") {
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      std::ofstream(json) << j.dump(2) << "\n";
    }
  }
}

// Shared pieces of `kvserve bench <latency|throughput|roofline|serve>`: each mode lives in
// its own src/cli/cmd_bench_<mode>.cpp and is wired up by cmd_bench.cpp.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/result.h"
#include "kvserve/speculative.h"

namespace kvserve::bench {

using RunFn = std::function<int()>;

// Each adds its options to `app` (a `bench` subcommand) and returns the runner.
RunFn setup_latency(CLI::App& app);
RunFn setup_throughput(CLI::App& app);
RunFn setup_roofline(CLI::App& app);
RunFn setup_serve(CLI::App& app);

struct LatencyOptions {
  std::string model;
  int prompt_tokens = 512;
  int gen_tokens = 128;
  int threads = 2;
  int repeats = 3;
  std::string kv_cache_dtype = "f16";  // f16 | f32
  bool tg_after_prompt = false;        // decode after the prompt instead of from an empty context
  uint64_t seed = 0;
  bool quiet = false;
  // With a method: one request through the engine, with and without speculation
  // (run_spec_latency); the prompt is --prompt-file's text, else the random ids.
  SpeculativeConfig speculative;
  std::string prompt_file;
};

// Mean and sample standard deviation over repeats.
struct Stat {
  double mean = 0.0;
  double stdev = 0.0;
};

struct LatencyResult {
  Stat prompt_tps;  // prefill tokens/s (llama-bench pp<N>)
  Stat gen_tps;     // decode tokens/s (llama-bench tg<N>)
  Stat ttft_ms;     // prefill + first token choice
  Stat tpot_ms;     // time per decoded token
  // Per measured run, in order (as llama-bench's samples_ts).
  std::vector<double> prompt_tps_samples, gen_tps_samples, ttft_ms_samples, tpot_ms_samples;
  nlohmann::json to_json(const LatencyOptions& o) const;
};

// Runs the latency benchmark (warm-up first). Progress goes to stderr unless quiet.
// before_run(r), if given, is called before measured run r (0-based), outside the timing.
Result<LatencyResult> run_latency(const LatencyOptions& o, const std::function<void(int)>& before_run = {});

// One greedy request (EOS ignored) through the engine, decoding gen_tokens, timed with and
// without o.speculative (alternating, warm-up first): TTFT, decode tokens/s and TPOT of
// each, and the speedup. Fails if speculation changed the output.
struct SpecLatencyResult {
  Stat gen_tps, gen_tps_plain;
  Stat tpot_ms, tpot_ms_plain;
  double acceptance = 0.0, mean_accepted_length = 0.0;
  int64_t steps = 0, steps_plain = 0;  // decode steps of one run
  nlohmann::json to_json() const;
};
Result<SpecLatencyResult> run_spec_latency(const LatencyOptions& o);

Stat mean_stdev(const std::vector<double>& xs);
// Writes `j` to `path` ("-" = stdout); false (with a message) on failure.
bool write_json(const std::string& path, const nlohmann::json& j);
int fail(const char* mode, const std::string& msg);

}  // namespace kvserve::bench

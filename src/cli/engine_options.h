// The command-line flags that fill an EngineConfig, shared by every command that builds
// an Engine (`serve`, `generate`, `bench throughput`) and by bench/prefix_cache_bench, so
// a new engine knob is one flag with one spelling and one help text everywhere.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "kvserve/engine.h"

namespace kvserve::cli {

// What differs between commands. Defaults are not here: each flag defaults to the value
// `cfg` holds when add_engine_options() is called, so a command sets its own first.
struct EngineOptionsSpec {
  // Spellings of the two step budgets; bench throughput also takes -c/--concurrency.
  std::string max_num_seqs_names = "--max-num-seqs";
  std::string max_num_batched_tokens_names = "--max-num-batched-tokens";
  // How the command sizes what is left unset, for --help.
  std::string kv_cache_memory_default = "a share of free memory";
  std::string max_model_len_default = "the model's";
};

// Adds --threads, the step budgets, the KV-cache size / block size / dtype,
// --max-model-len, --[no-]prefix-caching and the speculative flags, writing straight into `cfg` (which must
// outlive parsing). --kv-cache-dtype accepts only f16 / f32.
void add_engine_options(CLI::App& app, EngineConfig& cfg, const EngineOptionsSpec& spec = {});
// The speculative-decoding flags alone (add_engine_options() includes them), for commands
// that build their engines themselves (`bench latency`).
void add_speculative_options(CLI::App& app, SpeculativeConfig& sc);

}  // namespace kvserve::cli

// The command-line flags that fill an EngineConfig, shared by every command that builds
// an Engine (`serve`, `generate`, `bench throughput`) and by bench/prefix_cache_bench, so
// a new engine knob is one flag with one spelling and one help text everywhere.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
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
// outlive parsing). --kv-cache-dtype accepts the names of kvserve/kv_dtype.h.
void add_engine_options(CLI::App& app, EngineConfig& cfg, const EngineOptionsSpec& spec = {});
// The speculative-decoding flags alone (add_engine_options() includes them), for commands
// that build their engines themselves (`bench latency`).
void add_speculative_options(CLI::App& app, SpeculativeConfig& sc);
// Accepts the name of any KvDtype (kvserve/kv_dtype.h): every --kv-cache-dtype / --dtypes.
CLI::Validator kv_dtype_validator();

// What a server optimises for (--mode): a preset of the settings that trade latency
// against throughput. Each preset value applies only where its flag was not given.
//   latency:    16 sequences, 256-token steps, prompts in chunks of at most 128 tokens per
//               step (a running request's next token never waits behind a long prompt for
//               more than that), n-gram speculation (adaptive);
//   balanced:   64 sequences, 512-token steps, whole-budget chunks, no speculation (the
//               defaults of the flags themselves);
//   throughput: 256 sequences, 512-token steps, whole-budget chunks, no speculation.
enum class Mode : uint8_t { Latency, Balanced, Throughput };
const char* mode_name(Mode m);
// Adds --mode (latency | balanced | throughput, default balanced).
void add_mode_option(CLI::App& app, Mode& mode);
// After parsing: the preset's value for every setting whose flag `app` did not see.
void apply_mode(const CLI::App& app, Mode mode, EngineConfig& cfg);
// The settings that shape serving, as logged at start-up, printed by --print-config and
// shown in /v1/models.
nlohmann::json engine_config_json(const EngineConfig& cfg, Mode mode);

}  // namespace kvserve::cli

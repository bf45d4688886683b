#include "cli/engine_options.h"

#include <algorithm>
#include <charconv>
#include <string>

#include "kvserve/kv_dtype.h"
#include "kvserve/speculative.h"

namespace kvserve::cli {

void add_engine_options(CLI::App& app, EngineConfig& cfg, const EngineOptionsSpec& spec) {
  app.add_option("-t,--threads", cfg.n_threads, "Threads (0 = all hardware threads)")->capture_default_str();
  app.add_option(spec.max_num_seqs_names, cfg.max_num_seqs, "Most sequences per engine step")
      ->capture_default_str();
  app.add_option(spec.max_num_batched_tokens_names, cfg.max_num_batched_tokens,
                 "Token budget per engine step")
      ->capture_default_str();
  app.add_option("--block-size", cfg.block_size, "KV-cache block size in tokens")->capture_default_str();
  app.add_option("--kv-cache-memory", cfg.kv_cache_memory,
                 "KV-cache size in bytes (default: " + spec.kv_cache_memory_default + ")");
  app.add_option(
      "--num-kv-blocks", cfg.num_kv_blocks,
      "KV-cache size in blocks of --block-size tokens of every layer (overrides --kv-cache-memory)");
  // Parsed here rather than by each command: the check and the enum stay in one place.
  app.add_option_function<std::string>(
         "--kv-cache-dtype", [&cfg](const std::string& s) { cfg.kv_cache_dtype = *parse_kv_dtype(s); },
         "KV-cache element type: f32, f16, bf16, int8 or fp8 (E4M3); int8 / fp8 with a scale per token and "
         "KV head")
      ->check(kv_dtype_validator())
      ->default_str(kv_dtype_name(cfg.kv_cache_dtype));
  app.add_option("--max-chunk-tokens", cfg.max_chunk_tokens,
                 "Most prompt tokens of one request per step (0 = the whole step budget)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--max-model-len", cfg.max_model_len,
                 "Context length (default: " + spec.max_model_len_default + ")");
  // Both spellings everywhere; which one is the default differs (bench throughput: off).
  app.add_flag("--prefix-caching,!--no-prefix-caching", cfg.enable_prefix_caching,
               std::string("Enable / disable automatic prefix caching (default: ") +
                   (cfg.enable_prefix_caching ? "on" : "off") + ")");

  app.add_flag("--hybrid-kv-cache,!--no-hybrid-kv-cache", cfg.hybrid_kv_cache,
               "Sliding-window layers keep only their window's KV blocks (Gemma 3, Mistral); off: every "
               "layer keeps every position (default: on)");

  add_speculative_options(app, cfg.speculative);
}

CLI::Validator kv_dtype_validator() {
  std::vector<std::string> names;
  for (int i = 0; i <= int(KvDtype::Fp8); ++i)  // (Fp8: the enum's last)
    names.push_back(kv_dtype_name(KvDtype(i)));
  return CLI::IsMember(names);
}

void add_speculative_options(CLI::App& app, SpeculativeConfig& sc) {
  app.add_option_function<std::string>(
         "--speculative-method", [&sc](const std::string& s) { sc.method = *parse_spec_method(s); },
         "Speculative decoding: ngram (prompt / output lookup), draft (a smaller model, "
         "--speculative-model), layerskip (the model with layers skipped) or none")
      ->check(CLI::IsMember({"none", "ngram", "draft", "layerskip"}))
      ->default_str(spec_method_name(sc.method));
  app.add_option("--speculative-model", sc.draft_model,
                 "Draft model GGUF for --speculative-method draft (same vocabulary as the model)");
  app.add_option(
      "--speculative-skip-layers", sc.skip_layers,
      "Layers --speculative-method layerskip skips, e.g. 8-15,20 (default: every other layer of the "
      "middle half)");
  app.add_option_function<std::string>(
      "--speculative-tree",
      [&sc](const std::string& s) {
        sc.tree.clear();
        size_t at = 0;
        while (at <= s.size()) {
          const size_t comma = std::min(s.find(',', at), s.size());
          const std::string part = s.substr(at, comma - at);
          int b = 0;
          auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), b);
          if (part.empty() || ec != std::errc() || end != part.data() + part.size())
            throw CLI::ValidationError(
                "--speculative-tree",
                "expected branching per depth as integers, e.g. 3,2,1; got '" + s + "'");
          sc.tree.push_back(b);
          at = comma + 1;
        }
      },
      "Verify a token tree: the most children a node at each depth may have, e.g. 3,2 (three candidates "
      "for the next token, two for each after them; deeper levels up to --num-speculative-tokens branch "
      "once)");
  app.add_option("--num-speculative-tokens", sc.num_tokens, "Draft tokens per step at most (k)")
      ->check(CLI::Range(1, SpeculativeConfig::kMaxTokens))
      ->capture_default_str();
  app.add_option("--ngram-min", sc.ngram_min, "Shortest suffix the n-gram lookup matches")
      ->check(CLI::Range(1, 16))
      ->capture_default_str();
  app.add_option("--ngram-max", sc.ngram_max, "Longest suffix the n-gram lookup tries first")
      ->check(CLI::Range(1, 16))
      ->capture_default_str();
  app.add_option("--ngram-shared-cache", sc.shared_cache_entries,
                 "N-gram buckets remembering recent requests' outputs for later ones (0 = off)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_flag("--speculative-adaptive,!--no-speculative-adaptive", sc.adaptive,
               "Adapt k per request and skip drafting in steps where the measured step-time cost model says "
               "it would not pay (default: on)");
}

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::Latency: return "latency";
    case Mode::Throughput: return "throughput";
    case Mode::Balanced: break;
  }
  return "balanced";
}

void add_mode_option(CLI::App& app, Mode& mode) {
  app.add_option_function<std::string>(
         "--mode",
         [&mode](const std::string& s) {
           mode = s == "latency" ? Mode::Latency : s == "throughput" ? Mode::Throughput : Mode::Balanced;
         },
         "What to optimise for: latency (few sequences, short prefill chunks, speculation), balanced, or "
         "throughput (many sequences); flags given explicitly override the preset")
      ->check(CLI::IsMember({"latency", "balanced", "throughput"}))
      ->default_str("balanced");
}

void apply_mode(const CLI::App& app, Mode mode, EngineConfig& cfg) {
  struct Preset {
    int max_num_seqs, max_num_batched_tokens, max_chunk_tokens;
    SpecMethod speculation;
  };
  const Preset p = mode == Mode::Latency      ? Preset{16, 256, 128, SpecMethod::Ngram}
                   : mode == Mode::Throughput ? Preset{256, 512, 0, SpecMethod::None}
                                              : Preset{64, 512, 0, SpecMethod::None};
  auto given = [&app](const char* flag) { return app.count(flag) > 0; };
  if (!given("--max-num-seqs")) cfg.max_num_seqs = p.max_num_seqs;
  if (!given("--max-num-batched-tokens")) cfg.max_num_batched_tokens = p.max_num_batched_tokens;
  if (!given("--max-chunk-tokens")) cfg.max_chunk_tokens = p.max_chunk_tokens;
  if (!given("--speculative-method") && !given("--speculative-model")) cfg.speculative.method = p.speculation;
}

nlohmann::json engine_config_json(const EngineConfig& c, Mode mode) {
  const SpeculativeConfig& sc = c.speculative;
  nlohmann::json spec = {{"method", spec_method_name(sc.method)}};
  if (sc.enabled()) {
    spec["num_speculative_tokens"] = sc.num_tokens;
    spec["adaptive"] = sc.adaptive;
    if (!sc.tree.empty()) spec["tree"] = sc.tree;
    if (!sc.draft_model.empty()) spec["draft_model"] = sc.draft_model;
  }
  return {{"mode", mode_name(mode)},
          {"max_num_seqs", c.max_num_seqs},
          {"max_num_batched_tokens", c.max_num_batched_tokens},
          {"max_chunk_tokens", c.max_chunk_tokens},
          {"enable_chunked_prefill", c.enable_chunked_prefill},
          {"max_model_len", c.max_model_len},
          {"block_size", c.block_size},
          {"num_kv_blocks", c.num_kv_blocks},
          {"kv_cache_dtype", kv_dtype_name(c.kv_cache_dtype)},
          {"enable_prefix_caching", c.enable_prefix_caching},
          {"hybrid_kv_cache", c.hybrid_kv_cache},
          {"n_threads", c.n_threads},
          {"speculative", spec}};
}

}  // namespace kvserve::cli

// `kvserve bench`: latency (one request: prefill and decode tokens/s, TTFT), throughput
// (offline continuous batching), roofline (machine bandwidth / peak compute and where
// the model lands) and serve (HTTP load generator against `kvserve serve`).
#include "cli/cmd_bench.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <vector>

#include "cli/command.h"

namespace kvserve::bench {

Stat mean_stdev(const std::vector<double>& xs) {
  Stat s;
  if (xs.empty()) return s;
  for (double x : xs) s.mean += x;
  s.mean /= double(xs.size());
  if (xs.size() > 1) {
    double v = 0.0;
    for (double x : xs) v += (x - s.mean) * (x - s.mean);
    s.stdev = std::sqrt(v / double(xs.size() - 1));
  }
  return s;
}

bool write_json(const std::string& path, const nlohmann::json& j) {
  if (path.empty()) return true;
  if (path == "-") {
    std::printf("%s\n", j.dump(2).c_str());
    return true;
  }
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  if (!out) {
    std::fprintf(stderr, "kvserve bench: cannot write %s\n", path.c_str());
    return false;
  }
  return true;
}

int fail(const char* mode, const std::string& msg) {
  std::fprintf(stderr, "kvserve bench %s: %s\n", mode, msg.c_str());
  return 1;
}

namespace {

const kvserve::cli::Registrar reg{
    "bench", "Benchmarks: latency, throughput, roofline, serve", [](CLI::App& app) {
      app.require_subcommand(1);
      struct Mode {
        CLI::App* app;
        RunFn run;
      };
      auto modes = std::make_shared<std::vector<Mode>>();
      auto add = [&](const char* name, const char* help, RunFn (*setup)(CLI::App&)) {
        CLI::App* sub = app.add_subcommand(name, help);
        modes->push_back({sub, setup(*sub)});
      };
      add("latency", "One request: prefill and decode tokens/s, TTFT (like llama-bench pp/tg)",
          setup_latency);
      add("throughput", "Offline continuous batching: requests/s, tokens/s (like llama-batched-bench)",
          setup_throughput);
      add("roofline", "Memory bandwidth and peak compute of this machine; where a model lands",
          setup_roofline);
      add("serve", "Start `kvserve serve` and drive it with bench/serve_bench.py", setup_serve);
      return [modes]() -> int {
        for (auto& m : *modes)
          if (m.app->parsed()) return m.run();
        return 1;
      };
    }};

}  // namespace
}  // namespace kvserve::bench

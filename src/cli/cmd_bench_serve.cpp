// `kvserve bench serve`: starts `kvserve serve` on a loopback port (or uses --base-url),
// drives it with the HTTP load generator bench/serve_bench.py (streaming requests,
// TTFT / TPOT / ITL / E2E percentiles, throughput), then stops the server. With
// --speculative-method it runs the workload twice, on a server without speculation and
// on one with it, and prints the speedup. --modes compares the serving modes on one load;
// --sweep runs each mode at a series of request rates (the throughput / latency trade-off).
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "cli/cmd_bench.h"
#include "core/paths.h"

extern char** environ;

namespace kvserve::bench {
namespace {

struct Opts {
  std::string model;
  std::string base_url;  // set: drive this server instead of starting one
  int threads = 2;
  int max_num_seqs = 32;
  int port = 0;
  int num_prompts = 64;
  double request_rate = 0;  // 0 = all at once
  int max_concurrency = 0;
  int input_len = 128;
  int output_len = 64;
  std::string prompts_file;  // one prompt per line ("\\n" for newlines); empty = random words
  std::string endpoint = "completions";
  bool allow_eos = false;
  // Passed to the server this starts.
  std::string spec_method = "none";
  std::string spec_model;
  std::string spec_tree;
  int spec_tokens = 0;              // 0 = the server's default
  std::string mode;                 // the server's --mode (empty: not passed)
  std::string modes;                // compare: one run per mode, e.g. latency,balanced,throughput
  std::string sweep;                // request rates (req/s, "inf" = all at once): one run per mode and rate
  bool max_num_seqs_given = false;  // with a mode, --max-num-seqs is passed only if given
  std::string script;
  std::string python;
  std::string json;
};

Result<pid_t> spawn(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (int e = posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), environ); e != 0)
    return Error{"cannot start " + args[0] + ": " + std::strerror(e)};
  return pid;
}

int wait_exit(pid_t pid) {
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

// Starts `kvserve serve` (unless o.base_url is set), runs the load generator against it
// writing its JSON result to `out` (if not empty), stops the server; the generator's exit
// status.
int run_once(const Opts& o, bool speculate, const std::string& out) {
  pid_t server = -1;
  std::string url = o.base_url;
  if (url.empty()) {
    std::error_code ec;
    const std::string self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
    if (ec) return fail("serve", "cannot find the kvserve binary");
    std::vector<std::string> cmd = {self,        "serve",
                                    "--model",   o.model,
                                    "--port",    std::to_string(o.port),
                                    "--threads", std::to_string(o.threads)};
    if (o.mode.empty() || o.max_num_seqs_given)
      cmd.insert(cmd.end(), {"--max-num-seqs", std::to_string(o.max_num_seqs)});
    if (!o.mode.empty()) cmd.insert(cmd.end(), {"--mode", o.mode});
    if (speculate) {
      cmd.insert(cmd.end(), {"--speculative-method", o.spec_method});
      if (!o.spec_model.empty()) cmd.insert(cmd.end(), {"--speculative-model", o.spec_model});
      if (!o.spec_tree.empty()) cmd.insert(cmd.end(), {"--speculative-tree", o.spec_tree});
      if (o.spec_tokens > 0)
        cmd.insert(cmd.end(), {"--num-speculative-tokens", std::to_string(o.spec_tokens)});
    }
    auto pid = spawn(cmd);
    if (!pid) return fail("serve", pid.error().message);
    server = *pid;
    url = "http://127.0.0.1:" + std::to_string(o.port);
    std::fprintf(stderr, "serve: started kvserve serve (pid %d) on %s%s\n", int(server), url.c_str(),
                 speculate ? (", speculative " + o.spec_method).c_str() : "");
  }
  std::vector<std::string> args = {o.python,
                                   o.script,
                                   "--base-url",
                                   url,
                                   "--num-prompts",
                                   std::to_string(o.num_prompts),
                                   "--input-len",
                                   std::to_string(o.input_len),
                                   "--output-len",
                                   std::to_string(o.output_len),
                                   "--max-concurrency",
                                   std::to_string(o.max_concurrency),
                                   "--endpoint",
                                   o.endpoint};
  if (o.request_rate > 0) args.insert(args.end(), {"--request-rate", std::to_string(o.request_rate)});
  if (!o.prompts_file.empty()) args.insert(args.end(), {"--prompts-file", o.prompts_file});
  if (o.allow_eos) args.push_back("--allow-eos");
  if (!out.empty()) args.insert(args.end(), {"--output", out});
  int rc = 1;
  if (auto gen = spawn(args); gen)
    rc = wait_exit(*gen);
  else
    std::fprintf(stderr, "kvserve bench serve: %s\n", gen.error().message.c_str());
  if (server > 0) {
    kill(server, SIGTERM);
    wait_exit(server);
  }
  return rc;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  return nlohmann::json::parse(f, nullptr, /*allow_exceptions=*/false);
}

std::string fmt_mode(const std::string& m) {
  char b[32];
  std::snprintf(b, sizeof b, "%-10s", m.c_str());
  return b;
}

std::string fmt_rate(double r) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", r);
  return b;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  for (size_t at = 0; at <= s.size();) {
    const size_t comma = std::min(s.find(',', at), s.size());
    out.push_back(s.substr(at, comma - at));
    at = comma + 1;
  }
  return out;
}

// One server started with o.mode, driven at o.request_rate: the load generator's result
// (null on failure, after saying why).
nlohmann::json run_point(const Opts& o) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("kvserve-bench-serve-" + std::to_string(getpid()) + "-" + o.mode + ".json"))
                               .string();
  if (run_once(o, false, path) != 0) return nullptr;
  nlohmann::json r = read_json(path);
  std::filesystem::remove(path);
  if (!r.is_object() || !r.contains("output_throughput")) {
    fail("serve", "the load generator wrote no result");
    return nullptr;
  }
  return r;
}

// The modes of --modes (all three when empty), each checked.
Result<std::vector<std::string>> parse_modes(const Opts& o, const char* flag) {
  if (!o.base_url.empty()) return Error{std::string(flag) + " needs servers this starts (not --base-url)"};
  if (o.spec_method != "none" || !o.mode.empty())
    return Error{std::string(flag) + " sets each server's mode: drop --mode and --speculative-method"};
  const std::vector<std::string> modes =
      split_commas(o.modes.empty() ? "latency,balanced,throughput" : o.modes);
  for (const std::string& m : modes)
    if (m != "latency" && m != "balanced" && m != "throughput")
      return Error{"--modes: unknown mode '" + m + "' (latency, balanced, throughput)"};
  return modes;
}

std::string result_line(const std::string& head, const nlohmann::json& r) {
  char line[256];
  std::snprintf(line, sizeof line, "%s %10.1f %12.1f %12.1f %12.2f %12.2f", head.c_str(),
                r["output_throughput"].get<double>(), r["ttft_ms"]["p50"].get<double>(),
                r["ttft_ms"]["p99"].get<double>(), r["tpot_ms"]["p50"].get<double>(),
                r["tpot_ms"]["p99"].get<double>());
  return line;
}

constexpr const char* kResultHeader = "%10s %12s %12s %12s %12s\n";

// One run per mode against a server started with it, the same load each time: what
// each preset gives (throughput against TTFT and TPOT).
int run_modes(Opts& o) {
  auto modes = parse_modes(o, "--modes");
  if (!modes) return fail("serve", modes.error().message);
  nlohmann::json all = nlohmann::json::object();
  std::vector<std::string> lines;
  for (const std::string& m : *modes) {
    o.mode = m;
    const nlohmann::json r = run_point(o);
    if (r.is_null()) return 1;
    lines.push_back(result_line(fmt_mode(m), r));
    all[m] = r;
  }
  o.mode.clear();
  std::printf("%-10s ", "mode");
  std::printf(kResultHeader, "out tok/s", "TTFT p50 ms", "TTFT p99 ms", "TPOT p50 ms", "TPOT p99 ms");
  for (const std::string& l : lines) std::printf("%s\n", l.c_str());
  if (!o.json.empty()) {
    std::ofstream f(o.json);
    f << all.dump(2) << "\n";
  }
  return 0;
}

// A request-rate sweep per mode: the throughput each mode reaches against the TTFT and
// TPOT it costs, as the load grows (scripts/plot_bench.py draws it).
int run_sweep(Opts& o) {
  auto modes = parse_modes(o, "--sweep");
  if (!modes) return fail("serve", modes.error().message);
  std::vector<double> rates;  // 0 = all at once
  for (const std::string& r : split_commas(o.sweep)) {
    char* end = nullptr;
    const double v = r == "inf" ? 0.0 : std::strtod(r.c_str(), &end);
    if (r != "inf" && (end == r.c_str() || *end != '\0' || !(v > 0)))
      return fail("serve", "--sweep: '" + r + "' is not a request rate (a positive number or inf)");
    rates.push_back(v);
  }
  nlohmann::json points = nlohmann::json::array();
  std::vector<std::string> lines;
  for (const std::string& m : *modes)
    for (double rate : rates) {
      o.mode = m;
      o.request_rate = rate;
      std::fprintf(stderr, "serve: sweep %s at %s\n", m.c_str(),
                   rate > 0 ? (fmt_rate(rate) + " req/s").c_str() : "all at once");
      const nlohmann::json r = run_point(o);
      if (r.is_null()) return 1;
      char head[64];
      std::snprintf(head, sizeof head, "%-10s %8s", m.c_str(), rate > 0 ? fmt_rate(rate).c_str() : "inf");
      lines.push_back(result_line(head, r));
      points.push_back({{"mode", m},
                        {"request_rate", rate > 0 ? nlohmann::json(rate) : nlohmann::json(nullptr)},
                        {"result", r}});
    }
  o.mode.clear();
  std::printf("%-10s %8s ", "mode", "req/s");
  std::printf(kResultHeader, "out tok/s", "TTFT p50 ms", "TTFT p99 ms", "TPOT p50 ms", "TPOT p99 ms");
  for (const std::string& l : lines) std::printf("%s\n", l.c_str());
  if (!o.json.empty()) {
    std::ofstream f(o.json);
    f << nlohmann::json{{"kind", "serve_sweep"},        {"model", o.model},
                        {"num_prompts", o.num_prompts}, {"input_len", o.input_len},
                        {"output_len", o.output_len},   {"points", points}}
             .dump(2)
      << "\n";
  }
  return 0;
}

int run(Opts& o) {
  const std::filesystem::path src = std::filesystem::path(model_dir()).parent_path();
  if (o.script.empty()) o.script = (src / "bench" / "serve_bench.py").string();
  if (o.python.empty()) {
    const auto venv = src / ".venv" / "bin" / "python";
    o.python = std::filesystem::exists(venv) ? venv.string() : "python3";
  }
  if (!std::filesystem::exists(o.script)) return fail("serve", "no load generator at " + o.script);
  if (o.base_url.empty() && o.model.empty())
    return fail("serve", "give --model (to start a server) or --base-url");
  if (o.port == 0) o.port = 20000 + int(std::random_device{}() % 20000);
  const bool speculate = o.spec_method != "none";
  if (!o.sweep.empty()) return run_sweep(o);
  if (!o.modes.empty()) return run_modes(o);
  if (!speculate) return run_once(o, false, o.json);
  if (!o.base_url.empty())
    return fail("serve", "--speculative-method needs a server this starts (not --base-url)");

  // Without, then with speculation; the speedup from the two results.
  const std::string base_json = (std::filesystem::temp_directory_path() /
                                 ("kvserve-bench-serve-" + std::to_string(getpid()) + "-base.json"))
                                    .string();
  const std::string spec_json =
      o.json.empty() ? base_json.substr(0, base_json.size() - 9) + "spec.json" : o.json;
  if (int rc = run_once(o, false, base_json); rc != 0) return rc;
  if (int rc = run_once(o, true, spec_json); rc != 0) return rc;
  const nlohmann::json b = read_json(base_json), s = read_json(spec_json);
  std::filesystem::remove(base_json);
  if (!b.is_object() || !s.is_object() || !b.contains("output_throughput") ||
      !s.contains("output_throughput"))
    return fail("serve", "the load generator wrote no result");
  const double tb = b["output_throughput"].get<double>(), ts = s["output_throughput"].get<double>();
  const double pb = b["tpot_ms"]["mean"].get<double>(), ps = s["tpot_ms"]["mean"].get<double>();
  std::printf("speculative %s: %.2fx output tokens/s (%.1f vs %.1f without), mean TPOT %.2f ms vs %.2f ms\n",
              o.spec_method.c_str(), tb > 0 ? ts / tb : 0.0, ts, tb, ps, pb);
  return 0;
}

}  // namespace

RunFn setup_serve(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  app.add_option("-m,--model", o->model, "GGUF model file for the server this starts");
  app.add_option("--base-url", o->base_url, "Drive a running server instead (http://host:port)");
  app.add_option("-t,--threads", o->threads, "Server compute threads")->capture_default_str();
  app.add_option("--max-num-seqs", o->max_num_seqs,
                 "Server sequences per step (with --mode/--modes: only if given; the preset's otherwise)")
      ->capture_default_str()
      ->each([o](const std::string&) { o->max_num_seqs_given = true; });
  app.add_option("--mode", o->mode, "The server's --mode (latency, balanced, throughput)")
      ->check(CLI::IsMember({"latency", "balanced", "throughput"}));
  app.add_option(
      "--modes", o->modes,
      "Compare modes, e.g. latency,balanced,throughput: one server per mode, the same load, a table");
  app.add_option("--sweep", o->sweep,
                 "Request-rate sweep, e.g. 0.5,1,2,inf (req/s; inf = all at once): one server per mode of "
                 "--modes (default: all three) and rate, a table, --json for scripts/plot_bench.py");
  app.add_option("--port", o->port, "Server port (default: a random high port)");
  app.add_option("--num-prompts", o->num_prompts, "Requests")->capture_default_str();
  app.add_option("--request-rate", o->request_rate, "Requests/s, Poisson arrivals (0 = all at once)")
      ->capture_default_str();
  app.add_option("--max-concurrency", o->max_concurrency, "Requests in flight at most (0 = no cap)")
      ->capture_default_str();
  app.add_option("--input-len", o->input_len, "Prompt length in words (~tokens)")->capture_default_str();
  app.add_option("--output-len", o->output_len, "Generated tokens per request")->capture_default_str();
  app.add_option("--prompts-file", o->prompts_file,
                 "Prompts, one per line (\\n for a newline), instead of random words");
  app.add_option("--endpoint", o->endpoint, "completions or chat")
      ->check(CLI::IsMember({"completions", "chat"}))
      ->capture_default_str();
  app.add_flag("--allow-eos", o->allow_eos,
               "Let EOS end outputs early (default: exactly --output-len tokens)");
  app.add_option("--speculative-method", o->spec_method,
                 "Run without, then with this speculation on the server it starts, and print the speedup")
      ->check(CLI::IsMember({"none", "ngram", "draft", "layerskip"}))
      ->capture_default_str();
  app.add_option("--speculative-model", o->spec_model, "Draft model for --speculative-method draft");
  app.add_option("--speculative-tree", o->spec_tree, "Token tree for the speculating server, e.g. 3,2");
  app.add_option("--num-speculative-tokens", o->spec_tokens, "Draft tokens per step (default: the server's)");
  app.add_option("--script", o->script, "Load generator (default: <source>/bench/serve_bench.py)");
  app.add_option("--python", o->python, "Python interpreter (default: <source>/.venv/bin/python)");
  app.add_option("--json", o->json, "Write the load generator's JSON result here");
  return [o] { return run(*o); };
}

}  // namespace kvserve::bench

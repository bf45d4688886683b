// `kvserve bench roofline`: this machine's roofline and where a model's latency figures
// sit on it. Measured: read bandwidth (threads summing disjoint slices of a buffer far
// larger than the last-level cache) and peak arithmetic (independent FMA / VNNI chains
// held in registers), per thread count. With --model, runs `bench latency` and compares
//   decode:  weight bytes read per token x tokens/s   against the bandwidth
//   prefill: FLOP per token (2 x matmul params + attention) x tokens/s  against the peak
// at the latency run's thread count. The host's bandwidth may drift during the run, so
// each measured latency run is also paired with a bandwidth probe taken just before it.
#include <immintrin.h>

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "cli/cmd_bench.h"
#include "core/cpu_features.h"
#include "core/thread_pool.h"
#include "gguf/gguf_file.h"
#include "model/model_config.h"

namespace kvserve::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Runs f(tid) on n threads at once; returns the wall time of the slowest. The threads
// are those of a ThreadPool, which has spread them over the cores before the clock
// starts (threads just created share their creator's core for a few milliseconds, which
// made the 2-thread bandwidth read as the 1-thread one in some runs).
template <class F>
double timed_parallel(int n, F f) {
  ThreadPool pool(n);
  const auto t0 = Clock::now();
  pool.run([&](int tid, int) { f(tid); });
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

__attribute__((target("avx512f"))) float sum_avx512(const float* p, size_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 64 <= n; i += 64) {
    a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
  }
  // Stored and summed by hand: GCC 12's reduce intrinsics warn of uninitialized use.
  alignas(64) float out[16];
  _mm512_store_ps(out, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  float s = 0;
  for (float x : out) s += x;
  return s;
}

__attribute__((target("avx2"))) float sum_avx2(const float* p, size_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
  }
  float out[8];
  _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  float s = 0;
  for (float x : out) s += x;
  return s;
}

// Best-of-`reps` read bandwidth in GB/s with `nth` threads over `bytes`.
double read_bandwidth(float* buf, size_t n_floats, int nth, int reps) {
  const bool v512 = cpu_features().avx512f;
  std::vector<float> sink(static_cast<size_t>(nth));
  const size_t per = (n_floats / size_t(nth)) & ~size_t(63);
  double best = 1e30;
  for (int r = 0; r < reps; ++r)
    best = std::min(best, timed_parallel(nth, [&](int t) {
                      const float* p = buf + size_t(t) * per;
                      sink[size_t(t)] = v512 ? sum_avx512(p, per) : sum_avx2(p, per);
                    }));
  volatile float keep = sink[0];
  (void)keep;
  return double(per) * nth * sizeof(float) / best / 1e9;
}

constexpr int kChains = 12;           // independent accumulators: hides FMA latency
constexpr int64_t kIters = 20000000;  // per thread

__attribute__((target("avx512f"))) float fma_avx512(int64_t iters) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(float(i));
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  __m512 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, acc[i]);
  alignas(64) float out[16];
  _mm512_store_ps(out, s);
  return out[0] + out[15];
}

__attribute__((target("avx2,fma"))) float fma_avx2(int64_t iters) {
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(float(i));
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  __m256 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm256_add_ps(s, acc[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[7];
}

__attribute__((target("avx512f,avx512vnni"))) int vnni_avx512(int64_t iters) {
  __m512i acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_epi32(i);
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
  __m512i s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_epi32(s, acc[i]);
  alignas(64) int out[16];
  _mm512_store_si512(out, s);
  return out[0] + out[15];
}

struct Peak {
  double f32_gflops = 0;  // FMA: 2 FLOP per lane
  double int8_gops = 0;   // VNNI vpdpbusd: 64 u8 x s8 products + 64 adds per instruction
};

Peak peak(int nth) {
  const auto& f = cpu_features();
  Peak p;
  std::vector<double> sink(static_cast<size_t>(nth));
  const int lanes = f.avx512f ? 16 : 8;
  double s = timed_parallel(
      nth, [&](int t) { sink[size_t(t)] = f.avx512f ? fma_avx512(kIters) : fma_avx2(kIters); });
  p.f32_gflops = double(kIters) * kChains * lanes * 2 * nth / s / 1e9;
  if (f.avx512vnni) {
    s = timed_parallel(nth, [&](int t) { sink[size_t(t)] = vnni_avx512(kIters); });
    p.int8_gops = double(kIters) * kChains * 64 * 2 * nth / s / 1e9;
  }
  volatile double keep = sink[0];
  (void)keep;
  return p;
}

// What one token costs the model: weight bytes read by a decode step and FLOP of the
// matmuls (2 per weight). The token embedding is one row per token unless it is also
// the output matrix (tied), then it is read whole.
struct ModelCost {
  double weight_bytes = 0;
  double matmul_params = 0;
  double attn_flop_per_pos = 0;  // attention FLOP per token per cached position
};

Result<ModelCost> model_cost(const std::string& path) {
  auto f = GgufFile::open(path);
  if (!f) return f.error();
  auto cfg = ModelConfig::from_gguf(**f);
  if (!cfg) return cfg.error();
  ModelCost c;
  const bool tied = (*f)->tensor("output.weight") == nullptr;
  for (const auto& t : (*f)->tensors()) {
    const bool embd = t.name == "token_embd.weight";
    if (embd && !tied) {
      c.weight_bytes += double(t.nbytes) / double(t.ne(1));
      continue;
    }
    c.weight_bytes += double(t.nbytes);
    if (t.shape.size() >= 2) c.matmul_params += double(t.n_elements);
  }
  // Q.K and P.V: 2 FLOP each per head dim per query head per position, per layer.
  c.attn_flop_per_pos = 4.0 * cfg->n_layers * cfg->q_dim();
  return c;
}

// Each measured run's decode bandwidth over the probe taken just before it.
struct Paired {
  std::vector<double> fractions, probes;
  double median = 0, lo = 0, hi = 0;

  void print(const char* probe) const {
    if (fractions.empty()) return;
    std::printf(
        "          paired with a %s before each run: median %5.1f%% (%.1f-%.1f%%; probes %.1f-%.1f GB/s)\n",
        probe, 100 * median, 100 * lo, 100 * hi, *std::min_element(probes.begin(), probes.end()),
        *std::max_element(probes.begin(), probes.end()));
  }
};

Paired pair_runs(const std::vector<double>& tg_samples, const std::vector<double>& probes,
                 double bytes_per_tok) {
  Paired p;
  p.probes = probes;
  for (size_t r = 0; r < probes.size() && r < tg_samples.size(); ++r)
    p.fractions.push_back(bytes_per_tok * tg_samples[r] / 1e9 / probes[r]);
  std::vector<double> sorted = p.fractions;
  std::sort(sorted.begin(), sorted.end());
  if (!sorted.empty()) {
    p.median = sorted[sorted.size() / 2];
    p.lo = sorted.front();
    p.hi = sorted.back();
  }
  return p;
}

struct Opts {
  std::vector<int> threads;
  size_t buffer_mib = 1024;
  LatencyOptions latency;
  std::string json;
};

int run(Opts& o) {
  const int hw = int(std::max(1u, std::thread::hardware_concurrency()));
  for (int t : o.threads)
    if (t < 1) return fail("roofline", "--thread-counts must be at least 1");
  if (o.buffer_mib < 16) return fail("roofline", "--buffer-mib must be at least 16");
  const int lat_threads = o.latency.threads > 0 ? o.latency.threads : hw;
  if (o.threads.empty()) {
    for (int t = 1; t <= hw; t *= 2) o.threads.push_back(t);
    o.threads.push_back(hw);
  }
  // The model is placed against the machine at its latency run's thread count.
  if (!o.latency.model.empty()) o.threads.push_back(lat_threads);
  std::sort(o.threads.begin(), o.threads.end());
  o.threads.erase(std::unique(o.threads.begin(), o.threads.end()), o.threads.end());
  const auto& f = cpu_features();
  std::fprintf(stderr, "roofline: %s, AVX-512 %s, VNNI %s; %zu MiB buffer\n", isa_name(best_isa()),
               f.avx512f ? "yes" : "no", f.avx512vnni ? "yes" : "no", o.buffer_mib);

  const size_t n_floats = o.buffer_mib * 1024 * 1024 / sizeof(float);
  std::unique_ptr<float, decltype(&std::free)> owned(
      static_cast<float*>(std::aligned_alloc(64, n_floats * sizeof(float))), &std::free);
  float* buf = owned.get();
  if (!buf) return fail("roofline", "cannot allocate the buffer");
  // Touched in parallel, so pages land near the threads that read them.
  timed_parallel(hw, [&](int t) {
    const size_t per = n_floats / size_t(hw);
    for (size_t i = size_t(t) * per; i < size_t(t + 1) * per; ++i) buf[i] = float(i & 7);
  });

  nlohmann::json rows = nlohmann::json::array();
  std::printf("%-8s %12s %14s %14s\n", "threads", "read GB/s", "f32 GFLOP/s", "int8 GOP/s");
  std::vector<std::pair<int, std::pair<double, Peak>>> by_threads;
  for (int t : o.threads) {
    std::fprintf(stderr, "  %d thread(s)...\n", t);
    const double bw = read_bandwidth(buf, n_floats, t, 5);
    const Peak p = peak(t);
    std::printf("%-8d %12.1f %14.1f %14.1f\n", t, bw, p.f32_gflops, p.int8_gops);
    rows.push_back(
        {{"threads", t}, {"read_gb_per_s", bw}, {"f32_gflops", p.f32_gflops}, {"int8_gops", p.int8_gops}});
    by_threads.push_back({t, {bw, p}});
  }
  nlohmann::json j = {{"mode", "roofline"},
                      {"isa", isa_name(best_isa())},
                      {"hardware_threads", hw},
                      {"buffer_mib", o.buffer_mib},
                      {"machine", rows}};

  if (!o.latency.model.empty()) {
    auto cost = model_cost(o.latency.model);
    if (!cost) return fail("roofline", cost.error().message);
    // The host's bandwidth can change from one second to the next (on a shared VM by 2x),
    // so each measured run is also set against two probes taken just before it: the 1 GiB
    // read (memory), and repeated reads of a buffer the size of the weights, which sees
    // what decode sees of the last-level cache (a model not much larger than the L3 keeps
    // part of itself there between tokens).
    const int nth = lat_threads;
    const size_t ws_floats = std::max<size_t>(size_t(cost->weight_bytes / sizeof(float)) / 64 * 64, 64 * 64);
    std::unique_ptr<float, decltype(&std::free)> ws_owned(
        static_cast<float*>(std::aligned_alloc(64, ws_floats * sizeof(float))), &std::free);
    if (!ws_owned) return fail("roofline", "cannot allocate the working-set buffer");
    std::memset(ws_owned.get(), 0, ws_floats * sizeof(float));
    std::vector<double> run_bw, run_ws_bw;
    auto lat = run_latency(o.latency, [&](int) {
      run_bw.push_back(read_bandwidth(buf, n_floats, nth, 3));
      run_ws_bw.push_back(read_bandwidth(ws_owned.get(), ws_floats, nth, 10));
    });
    if (!lat) return fail("roofline", lat.error().message);
    auto it = std::find_if(by_threads.begin(), by_threads.end(), [&](auto& r) { return r.first == nth; });
    assert(it != by_threads.end());
    const double bw = it->second.first;
    const Peak pk = it->second.second;
    const ModelCost& c = *cost;
    const double P = o.latency.prompt_tokens;
    // Mean cached positions over the prompt: (P + 1) / 2; during decode: the decode depth.
    const double pp_flop_tok = 2 * c.matmul_params + c.attn_flop_per_pos * (P + 1) / 2;
    const double tg_bytes_tok = c.weight_bytes;
    const double pp_gflops = pp_flop_tok * lat->prompt_tps.mean / 1e9;
    const double tg_gbs = tg_bytes_tok * lat->gen_tps.mean / 1e9;
    const double tg_bound = bw * 1e9 / tg_bytes_tok;  // tokens/s if decode ran at full bandwidth
    std::printf(
        "\nmodel %s (%d threads): %.1f MB of weights read per decode token, %.1f MFLOP per prompt token\n",
        o.latency.model.c_str(), nth, tg_bytes_tok / 1e6, pp_flop_tok / 1e6);
    std::printf("  decode  %8.1f tok/s -> %6.1f GB/s = %5.1f%% of %.1f GB/s (bound %.0f tok/s)\n",
                lat->gen_tps.mean, tg_gbs, 100 * tg_gbs / bw, bw, tg_bound);
    const Paired mem = pair_runs(lat->gen_tps_samples, run_bw, tg_bytes_tok);
    const Paired ws = pair_runs(lat->gen_tps_samples, run_ws_bw, tg_bytes_tok);
    mem.print("1 GiB probe");
    ws.print("weight-size probe");
    std::printf(
        "  prefill %8.1f tok/s -> %6.1f GFLOP/s = %5.1f%% of f32 peak %.0f, %5.1f%% of int8 peak %.0f\n",
        lat->prompt_tps.mean, pp_gflops, 100 * pp_gflops / pk.f32_gflops, pk.f32_gflops,
        pk.int8_gops > 0 ? 100 * pp_gflops / pk.int8_gops : 0.0, pk.int8_gops);
    j["model"] = {{"path", o.latency.model},
                  {"threads", nth},
                  {"weight_bytes_per_decode_token", tg_bytes_tok},
                  {"matmul_params", c.matmul_params},
                  {"flop_per_prompt_token", pp_flop_tok},
                  {"latency", lat->to_json(o.latency)},
                  {"decode_gb_per_s", tg_gbs},
                  {"decode_fraction_of_bandwidth", tg_gbs / bw},
                  {"run_probe_gb_per_s", run_bw},
                  {"decode_fraction_of_bandwidth_paired", mem.fractions},
                  {"decode_fraction_of_bandwidth_paired_median", mem.median},
                  {"working_set_probe_bytes", ws_floats * sizeof(float)},
                  {"run_working_set_probe_gb_per_s", run_ws_bw},
                  {"decode_fraction_of_working_set_bandwidth_paired", ws.fractions},
                  {"decode_fraction_of_working_set_bandwidth_paired_median", ws.median},
                  {"decode_bandwidth_bound_tokens_per_s", tg_bound},
                  {"prefill_gflops", pp_gflops},
                  {"prefill_fraction_of_f32_peak", pp_gflops / pk.f32_gflops},
                  {"prefill_fraction_of_int8_peak", pk.int8_gops > 0 ? pp_gflops / pk.int8_gops : 0.0}};
  }
  return write_json(o.json, j) ? 0 : 1;
}

}  // namespace

RunFn setup_roofline(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  app.add_option("--thread-counts", o->threads, "Thread counts to measure (default: 1, 2, 4 .. all)");
  app.add_option("--buffer-mib", o->buffer_mib, "Bandwidth buffer size (>> last-level cache)")
      ->capture_default_str();
  app.add_option("-m,--model", o->latency.model, "Also place this model's latency figures on the roofline");
  app.add_option("-p,--prompt-tokens", o->latency.prompt_tokens, "Latency run: prompt length")
      ->capture_default_str();
  app.add_option("-n,--gen-tokens", o->latency.gen_tokens, "Latency run: tokens to decode")
      ->capture_default_str();
  app.add_option("-t,--threads", o->latency.threads, "Latency run: threads")->capture_default_str();
  app.add_option("-r,--repeats", o->latency.repeats, "Latency run: repeats")->capture_default_str();
  app.add_option("--json", o->json, "Write the result as JSON to this file ('-' = stdout)");
  return [o] { return run(*o); };
}

}  // namespace kvserve::bench
